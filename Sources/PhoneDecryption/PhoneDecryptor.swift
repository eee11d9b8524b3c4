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
/// Not `Sendable`: it owns an OpenSSL context and scratch buffers. Use one instance per thread and
/// reuse it; it allocates nothing per call on the success path beyond the result's strings.
public final class PhoneDecryptor {
    /// Real payloads are about 200 bytes; anything far larger is rejected before decrypting.
    public static let maximumCiphertextCount = 64 * 1024
    /// The longest base64 text accepted for encryptedData (room for line breaks and spaces).
    static let maximumCiphertextTextCount = maximumCiphertextCount * 2
    /// The longest base64 text accepted for an iv or a session key (24 characters when canonical).
    static let maximumBlockTextCount = 64

    private let cipher = EVPAES128CBC(.decrypt)
    /// One allocation, owned here and freed in `deinit`: key | iv | ciphertext | plaintext.
    private let scratch: UnsafeMutableBufferPointer<UInt8>
    private let key: UnsafeMutableBufferPointer<UInt8>
    private let iv: UnsafeMutableBufferPointer<UInt8>
    private let ciphertext: UnsafeMutableBufferPointer<UInt8>
    private let plaintext: UnsafeMutableBufferPointer<UInt8>

    public init() {
        let blockRegion = LenientBase64.maxDecodedCount(Self.maximumBlockTextCount)
        let cipherRegion = LenientBase64.maxDecodedCount(Self.maximumCiphertextTextCount)
        let scratch = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: 2 * blockRegion + 2 * cipherRegion)
        scratch.initialize(repeating: 0)
        self.scratch = scratch
        key = UnsafeMutableBufferPointer(rebasing: scratch[0..<blockRegion])
        iv = UnsafeMutableBufferPointer(rebasing: scratch[blockRegion..<2 * blockRegion])
        ciphertext = UnsafeMutableBufferPointer(rebasing: scratch[2 * blockRegion..<2 * blockRegion + cipherRegion])
        plaintext = UnsafeMutableBufferPointer(rebasing: scratch[(2 * blockRegion + cipherRegion)...])
    }

    deinit {
        // Session keys and plaintext pass through here: wipe before handing the memory back.
        scratch.update(repeating: 0)
        scratch.deallocate()
    }

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

    /// Decrypts one payload whose base64 fields are UTF-8 bytes (read where they lie).
    public func decrypt(
        appid: String, sessionKeys: [String], iv: UnsafeBufferPointer<UInt8>, encryptedData: UnsafeBufferPointer<UInt8>
    ) -> Result<PhonePayload, DecryptFailure> {
        withBytes(appid) { decrypt(appid: $0, sessionKeys: sessionKeys, iv: iv, encryptedData: encryptedData) }
    }

    /// Decrypts one payload given as UTF-8 bytes.
    public func decrypt(
        appid: UnsafeBufferPointer<UInt8>,
        sessionKeys: [String],
        iv ivText: UnsafeBufferPointer<UInt8>,
        encryptedData dataText: UnsafeBufferPointer<UInt8>
    ) -> Result<PhonePayload, DecryptFailure> {
        var jobRepairs: Base64Repairs = []

        // MARK: iv
        guard ivText.count <= Self.maximumBlockTextCount else {
            return .failure(DecryptFailure(.invalidIV, "iv is \(ivText.count) characters, far too long for 16 bytes"))
        }
        switch LenientBase64.decode(ivText, into: iv, repairs: &jobRepairs) {
        case .failure(let failure):
            return .failure(DecryptFailure(.invalidIV, "iv is \(failure.description)"))
        case .success(let count) where count != EVPAES128CBC.blockSize:
            return .failure(DecryptFailure(.invalidIV, "iv decodes to \(count) bytes, expected 16"))
        case .success:
            break
        }

        // MARK: ciphertext
        guard dataText.count <= Self.maximumCiphertextTextCount else {
            return .failure(DecryptFailure(.invalidCiphertext, "encryptedData is longer than \(Self.maximumCiphertextCount) bytes"))
        }
        let dataCount: Int
        switch LenientBase64.decode(dataText, into: ciphertext, repairs: &jobRepairs) {
        case .failure(let failure):
            return .failure(DecryptFailure(.invalidCiphertext, "encryptedData is \(failure.description)"))
        case .success(0):
            return .failure(DecryptFailure(.invalidCiphertext, "encryptedData is empty"))
        case .success(let count) where count % EVPAES128CBC.blockSize != 0:
            return .failure(DecryptFailure(.invalidCiphertext, "encryptedData decodes to \(count) bytes, not a multiple of 16"))
        case .success(let count) where count > Self.maximumCiphertextCount:
            return .failure(DecryptFailure(.invalidCiphertext, "encryptedData is longer than \(Self.maximumCiphertextCount) bytes"))
        case .success(let count):
            dataCount = count
        }

        // MARK: keys, newest first
        guard !sessionKeys.isEmpty else {
            return .failure(DecryptFailure(.sessionNotFound, "no session key for this user"))
        }
        var best = DecryptFailure(.invalidSessionKey, "")
        var bestRank = -1
        for index in sessionKeys.indices {
            var keyRepairs: Base64Repairs = []
            let outcome = withBytes(sessionKeys[index]) { keyText in
                attempt(keyText: keyText, index: index, dataCount: dataCount, appid: appid, repairs: &keyRepairs)
            }
            let rank: Int
            let failure: DecryptFailure
            switch outcome {
            case .success(let fields):
                return .success(
                    PhonePayload(
                        phoneNumber: fields.phone, purePhoneNumber: fields.pure, countryCode: fields.country,
                        watermarkTimestamp: fields.timestamp, keyIndex: index, repairs: jobRepairs.union(keyRepairs)
                    ))
            case .invalidKey(let detail):
                (rank, failure) = (0, DecryptFailure(.invalidSessionKey, detail))
            case .badPadding:
                (rank, failure) = (1, DecryptFailure(.badPadding, "PKCS#7 padding check failed" + Self.keyNote(sessionKeys.count)))
            case .invalidPlaintext(let detail):
                (rank, failure) = (2, DecryptFailure(.invalidPlaintext, detail + Self.keyNote(sessionKeys.count)))
            case .appidMismatch:
                (rank, failure) = (3, DecryptFailure(.appidMismatch, "watermark appid is not the expected appid"))
            }
            if rank > bestRank { (bestRank, best) = (rank, failure) }
        }
        return .failure(best)
    }

    private static func keyNote(_ keyCount: Int) -> String {
        keyCount == 1 ? "" : " (best of \(keyCount) keys)"
    }

    // MARK: - One key

    private enum KeyAttempt {
        case success(PhonePayload.Fields)
        case invalidKey(String)
        case badPadding
        case invalidPlaintext(String)
        case appidMismatch
    }

    private func attempt(
        keyText: UnsafeBufferPointer<UInt8>, index: Int, dataCount: Int,
        appid: UnsafeBufferPointer<UInt8>, repairs: inout Base64Repairs
    ) -> KeyAttempt {
        guard keyText.count <= Self.maximumBlockTextCount else {
            return .invalidKey("session key \(index) is \(keyText.count) characters, far too long for 16 bytes")
        }
        switch LenientBase64.decode(keyText, into: key, repairs: &repairs) {
        case .failure(let failure):
            return .invalidKey("session key \(index) is \(failure.description)")
        case .success(let count) where count != EVPAES128CBC.keySize:
            return .invalidKey("session key \(index) decodes to \(count) bytes, expected 16")
        case .success:
            break
        }
        let input = UnsafeBufferPointer(rebasing: ciphertext[0..<dataCount])
        guard cipher.decryptBlocks(key: key.baseAddress!, iv: iv.baseAddress!, ciphertext: input, into: plaintext.baseAddress!) else {
            // OpenSSL refuses only on internal errors; treat it like an undecryptable payload.
            return .badPadding
        }
        let padded = UnsafeBufferPointer(rebasing: plaintext[0..<dataCount])
        guard let count = PKCS7.unpaddedCount(padded) else { return .badPadding }
        switch PhonePayload.parse(plaintext: UnsafeBufferPointer(rebasing: padded[0..<count]), expectedAppid: appid) {
        case .success(let fields): return .success(fields)
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
