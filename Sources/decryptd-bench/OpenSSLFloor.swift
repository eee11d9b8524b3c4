import CLibCrypto
import Glibc

/// The least work any decryptor must do, written the way a tuned C loop would: OpenSSL's own base64
/// (`EVP_DecodeBlock`), EVP AES-128-CBC re-keyed on an installed cipher, a PKCS#7 check and a
/// substring search for the appid. No lenient base64, no JSON validation, no key fallback.
/// The core is measured against it in the same run.
final class OpenSSLFloor {
    private let context = EVP_CIPHER_CTX_new()!
    private let buffer = UnsafeMutablePointer<UInt8>.allocate(capacity: 8192)

    init() {
        EVP_DecryptInit_ex(context, EVP_CIPHER_fetch(nil, "AES-128-CBC", nil), nil, nil, nil)
        EVP_CIPHER_CTX_set_padding(context, 0)
    }

    deinit {
        EVP_CIPHER_CTX_free(context)
        buffer.deallocate()
    }

    /// One payload, all inputs already as bytes (as a C program would hold them).
    struct Input {
        var key: [UInt8]
        var iv: [UInt8]
        var encryptedData: [UInt8]
        var padding: Int
    }

    /// Returns whether the payload looks right (padding valid and the appid present).
    func run(_ input: Input, appid: UnsafeBufferPointer<UInt8>) -> Bool {
        let key = buffer
        let iv = buffer + 64
        let ciphertext = buffer + 128
        let plaintext = buffer + 4096
        _ = EVP_DecodeBlock(key, input.key, Int32(input.key.count))
        _ = EVP_DecodeBlock(iv, input.iv, Int32(input.iv.count))
        var length = Int(EVP_DecodeBlock(ciphertext, input.encryptedData, Int32(input.encryptedData.count))) - input.padding
        length -= length % 16
        guard length > 0 else { return false }
        EVP_DecryptInit_ex(context, nil, nil, key, iv)
        var written: Int32 = 0
        EVP_DecryptUpdate(context, plaintext, &written, ciphertext, Int32(length))
        let pad = Int(plaintext[length - 1])
        guard pad >= 1, pad <= 16 else { return false }
        for index in length - pad..<length where plaintext[index] != UInt8(pad) { return false }
        return contains(plaintext, count: length - pad, appid)
    }

    /// A first-byte-filtered substring search (what `memmem` does; glibc hides it without _GNU_SOURCE).
    private func contains(_ haystack: UnsafePointer<UInt8>, count: Int, _ needle: UnsafeBufferPointer<UInt8>) -> Bool {
        guard count >= needle.count, let first = needle.first else { return false }
        var start = 0
        while start <= count - needle.count {
            if haystack[start] == first, memcmp(haystack + start, needle.baseAddress!, needle.count) == 0 { return true }
            start += 1
        }
        return false
    }
}
