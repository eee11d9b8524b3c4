public import PhoneDecryption

/// Realistic synthetic phone payloads with chosen faults, for the benchmark, the demo and the load
/// generator. Every payload is really encrypted; `expected` is what decryption must report.
public struct SyntheticPayloads<Generator: RandomNumberGenerator> {
    /// What to get wrong in a payload.
    public enum Fault: String, Sendable, CaseIterable {
        /// A good payload with one current key.
        case none
        /// A good payload, but the user's newest key is a newer, unrelated one: decryption falls back.
        case staleNewestKey = "stale_newest_key"
        /// A good payload whose base64 was damaged in transit (spaces for '+', URL-safe, no padding).
        case damagedBase64 = "damaged_base64"
        case badPadding = "bad_padding"
        case invalidIV = "invalid_iv"
        case invalidCiphertext = "invalid_ciphertext"
        case invalidSessionKey = "invalid_session_key"
        case invalidPlaintext = "invalid_plaintext"
        case appidMismatch = "appid_mismatch"

        /// The outcome decryption must report; `nil` means a phone number.
        public var expectedFailure: FailureReason? {
            switch self {
            case .none, .staleNewestKey, .damagedBase64: nil
            case .badPadding: .badPadding
            case .invalidIV: .invalidIV
            case .invalidCiphertext: .invalidCiphertext
            case .invalidSessionKey: .invalidSessionKey
            case .invalidPlaintext: .invalidPlaintext
            case .appidMismatch: .appidMismatch
            }
        }
    }

    public struct Payload: Sendable, Hashable {
        /// Candidate keys, newest first, as the login service stored them.
        public var sessionKeys: [String]
        public var iv: String
        public var encryptedData: String
        public var phoneNumber: String
        public var watermarkTimestamp: Int64
        public var fault: Fault
    }

    public let appid: String
    public var generator: Generator
    private let encryptor = PhoneEncryptor()

    public init(appid: String, generator: Generator) {
        self.appid = appid
        self.generator = generator
    }

    /// A mainland number: 1, then 3-9, then nine digits.
    public mutating func phoneNumber() -> String {
        "1" + String(Int.random(in: 3...9, using: &generator))
            + String(Int.random(in: 0..<1_000_000_000, using: &generator)).leftPadded(to: 9)
    }

    public mutating func key() -> [UInt8] { PhoneEncryptor.randomBlock(using: &generator) }

    /// A payload for `key` (a fresh key when `nil`), with `fault`.
    public mutating func make(
        _ fault: Fault, key givenKey: [UInt8]? = nil, phoneNumber givenPhone: String? = nil, timestamp givenTimestamp: Int64? = nil
    ) -> Payload {
        let key = givenKey ?? self.key()
        let phone = givenPhone ?? phoneNumber()
        let timestamp = givenTimestamp ?? Int64.random(in: 1_700_000_000..<1_800_000_000, using: &generator)
        let iv = PhoneEncryptor.randomBlock(using: &generator)
        var keys = [Base64Encoding.encode(key)]
        var plaintext = PhoneEncryptor.plaintext(
            phoneNumber: phone, purePhoneNumber: phone, countryCode: "86", timestamp: timestamp,
            appid: fault == .appidMismatch ? "wx00000000000000ff" : appid
        )
        if fault == .invalidPlaintext { plaintext = Array(plaintext.dropLast(2)) }  // truncated JSON
        var encrypted = encryptor.encrypt(plaintext: plaintext, key: key, iv: iv)
        switch fault {
        case .none, .appidMismatch, .invalidPlaintext:
            break
        case .staleNewestKey:
            keys.insert(Base64Encoding.encode(self.key()), at: 0)
        case .damagedBase64:
            encrypted.encryptedData = String(encrypted.encryptedData.map { $0 == "+" ? " " : $0 == "/" ? "_" : $0 })
            while encrypted.iv.hasSuffix("=") { encrypted.iv.removeLast() }
        case .badPadding:
            keys = [Base64Encoding.encode(self.key())]
            // A wrong key passes the padding check about 1 time in 256; pick one that does not.
            let decryptor = PhoneDecryptor()
            while case .failure(let failure) = decryptor.decrypt(
                appid: appid, sessionKeys: keys, iv: encrypted.iv, encryptedData: encrypted.encryptedData),
                failure.reason != .badPadding
            {
                keys = [Base64Encoding.encode(self.key())]
            }
        case .invalidIV:
            encrypted.iv = Base64Encoding.encode(iv.prefix(12))
        case .invalidCiphertext:
            encrypted.encryptedData = String(encrypted.encryptedData.dropLast(4))
        case .invalidSessionKey:
            keys = [Base64Encoding.encode(key.prefix(8))]
        }
        return Payload(
            sessionKeys: keys, iv: encrypted.iv, encryptedData: encrypted.encryptedData,
            phoneNumber: phone, watermarkTimestamp: timestamp, fault: fault
        )
    }
}

extension String {
    func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
