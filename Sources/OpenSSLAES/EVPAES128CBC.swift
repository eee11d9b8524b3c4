internal import CLibCrypto

/// AES-128-CBC over one OpenSSL `EVP_CIPHER_CTX`, re-keyed for every call, without OpenSSL's own
/// padding (decryption checks PKCS#7 itself; encryption adds it).
///
/// Not `Sendable` on purpose: a context must never be shared between threads. Create one per thread
/// (or per worker slot of a Dispatch pool) and reuse it; re-keying a live context is much cheaper than
/// creating one per message. The cipher is installed once in `init`, so each call only runs the key
/// schedule (passing a NULL cipher to `EVP_*Init_ex` keeps the installed one and its settings).
public final class EVPAES128CBC {
    public enum Direction: Sendable { case decrypt, encrypt }

    public static let keySize = 16
    public static let blockSize = 16

    public let direction: Direction
    /// The single owner of the context; freed in `deinit`.
    private let context: OpaquePointer

    public init(_ direction: Direction) {
        guard let context = EVP_CIPHER_CTX_new() else {
            fatalError("EVP_CIPHER_CTX_new failed: out of memory")
        }
        let cipher = EVPCipherAlgorithm.aes128CBC.pointer
        let status =
            direction == .decrypt
            ? EVP_DecryptInit_ex(context, cipher, nil, nil, nil)
            : EVP_EncryptInit_ex(context, cipher, nil, nil, nil)
        guard status == 1, EVP_CIPHER_CTX_set_padding(context, 0) == 1 else {
            fatalError("OpenSSL refused to set up AES-128-CBC")
        }
        self.direction = direction
        self.context = context
    }

    deinit {
        EVP_CIPHER_CTX_free(context)
    }

    // MARK: - Decryption

    /// Decrypts whole blocks without removing padding.
    ///
    /// - Parameters:
    ///   - key: exactly 16 bytes.
    ///   - iv: exactly 16 bytes.
    ///   - ciphertext: a non-empty multiple of 16 bytes.
    ///   - output: at least `ciphertext.count` bytes; receives the padded plaintext.
    /// - Returns: `false` only when OpenSSL reports an error (which leaves `output` undefined).
    public func decryptBlocks(
        key: UnsafePointer<UInt8>,
        iv: UnsafePointer<UInt8>,
        ciphertext: UnsafeBufferPointer<UInt8>,
        into output: UnsafeMutablePointer<UInt8>
    ) -> Bool {
        precondition(direction == .decrypt)
        precondition(!ciphertext.isEmpty && ciphertext.count % Self.blockSize == 0)
        guard EVP_DecryptInit_ex(context, nil, nil, key, iv) == 1 else {
            ERR_clear_error()
            return false
        }
        var written: Int32 = 0
        let ok = EVP_DecryptUpdate(context, output, &written, ciphertext.baseAddress, Int32(ciphertext.count))
        return ok == 1 && Int(written) == ciphertext.count
    }

    // MARK: - Encryption (PKCS#7), for tests, benchmarks and the load generator

    /// Encrypts `plaintext` with PKCS#7 padding. Returns `nil` only when OpenSSL reports an error.
    public func encrypt(key: [UInt8], iv: [UInt8], plaintext: [UInt8]) -> [UInt8]? {
        precondition(direction == .encrypt)
        precondition(key.count == Self.keySize && iv.count == Self.blockSize)
        let padLength = Self.blockSize - plaintext.count % Self.blockSize
        var padded = plaintext
        padded.append(contentsOf: repeatElement(UInt8(padLength), count: padLength))
        var output = [UInt8](repeating: 0, count: padded.count)
        guard EVP_EncryptInit_ex(context, nil, nil, key, iv) == 1 else {
            ERR_clear_error()
            return nil
        }
        var written: Int32 = 0
        let status = EVP_EncryptUpdate(context, &output, &written, padded, Int32(padded.count))
        return status == 1 && Int(written) == padded.count ? output : nil
    }
}
