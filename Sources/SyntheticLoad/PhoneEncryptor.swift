internal import OpenSSLAES
import PhoneDecryption

/// Produces WeChat-style encrypted phone payloads: the inverse of ``PhoneDecryptor``.
///
/// For tests, benchmarks and the load generator; decryptd itself never encrypts.
/// Not `Sendable`: it owns an OpenSSL context; use one per thread.
public final class PhoneEncryptor {
    private let cipher = EVPAES128CBC(.encrypt)

    public init() {}

    /// The payload fields as base64 strings, ready to put into a job.
    public struct Encrypted: Sendable, Hashable {
        public var iv: String
        public var encryptedData: String
    }

    /// The plaintext WeChat sends for a phone number (``PhonePayload/plaintext(phoneNumber:purePhoneNumber:countryCode:timestamp:appid:)``).
    public static func plaintext(
        phoneNumber: String, purePhoneNumber: String, countryCode: String, timestamp: Int64, appid: String
    ) -> [UInt8] {
        PhonePayload.plaintext(
            phoneNumber: phoneNumber, purePhoneNumber: purePhoneNumber, countryCode: countryCode, timestamp: timestamp, appid: appid)
    }

    /// Encrypts raw plaintext bytes with PKCS#7 padding. `key` and `iv` are 16 bytes each.
    public func encrypt(plaintext: [UInt8], key: [UInt8], iv: [UInt8]) -> Encrypted {
        guard let ciphertext = cipher.encrypt(key: key, iv: iv, plaintext: plaintext) else {
            fatalError("OpenSSL failed to encrypt with a 16-byte key and iv")
        }
        return Encrypted(iv: Base64Encoding.encode(iv), encryptedData: Base64Encoding.encode(ciphertext))
    }

    /// Encrypts raw bytes that are already a whole number of blocks, without adding padding
    /// (to build payloads with deliberately broken padding).
    public func encryptWithoutPadding(blocks: [UInt8], key: [UInt8], iv: [UInt8]) -> Encrypted {
        precondition(!blocks.isEmpty && blocks.count % 16 == 0)
        // Encrypting with padding appends exactly one whole block of 0x10; drop it.
        guard let ciphertext = cipher.encrypt(key: key, iv: iv, plaintext: blocks) else {
            fatalError("OpenSSL failed to encrypt with a 16-byte key and iv")
        }
        return Encrypted(iv: Base64Encoding.encode(iv), encryptedData: Base64Encoding.encode(ciphertext.prefix(blocks.count)))
    }

    /// 16 random bytes (keys and ivs for synthetic data; not for real secrets).
    public static func randomBlock<G: RandomNumberGenerator>(using generator: inout G) -> [UInt8] {
        (0..<16).map { _ in UInt8.random(in: 0...255, using: &generator) }
    }
}
