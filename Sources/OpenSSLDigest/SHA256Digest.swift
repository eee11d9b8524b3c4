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
    public static func hex(_ text: String) -> String {
        let digits: [UInt8] = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(size * 2)
        for byte in hash(text.utf8) {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0xF)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}
