public import PhoneDecryption

/// A phone-number code as `decryptd loadgen` makes them and `decryptd dev-wechat` honours them,
/// derived from its fields alone, so the two share no state: the stand-in knows from a code itself
/// whether it is genuine, for which appid, when it was issued, which number it stands for and how
/// its exchange should go wrong (the faults a load asks for).
///
/// Text: `<faults>-<issued, base 36>-<serial, base 36>-<check, 16 hex digits>`; the check mixes the
/// appid, so a code is genuine for one appid only. Not a cryptographic construction: it tells made
/// codes from typed or damaged ones, which is all a local stand-in needs.
public struct SyntheticCode: Sendable, Hashable {
    /// How the exchange of this code goes, by one letter each in the code.
    public struct Faults: OptionSet, Sendable, Hashable {
        public let rawValue: UInt16
        public init(rawValue: UInt16) { self.rawValue = rawValue }

        /// errcode 0 without `phone_info` (`invalid_phone_info`).
        public static let noPhoneInfo = Faults(rawValue: 1 << 0)
        /// `phone_info` watermarked for another appid (`appid_mismatch`).
        public static let wrongWatermark = Faults(rawValue: 1 << 1)
        /// errcode 47001 (`wechat_error`).
        public static let otherErrcode = Faults(rawValue: 1 << 2)
        /// The first exchange answers errcode -1, system busy (then ok).
        public static let busyOnce = Faults(rawValue: 1 << 3)
        /// The first exchange answers errcode 45011, frequency limit (then ok).
        public static let quotaOnce = Faults(rawValue: 1 << 4)
        /// The first exchange answers HTTP 503 (then ok).
        public static let serverErrorOnce = Faults(rawValue: 1 << 5)
        /// The first exchange's connection is reset without an answer (then ok).
        public static let resetOnce = Faults(rawValue: 1 << 6)
        /// The first exchange answers errcode 40001, token invalid (then ok).
        public static let tokenErrorOnce = Faults(rawValue: 1 << 7)

        static let letters: [(Faults, Character)] = [
            (.noPhoneInfo, "n"), (.wrongWatermark, "w"), (.otherErrcode, "x"), (.busyOnce, "b"),
            (.quotaOnce, "q"), (.serverErrorOnce, "e"), (.resetOnce, "r"), (.tokenErrorOnce, "t"),
        ]

        /// The faults whose exchange ends well after a transient answer.
        public static let transient: [Faults] = [.busyOnce, .quotaOnce, .serverErrorOnce, .resetOnce, .tokenErrorOnce]
    }

    /// How long a code is valid (SPEC: 5 minutes).
    public static let lifetime = DecryptJob.codeLifetime

    public var appid: String
    /// Seconds since the epoch.
    public var issuedAt: Int64
    public var serial: UInt64
    public var faults: Faults

    public init(appid: String, issuedAt: Int64, serial: UInt64, faults: Faults = []) {
        self.appid = appid
        self.issuedAt = issuedAt
        self.serial = serial
        self.faults = faults
    }

    /// The code as a job carries it.
    public var text: String {
        "\(faultLetters)-\(String(issuedAt, radix: 36))-\(String(serial, radix: 36))-\(Self.hex(check))"
    }

    /// The same code with a check that does not match: what a wrong or typed code looks like.
    public var forgedText: String {
        "\(faultLetters)-\(String(issuedAt, radix: 36))-\(String(serial, radix: 36))-\(Self.hex(check ^ 0x5A5A))"
    }

    /// The code `text` stands for, if it is a genuine one for `appid`.
    public static func parse(_ text: String, appid: String) -> SyntheticCode? {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 4, let issuedAt = Int64(parts[1], radix: 36), let serial = UInt64(parts[2], radix: 36),
            parts[3].utf8.count == 16, let check = UInt64(parts[3], radix: 16)
        else { return nil }
        var faults: Faults = []
        for letter in parts[0] where letter != "0" {
            guard let fault = Faults.letters.first(where: { $0.1 == letter })?.0 else { return nil }
            faults.insert(fault)
        }
        let code = SyntheticCode(appid: appid, issuedAt: issuedAt, serial: serial, faults: faults)
        return code.check == check && code.text == text ? code : nil
    }

    /// The phone number this code stands for, watermarked when the code was issued for its appid
    /// (or for another one, with ``Faults/wrongWatermark``).
    public var phone: PhonePayload {
        let digits = String(check % 10_000_000_000)
        let number = "1" + String(repeating: "0", count: 10 - digits.count) + digits
        return PhonePayload(phoneNumber: number, purePhoneNumber: number, countryCode: "86", watermarkTimestamp: issuedAt)
    }

    /// The appid `phone_info.watermark` names.
    public var watermarkAppid: String { faults.contains(.wrongWatermark) ? "wxnot" + appid : appid }

    private var faultLetters: String {
        let letters = Faults.letters.filter { faults.contains($0.0) }.map(\.1)
        return letters.isEmpty ? "0" : String(letters)
    }

    private var check: UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in "decryptd-dev-wechat/\(appid)/\(faultLetters)".utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
        return SplitMix.mix(hash ^ SplitMix.mix(UInt64(bitPattern: issuedAt)) ^ SplitMix.mix(serial &* 0x9E37_79B9_7F4A_7C15))
    }

    private static func hex(_ value: UInt64) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }
}
