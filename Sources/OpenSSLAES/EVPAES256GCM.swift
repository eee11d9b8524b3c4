internal import CLibCrypto

/// AES-256-GCM over OpenSSL's EVP, for WeChat's API security mode: a 32-byte key, a 12-byte iv,
/// additional authenticated data, and a 16-byte tag kept apart from the ciphertext (WeChat sends
/// them as separate fields). Stateless: each call sets up and frees its own context, so any thread
/// may call at any time (a context costs far less than the RSA signature every sealed call carries).
public enum EVPAES256GCM {
    public static let keySize = 32
    public static let ivSize = 12
    public static let tagSize = 16

    /// Encrypts `plaintext`; returns the ciphertext (as long as the plaintext) and the tag, or nil
    /// only when OpenSSL reports an error.
    public static func seal(key: [UInt8], iv: [UInt8], aad: [UInt8], plaintext: [UInt8]) -> (ciphertext: [UInt8], tag: [UInt8])? {
        precondition(key.count == keySize && iv.count == ivSize)
        guard let context = EVP_CIPHER_CTX_new() else { return nil }
        defer { EVP_CIPHER_CTX_free(context) }
        var ciphertext = [UInt8](repeating: 0, count: plaintext.count + 16)
        var tag = [UInt8](repeating: 0, count: tagSize)
        var written: Int32 = 0
        var total = 0
        guard EVP_EncryptInit_ex(context, EVP_aes_256_gcm(), nil, nil, nil) == 1,
            EVP_CIPHER_CTX_ctrl(context, EVP_CTRL_AEAD_SET_IVLEN, Int32(ivSize), nil) == 1,
            EVP_EncryptInit_ex(context, nil, nil, key, iv) == 1,
            aad.isEmpty || EVP_EncryptUpdate(context, nil, &written, aad, Int32(aad.count)) == 1
        else { return failed() }
        if !plaintext.isEmpty {
            guard EVP_EncryptUpdate(context, &ciphertext, &written, plaintext, Int32(plaintext.count)) == 1 else { return failed() }
            total = Int(written)
        }
        let ok = ciphertext.withUnsafeMutableBufferPointer { buffer in
            EVP_EncryptFinal_ex(context, buffer.baseAddress! + total, &written) == 1
        }
        guard ok else { return failed() }
        total += Int(written)
        guard EVP_CIPHER_CTX_ctrl(context, EVP_CTRL_AEAD_GET_TAG, Int32(tagSize), &tag) == 1 else { return failed() }
        ciphertext.removeLast(ciphertext.count - total)
        return (ciphertext, tag)
    }

    /// Decrypts and authenticates; nil when the tag does not match (or OpenSSL reports an error):
    /// a changed byte anywhere in the key, iv, AAD, ciphertext or tag gives nil, never a plaintext.
    public static func open(key: [UInt8], iv: [UInt8], aad: [UInt8], ciphertext: [UInt8], tag: [UInt8]) -> [UInt8]? {
        guard key.count == keySize, iv.count == ivSize, tag.count == tagSize else { return nil }
        guard let context = EVP_CIPHER_CTX_new() else { return nil }
        defer { EVP_CIPHER_CTX_free(context) }
        var plaintext = [UInt8](repeating: 0, count: ciphertext.count + 16)
        var written: Int32 = 0
        var total = 0
        var expected = tag
        guard EVP_DecryptInit_ex(context, EVP_aes_256_gcm(), nil, nil, nil) == 1,
            EVP_CIPHER_CTX_ctrl(context, EVP_CTRL_AEAD_SET_IVLEN, Int32(ivSize), nil) == 1,
            EVP_DecryptInit_ex(context, nil, nil, key, iv) == 1,
            aad.isEmpty || EVP_DecryptUpdate(context, nil, &written, aad, Int32(aad.count)) == 1
        else { return failed() }
        if !ciphertext.isEmpty {
            guard EVP_DecryptUpdate(context, &plaintext, &written, ciphertext, Int32(ciphertext.count)) == 1 else { return failed() }
            total = Int(written)
        }
        guard EVP_CIPHER_CTX_ctrl(context, EVP_CTRL_AEAD_SET_TAG, Int32(tagSize), &expected) == 1 else { return failed() }
        let ok = plaintext.withUnsafeMutableBufferPointer { buffer in
            EVP_DecryptFinal_ex(context, buffer.baseAddress! + total, &written) > 0
        }
        guard ok else { return failed() }
        total += Int(written)
        plaintext.removeLast(plaintext.count - total)
        return plaintext
    }

    /// Clears OpenSSL's thread-local error queue (a failure must not linger for the next caller).
    private static func failed<T>() -> T? {
        ERR_clear_error()
        return nil
    }
}
