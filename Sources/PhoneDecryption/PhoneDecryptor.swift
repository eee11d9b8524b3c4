internal import OpenSSLAES

/// Decrypts WeChat "encrypted open data" phone payloads and verifies them.
///
/// Checks, in order: iv (base64, 16 bytes), encryptedData (base64, a non-empty multiple of 16 bytes,
/// at most ``maximumCiphertextCount``), then each candidate session key newest first (base64,
/// 16 bytes), AES-128-CBC, strict PKCS#7, strict UTF-8 JSON with the phone fields and watermark, and
/// the watermark appid. A key "works" only when all of that passes.
///
/// The job's own fields are checked before any key because no key refresh can repair them.
/// When no key works, the failure reported is the one that got furthest, over all keys:
/// `appid_mismatch` > `invalid_plaintext` > `bad_padding` > `invalid_session_key`.
///
/// Not `Sendable`: it owns an OpenSSL context. Use one instance per thread and reuse it.
public final class PhoneDecryptor {
    /// Real payloads are about 200 bytes; anything far larger is rejected before decrypting.
    public static let maximumCiphertextCount = 64 * 1024

    private let cipher = EVPAES128CBC()

    public init() {}

    /// Decrypts one payload. Inputs are as received (base64 strings, possibly damaged in transit).
    public func decrypt(
        appid: String, sessionKeys: [String], iv: String, encryptedData: String
    ) -> Result<PhonePayload, DecryptFailure> {
        withBytes(appid) { appidBytes in
            withBytes(iv) { ivBytes in
                withBytes(encryptedData) { dataBytes in
                    decrypt(appid: appidBytes, sessionKeys: sessionKeys, iv: ivBytes, encryptedData: dataBytes)
                }
            }
        }
    }

    /// Decrypts one payload given as UTF-8 bytes (what a parsed Kafka message holds).
    public func decrypt(
        appid: UnsafeBufferPointer<UInt8>,
        sessionKeys: [String],
        iv: UnsafeBufferPointer<UInt8>,
        encryptedData: UnsafeBufferPointer<UInt8>
    ) -> Result<PhonePayload, DecryptFailure> {
        var jobRepairs: Base64Repairs = []
        return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: LenientBase64.maxDecodedCount(iv.count)) { ivBuffer in
            // MARK: iv
            let ivCount: Int
            switch LenientBase64.decode(iv, into: ivBuffer, repairs: &jobRepairs) {
            case .failure(let failure): return .failure(DecryptFailure(.invalidIV, "iv is \(failure.description)"))
            case .success(let count): ivCount = count
            }
            guard ivCount == EVPAES128CBC.blockSize else {
                return .failure(DecryptFailure(.invalidIV, "iv decodes to \(ivCount) bytes, expected 16"))
            }
            let ivBytes = UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(ivBuffer)[0..<16])

            // MARK: ciphertext
            // Cheap guard before allocating: base64 of the maximum is 4/3 of it, plus room for line breaks.
            guard encryptedData.count <= Self.maximumCiphertextCount * 2 else {
                return .failure(DecryptFailure(.invalidCiphertext, "encryptedData is longer than \(Self.maximumCiphertextCount) bytes"))
            }
            let capacity = max(LenientBase64.maxDecodedCount(encryptedData.count), 1)
            return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: capacity) { dataBuffer in
                let dataCount: Int
                switch LenientBase64.decode(encryptedData, into: dataBuffer, repairs: &jobRepairs) {
                case .failure(let failure):
                    return .failure(DecryptFailure(.invalidCiphertext, "encryptedData is \(failure.description)"))
                case .success(let count): dataCount = count
                }
                guard dataCount > 0 else {
                    return .failure(DecryptFailure(.invalidCiphertext, "encryptedData is empty"))
                }
                guard dataCount % EVPAES128CBC.blockSize == 0 else {
                    return .failure(DecryptFailure(.invalidCiphertext, "encryptedData decodes to \(dataCount) bytes, not a multiple of 16"))
                }
                guard dataCount <= Self.maximumCiphertextCount else {
                    return .failure(DecryptFailure(.invalidCiphertext, "encryptedData is longer than \(Self.maximumCiphertextCount) bytes"))
                }
                let ciphertext = UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(dataBuffer)[0..<dataCount])
                return tryKeys(sessionKeys, appid: appid, iv: ivBytes, ciphertext: ciphertext, jobRepairs: jobRepairs)
            }
        }
    }

    // MARK: - Key fallback

    private func tryKeys(
        _ sessionKeys: [String],
        appid: UnsafeBufferPointer<UInt8>,
        iv: UnsafeRawBufferPointer,
        ciphertext: UnsafeRawBufferPointer,
        jobRepairs: Base64Repairs
    ) -> Result<PhonePayload, DecryptFailure> {
        guard !sessionKeys.isEmpty else {
            return .failure(DecryptFailure(.sessionNotFound, "no session key for this user"))
        }
        var best: (rank: Int, failure: DecryptFailure)?
        func record(_ rank: Int, _ failure: @autoclosure () -> DecryptFailure) {
            if best == nil || rank > best!.rank { best = (rank, failure()) }
        }
        let keyNote = sessionKeys.count == 1 ? "" : " (best of \(sessionKeys.count) keys)"
        return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: ciphertext.count) { plaintextBuffer in
            for (index, sessionKey) in sessionKeys.enumerated() {
                var keyRepairs: Base64Repairs = []
                let attempt: KeyAttempt = withBytes(sessionKey) { keyText in
                    withUnsafeTemporaryAllocation(of: UInt8.self, capacity: LenientBase64.maxDecodedCount(keyText.count) + 1) { keyBuffer in
                        switch LenientBase64.decode(keyText, into: keyBuffer, repairs: &keyRepairs) {
                        case .failure(let failure):
                            return .invalidKey("session key \(index) is \(failure.description)")
                        case .success(let count) where count != EVPAES128CBC.keySize:
                            return .invalidKey("session key \(index) decodes to \(count) bytes, expected 16")
                        case .success:
                            let key = UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(keyBuffer)[0..<16])
                            return decryptAndParse(key: key, iv: iv, ciphertext: ciphertext, appid: appid, into: plaintextBuffer)
                        }
                    }
                }
                switch attempt {
                case .success(let phone, let pure, let country, let timestamp):
                    return .success(PhonePayload(
                        phoneNumber: phone, purePhoneNumber: pure, countryCode: country,
                        watermarkTimestamp: timestamp, keyIndex: index, repairs: jobRepairs.union(keyRepairs)
                    ))
                case .invalidKey(let detail):
                    record(0, DecryptFailure(.invalidSessionKey, detail))
                case .badPadding:
                    record(1, DecryptFailure(.badPadding, "PKCS#7 padding check failed\(keyNote)"))
                case .invalidPlaintext(let detail):
                    record(2, DecryptFailure(.invalidPlaintext, detail + keyNote))
                case .appidMismatch:
                    record(3, DecryptFailure(.appidMismatch, "watermark appid is not the expected appid"))
                }
            }
            return .failure(best!.failure)
        }
    }

    private enum KeyAttempt {
        case success(String, String, String, Int64)
        case invalidKey(String)
        case badPadding
        case invalidPlaintext(String)
        case appidMismatch
    }

    private func decryptAndParse(
        key: UnsafeRawBufferPointer,
        iv: UnsafeRawBufferPointer,
        ciphertext: UnsafeRawBufferPointer,
        appid: UnsafeBufferPointer<UInt8>,
        into plaintextBuffer: UnsafeMutableBufferPointer<UInt8>
    ) -> KeyAttempt {
        guard cipher.decryptBlocks(key: key, iv: iv, ciphertext: ciphertext, into: UnsafeMutableRawBufferPointer(plaintextBuffer)) else {
            // OpenSSL refuses only on internal errors; treat it like an undecryptable payload.
            return .badPadding
        }
        let padded = UnsafeBufferPointer(rebasing: plaintextBuffer[0..<ciphertext.count])
        guard let count = PKCS7.unpaddedCount(padded) else { return .badPadding }
        switch PhonePayload.parse(plaintext: UnsafeBufferPointer(rebasing: padded[0..<count]), expectedAppid: appid) {
        case .success(let fields): return .success(fields.phone, fields.pure, fields.country, fields.timestamp)
        case .failure(.invalid(let detail)): return .invalidPlaintext(detail)
        case .failure(.appidMismatch): return .appidMismatch
        }
    }
}

/// Lends a string's UTF-8 bytes without copying when the string is already contiguous.
@inline(__always)
func withBytes<R>(_ string: String, _ body: (UnsafeBufferPointer<UInt8>) -> R) -> R {
    if let result = string.utf8.withContiguousStorageIfAvailable(body) { return result }
    var copy = string
    return copy.withUTF8(body)
}
