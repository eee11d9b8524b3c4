extension PhonePayload {
    /// The fields of a verified plaintext.
    struct Fields {
        var phone: String
        var pure: String
        var country: String
        var timestamp: Int64
    }

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
    ) -> Result<Fields, ParseFailure> {
        var scanner = JSONScanner(plaintext)
        var found = Tokens()
        do throws(JSONSyntaxError) {
            guard try scanner.peek() == UInt8(ascii: "{") else {
                return .failure(.invalid("plaintext JSON is not an object"))
            }
            try scanner.forEachMember(into: &found) { scanner, key, found throws(JSONSyntaxError) in
                if scanner.token(key, equals: "phoneNumber") {
                    found.phone = try readString(&scanner, into: &found, existing: found.phone, "phoneNumber")
                } else if scanner.token(key, equals: "purePhoneNumber") {
                    found.pure = try readString(&scanner, into: &found, existing: found.pure, "purePhoneNumber")
                } else if scanner.token(key, equals: "countryCode") {
                    if found.country != nil { found.note("duplicate countryCode") }
                    let first = try scanner.peek()
                    if first == UInt8(ascii: "\"") {
                        found.country = .string(try scanner.readString())
                    } else if startsNumber(first) {
                        found.country = .number(try scanner.readNumber())
                    } else {
                        found.note("countryCode is not a string or number")
                        try scanner.skipValue()
                    }
                } else if scanner.token(key, equals: "watermark") {
                    if found.sawWatermark { found.note("duplicate watermark") }
                    found.sawWatermark = true
                    guard try scanner.peek() == UInt8(ascii: "{") else {
                        found.note("watermark is not an object")
                        try scanner.skipValue()
                        return
                    }
                    try scanner.forEachMember(into: &found) { scanner, key, found throws(JSONSyntaxError) in
                        if scanner.token(key, equals: "timestamp") {
                            if found.timestamp != nil { found.note("duplicate watermark.timestamp") }
                            guard startsNumber(try scanner.peek()) else {
                                found.note("watermark.timestamp is not a number")
                                try scanner.skipValue()
                                return
                            }
                            found.timestamp = try scanner.readNonNegativeInteger()
                            if found.timestamp == nil { found.note("watermark.timestamp is not a non-negative integer") }
                        } else if scanner.token(key, equals: "appid") {
                            found.appid = try readString(&scanner, into: &found, existing: found.appid, "watermark.appid")
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
        if let problem = found.problem { return .failure(.invalid(problem)) }
        guard let phone = found.phone, phone.end > phone.start else { return .failure(.invalid("missing or empty phoneNumber")) }
        guard let pure = found.pure, pure.end > pure.start else { return .failure(.invalid("missing or empty purePhoneNumber")) }
        guard let country = found.country else { return .failure(.invalid("missing countryCode")) }
        guard found.sawWatermark else { return .failure(.invalid("missing watermark")) }
        guard let timestamp = found.timestamp else { return .failure(.invalid("missing watermark.timestamp")) }
        guard let appid = found.appid else { return .failure(.invalid("missing watermark.appid")) }
        // Stored text must be storable and printable: a control character (C0 only through an
        // escape, the scanner refuses raw ones; DEL also raw, JSON allows it) would make
        // PostgreSQL refuse the whole batch (NUL) or corrupt exports and reports. No real phone
        // field has one.
        if let name = controlCharacterField(scanner, phone: phone, pure: pure, country: country) {
            return .failure(.invalid("\(name) contains a control character"))
        }
        guard scanner.token(appid, equals: expectedAppid) else { return .failure(.appidMismatch) }
        let countryText =
            switch country {
            case .string(let token): scanner.string(token)
            case .number(let range): String(decoding: UnsafeBufferPointer(rebasing: plaintext[range]), as: UTF8.self)
            }
        return .success(Fields(phone: scanner.string(phone), pure: scanner.string(pure), country: countryText, timestamp: timestamp))
    }

    // MARK: - Parse state

    private enum CountryCodeToken {
        case string(JSONStringToken)
        case number(Range<Int>)
    }

    /// What the walk found so far, and the first problem (reported after the whole document is
    /// known to be JSON, so that malformed JSON always reads as such).
    private struct Tokens {
        var phone: JSONStringToken?
        var pure: JSONStringToken?
        var country: CountryCodeToken?
        var timestamp: Int64?
        var appid: JSONStringToken?
        var sawWatermark = false
        var problem: String?

        mutating func note(_ message: @autoclosure () -> String) {
            if problem == nil { problem = message() }
        }
    }

    /// The first phone field whose decoded text holds a C0 control character or DEL, if any.
    private static func controlCharacterField(
        _ scanner: JSONScanner, phone: JSONStringToken, pure: JSONStringToken, country: CountryCodeToken
    ) -> StaticString? {
        func hasControl(_ token: JSONStringToken) -> Bool {
            scanner.token(token, containsByte: { $0 < 0x20 || $0 == 0x7F })
        }
        if hasControl(phone) { return "phoneNumber" }
        if hasControl(pure) { return "purePhoneNumber" }
        if case .string(let token) = country, hasControl(token) { return "countryCode" }
        return nil
    }

    @inline(__always)
    private static func startsNumber(_ byte: UInt8) -> Bool {
        byte == UInt8(ascii: "-") || byte &- UInt8(ascii: "0") < 10
    }

    /// Reads a string value; a duplicate or a value of another type is noted.
    private static func readString(
        _ scanner: inout JSONScanner, into found: inout Tokens, existing: JSONStringToken?, _ name: StaticString
    ) throws(JSONSyntaxError) -> JSONStringToken? {
        if existing != nil { found.note("duplicate \(name)") }
        guard try scanner.peek() == UInt8(ascii: "\"") else {
            found.note("\(name) is not a string")
            try scanner.skipValue()
            return nil
        }
        return try scanner.readString()
    }
}
