internal import CLibCrypto

/// SHA-256 over OpenSSL's one-shot EVP digest.
///
/// decryptd keys its code-exchange ledger by a code's SHA-256, so that the code itself (a
/// credential for one phone number) is never stored.
public enum SHA256Digest {
    public static let size = 32

    /// The digest of `bytes`.
    public static func hash(_ bytes: some Collection<UInt8>) -> [UInt8] {
        var digest = [UInt8](repeating: 0, count: size)
        var length: UInt32 = 0
        let status = Array(bytes).withUnsafeBytes { input in
            digest.withUnsafeMutableBufferPointer { output in
                EVP_Digest(input.baseAddress, input.count, output.baseAddress, &length, EVP_sha256(), nil)
            }
        }
        precondition(status == 1 && length == UInt32(size), "OpenSSL's SHA-256 failed")
        return digest
    }

    /// The digest of `text`'s UTF-8 bytes, as 64 lowercase hex digits.
    public static func hex(_ text: String) -> String { hexText(hash(text.utf8)) }

    /// HMAC-SHA256 of `message` keyed with `key`, as 64 lowercase hex digits (WeChat's checksession
    /// signs the empty message with a session key's base64 text).
    public static func hmacHex(key: some Collection<UInt8>, message: some Collection<UInt8>) -> String {
        var digest = [UInt8](repeating: 0, count: size)
        var length: UInt32 = 0
        let key = Array(key)
        let message = Array(message)
        let result = key.withUnsafeBytes { keyBytes in
            message.withUnsafeBufferPointer { messageBytes in
                digest.withUnsafeMutableBufferPointer { output in
                    HMAC(
                        EVP_sha256(), keyBytes.baseAddress, Int32(keyBytes.count), messageBytes.baseAddress, messageBytes.count,
                        output.baseAddress, &length)
                }
            }
        }
        precondition(result != nil && length == UInt32(size), "OpenSSL's HMAC-SHA256 failed")
        return hexText(digest)
    }

    static func hexText(_ bytes: [UInt8]) -> String {
        let digits: [UInt8] = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count * 2)
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0xF)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}
