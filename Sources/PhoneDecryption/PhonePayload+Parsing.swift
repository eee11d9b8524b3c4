extension PhonePayload {
    /// Why a plaintext is not a phone payload for the expected appid.
    enum ParseFailure: Error {
        case invalid(String)
        case appidMismatch
    }

    /// Parses a decrypted plaintext strictly.
    ///
    /// Required: a JSON object with string `phoneNumber` and `purePhoneNumber` (non-empty),
    /// `countryCode` as a string or a number (kept as its text), and `watermark` as an object with
    /// a non-negative integer `timestamp` and a string `appid` equal to `expectedAppid`.
    /// Other members are validated and ignored. A required member that appears twice is rejected
    /// (never first-wins or last-wins: a payload with two phone numbers is not trustworthy).
    static func parse(
        plaintext: UnsafeBufferPointer<UInt8>,
        expectedAppid: UnsafeBufferPointer<UInt8>
    ) -> Result<(phone: String, pure: String, country: String, timestamp: Int64), ParseFailure> {
        var scanner = JSONScanner(plaintext)
        var phone: JSONStringToken?
        var pure: JSONStringToken?
        var country: CountryCodeToken?
        var timestamp: Int64?
        var appid: JSONStringToken?
        var sawWatermark = false
        var problem: String?

        func note(_ message: String) {
            if problem == nil { problem = message }
        }

        do throws(JSONSyntaxError) {
            guard try scanner.peek() == UInt8(ascii: "{") else {
                return .failure(.invalid("plaintext JSON is not an object"))
            }
            try scanner.forEachMember { scanner, key throws(JSONSyntaxError) in
                if scanner.token(key, equals: "phoneNumber") {
                    if phone != nil { note("duplicate phoneNumber") }
                    phone = try Self.readStringField(&scanner, "phoneNumber", note)
                } else if scanner.token(key, equals: "purePhoneNumber") {
                    if pure != nil { note("duplicate purePhoneNumber") }
                    pure = try Self.readStringField(&scanner, "purePhoneNumber", note)
                } else if scanner.token(key, equals: "countryCode") {
                    if country != nil { note("duplicate countryCode") }
                    let first = try scanner.peek()
                    if first == UInt8(ascii: "\"") {
                        country = .string(try scanner.readString())
                    } else if Self.startsNumber(first) {
                        country = .number(try scanner.readNumber())
                    } else {
                        note("countryCode is not a string or number")
                        try scanner.skipValue()
                    }
                } else if scanner.token(key, equals: "watermark") {
                    if sawWatermark { note("duplicate watermark") }
                    sawWatermark = true
                    guard try scanner.peek() == UInt8(ascii: "{") else {
                        note("watermark is not an object")
                        try scanner.skipValue()
                        return
                    }
                    try scanner.forEachMember { scanner, key throws(JSONSyntaxError) in
                        if scanner.token(key, equals: "timestamp") {
                            if timestamp != nil { note("duplicate watermark.timestamp") }
                            guard Self.startsNumber(try scanner.peek()) else {
                                note("watermark.timestamp is not a number")
                                try scanner.skipValue()
                                return
                            }
                            timestamp = try scanner.readNonNegativeInteger()
                            if timestamp == nil { note("watermark.timestamp is not a non-negative integer") }
                        } else if scanner.token(key, equals: "appid") {
                            if appid != nil { note("duplicate watermark.appid") }
                            appid = try Self.readStringField(&scanner, "watermark.appid", note)
                        } else {
                            try scanner.skipValue()
                        }
                    }
                } else {
                    try scanner.skipValue()
                }
            }
            try scanner.finish()
        } catch {
            return .failure(.invalid("plaintext is not strict JSON: \(error)"))
        }
        if let problem { return .failure(.invalid(problem)) }
        guard let phone, phone.end > phone.start else { return .failure(.invalid("missing or empty phoneNumber")) }
        guard let pure, pure.end > pure.start else { return .failure(.invalid("missing or empty purePhoneNumber")) }
        guard let country else { return .failure(.invalid("missing countryCode")) }
        guard sawWatermark else { return .failure(.invalid("missing watermark")) }
        guard let timestamp else { return .failure(.invalid("missing watermark.timestamp")) }
        guard let appid else { return .failure(.invalid("missing watermark.appid")) }
        guard scanner.token(appid, equals: expectedAppid) else { return .failure(.appidMismatch) }
        let countryText = switch country {
        case .string(let token): scanner.string(token)
        case .number(let range): String(decoding: UnsafeBufferPointer(rebasing: plaintext[range]), as: UTF8.self)
        }
        return .success((scanner.string(phone), scanner.string(pure), countryText, timestamp))
    }

    private enum CountryCodeToken {
        case string(JSONStringToken)
        case number(Range<Int>)
    }

    @inline(__always)
    private static func startsNumber(_ byte: UInt8) -> Bool {
        byte == UInt8(ascii: "-") || byte &- UInt8(ascii: "0") < 10
    }

    /// Reads a string value; a value of another type is skipped and noted.
    private static func readStringField(
        _ scanner: inout JSONScanner, _ name: String, _ note: (String) -> Void
    ) throws(JSONSyntaxError) -> JSONStringToken? {
        guard try scanner.peek() == UInt8(ascii: "\"") else {
            note("\(name) is not a string")
            try scanner.skipValue()
            return nil
        }
        return try scanner.readString()
    }
}
