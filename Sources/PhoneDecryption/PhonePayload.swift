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

extension PhonePayload {
    /// The plaintext WeChat encrypts for a phone number, byte for byte in its usual member order:
    /// `phoneNumber`, `purePhoneNumber`, `countryCode`, `watermark {timestamp, appid}`.
    public static func plaintext(
        phoneNumber: String, purePhoneNumber: String, countryCode: String, timestamp: Int64, appid: String
    ) -> [UInt8] {
        var writer = JSONWriter()
        writer.beginObject()
        writer.field("phoneNumber", phoneNumber)
        writer.field("purePhoneNumber", purePhoneNumber)
        writer.field("countryCode", countryCode)
        writer.key("watermark")
        writer.beginObject()
        writer.field("timestamp", timestamp)
        writer.field("appid", appid)
        writer.endObject()
        writer.endObject()
        return Array(writer.text.utf8)
    }

    /// This payload as WeChat's plaintext, watermarked with `appid`.
    public func plaintext(appid: String) -> [UInt8] {
        Self.plaintext(
            phoneNumber: phoneNumber, purePhoneNumber: purePhoneNumber, countryCode: countryCode, timestamp: watermarkTimestamp,
            appid: appid)
    }
}
