/// A decrypted, verified phone number payload.
public struct PhonePayload: Sendable, Hashable {
    /// The number with country prefix as WeChat formats it, e.g. `+852 51234567` or `13800138000`.
    public var phoneNumber: String
    /// The number without country code.
    public var purePhoneNumber: String
    /// The country calling code as text (WeChat sends it as a string or a number).
    public var countryCode: String
    /// `watermark.timestamp`: seconds since the epoch when WeChat produced the payload.
    public var watermarkTimestamp: Int64
    /// Which candidate session key worked: 0 is the newest.
    public var keyIndex: Int
    /// What lenient base64 had to repair in the iv, encryptedData or the key that worked.
    public var repairs: Base64Repairs

    public var repaired: Bool { !repairs.isEmpty }

    public init(
        phoneNumber: String, purePhoneNumber: String, countryCode: String,
        watermarkTimestamp: Int64, keyIndex: Int = 0, repairs: Base64Repairs = []
    ) {
        self.phoneNumber = phoneNumber
        self.purePhoneNumber = purePhoneNumber
        self.countryCode = countryCode
        self.watermarkTimestamp = watermarkTimestamp
        self.keyIndex = keyIndex
        self.repairs = repairs
    }
}
