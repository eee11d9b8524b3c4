public import DecryptdTestSupport
import Foundation
import PhoneDecryption
import SyntheticLoad
public import Testing

extension VectorFile.Case: CustomTestStringConvertible {
    public var testDescription: String { name }
}

/// A small, fast, seedable generator so fuzz failures reproduce from the printed seed.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Builds encrypted payloads for tests.
struct PayloadFactory {
    static let appid = "wx0123456789abcdef"
    let encryptor = PhoneEncryptor()
    var generator = SplitMix64(seed: 42)

    mutating func key() -> [UInt8] { PhoneEncryptor.randomBlock(using: &generator) }

    mutating func payload(
        key: [UInt8], phone: String = "13800138000", timestamp: Int64 = 1_700_000_000, appid: String = appid
    ) -> PhoneEncryptor.Encrypted {
        let plaintext = PhoneEncryptor.plaintext(
            phoneNumber: phone, purePhoneNumber: phone, countryCode: "86", timestamp: timestamp, appid: appid
        )
        return encryptor.encrypt(plaintext: plaintext, key: key, iv: PhoneEncryptor.randomBlock(using: &generator))
    }

    mutating func encrypt(_ plaintext: String, key: [UInt8]) -> PhoneEncryptor.Encrypted {
        encryptor.encrypt(plaintext: Array(plaintext.utf8), key: key, iv: PhoneEncryptor.randomBlock(using: &generator))
    }
}
