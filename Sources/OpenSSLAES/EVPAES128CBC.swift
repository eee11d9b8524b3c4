internal import CLibCrypto

/// AES-128-CBC over one OpenSSL `EVP_CIPHER_CTX`, re-keyed for every call.
///
/// Not `Sendable` on purpose: a context must never be shared between threads. Create one per thread
/// (or per worker slot of a Dispatch pool) and reuse it; re-keying a live context is much cheaper than
/// creating one per message.
public final class EVPAES128CBC {
    public static let keySize = 16
    public static let blockSize = 16

    /// The single owner of the context; freed in `deinit`.
    private let context: OpaquePointer
    private var decrypting: Bool?

    public init() {
        guard let context = EVP_CIPHER_CTX_new() else {
            fatalError("EVP_CIPHER_CTX_new failed: out of memory")
        }
        self.context = context
    }

    deinit {
        EVP_CIPHER_CTX_free(context)
    }

    // MARK: - Decryption (no padding: the caller checks PKCS#7 itself)

    /// Decrypts whole blocks without removing padding.
    ///
    /// - Parameters:
    ///   - key: exactly 16 bytes.
    ///   - iv: exactly 16 bytes.
    ///   - ciphertext: a non-empty multiple of 16 bytes.
    ///   - output: at least `ciphertext.count` bytes; receives the padded plaintext.
    /// - Returns: `false` only when OpenSSL reports an error (which leaves `output` undefined).
    public func decryptBlocks(
        key: UnsafeRawBufferPointer,
        iv: UnsafeRawBufferPointer,
        ciphertext: UnsafeRawBufferPointer,
        into output: UnsafeMutableRawBufferPointer
    ) -> Bool {
        precondition(key.count == Self.keySize && iv.count == Self.blockSize)
        precondition(!ciphertext.isEmpty && ciphertext.count % Self.blockSize == 0)
        precondition(output.count >= ciphertext.count)
        guard prepare(decrypt: true, key: key, iv: iv) else { return false }
        var written: Int32 = 0
        let ok = EVP_DecryptUpdate(
            context,
            output.baseAddress!.assumingMemoryBound(to: UInt8.self), &written,
            ciphertext.baseAddress!.assumingMemoryBound(to: UInt8.self), Int32(ciphertext.count)
        )
        return ok == 1 && Int(written) == ciphertext.count
    }

    // MARK: - Encryption (PKCS#7), for tests, benchmarks and the load generator

    /// Encrypts `plaintext` with PKCS#7 padding. Returns `nil` only when OpenSSL reports an error.
    public func encrypt(key: [UInt8], iv: [UInt8], plaintext: [UInt8]) -> [UInt8]? {
        precondition(key.count == Self.keySize && iv.count == Self.blockSize)
        let padLength = Self.blockSize - plaintext.count % Self.blockSize
        var padded = plaintext
        padded.append(contentsOf: repeatElement(UInt8(padLength), count: padLength))
        var output = [UInt8](repeating: 0, count: padded.count)
        let ok = key.withUnsafeBytes { keyBytes in
            iv.withUnsafeBytes { ivBytes -> Bool in
                guard prepare(decrypt: false, key: keyBytes, iv: ivBytes) else { return false }
                var written: Int32 = 0
                let status = output.withUnsafeMutableBufferPointer { out in
                    padded.withUnsafeBufferPointer { input in
                        EVP_EncryptUpdate(context, out.baseAddress, &written, input.baseAddress, Int32(input.count))
                    }
                }
                return status == 1 && Int(written) == padded.count
            }
        }
        return ok ? output : nil
    }

    // MARK: - Context setup

    /// Keys the context. The first call per direction installs the cipher and turns OpenSSL's own
    /// padding off; later calls pass a NULL cipher, which keeps both and only runs the key schedule.
    private func prepare(decrypt: Bool, key: UnsafeRawBufferPointer, iv: UnsafeRawBufferPointer) -> Bool {
        let keyPointer = key.baseAddress!.assumingMemoryBound(to: UInt8.self)
        let ivPointer = iv.baseAddress!.assumingMemoryBound(to: UInt8.self)
        let cipher: OpaquePointer? = decrypting == decrypt ? nil : EVPCipherAlgorithm.aes128CBC.pointer
        let status = decrypt
            ? EVP_DecryptInit_ex(context, cipher, nil, keyPointer, ivPointer)
            : EVP_EncryptInit_ex(context, cipher, nil, keyPointer, ivPointer)
        guard status == 1 else {
            ERR_clear_error()
            decrypting = nil
            return false
        }
        if cipher != nil {
            EVP_CIPHER_CTX_set_padding(context, 0)
            decrypting = decrypt
        }
        return true
    }
}
