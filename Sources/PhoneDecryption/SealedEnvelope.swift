/// The two JSON shapes of WeChat's API security mode that decryptd reads (SPEC "Code jobs" → "API
/// security mode"), parsed strictly: the sealed body `{"iv", "data", "authtag"}` and the stamp inside
/// a decrypted answer (`_appid`, `_timestamp`). Pure parsers, fuzzed (Fuzz/FuzzSealedAnswers).
public enum SealedEnvelope: Sendable, Hashable {
    /// The envelope's parts, decoded: a 12-byte iv, the ciphertext, a 16-byte tag.
    case sealed(iv: [UInt8], data: [UInt8], tag: [UInt8])
    /// A decrypted answer's `_appid` and `_timestamp`.
    case stamp(appid: String, timestamp: Int64)
    /// Not the shape; the detail names the problem, never a value.
    case malformed(String)

    /// Parses a sealed body: an object with string members `iv` (base64 of 12 bytes), `data` (base64,
    /// not empty) and `authtag` (base64 of 16 bytes), each once; other members are ignored.
    public static func parse(_ body: [UInt8]) -> SealedEnvelope {
        var iv: [UInt8]?
        var data: [UInt8]?
        var tag: [UInt8]?
        var problem: String?
        let read: Result<Void, JSONSyntaxError> = body.withUnsafeBufferPointer { bytes in
            var scanner = JSONScanner(bytes)
            do throws(JSONSyntaxError) {
                try scanner.forEachMember { scanner, key throws(JSONSyntaxError) in
                    let name: String
                    if scanner.token(key, equals: "iv") {
                        name = "iv"
                    } else if scanner.token(key, equals: "data") {
                        name = "data"
                    } else if scanner.token(key, equals: "authtag") {
                        name = "authtag"
                    } else {
                        try scanner.skipValue()
                        return
                    }
                    guard try scanner.peek() == UInt8(ascii: "\"") else {
                        try scanner.skipValue()
                        if problem == nil { problem = "\(name) is not a string" }
                        return
                    }
                    let token = try scanner.readString()
                    let decoded = LenientBase64.decodeStrictly(scanner.string(token))
                    if decoded == nil, problem == nil { problem = "\(name) is not base64" }
                    switch name {
                    case "iv":
                        if iv != nil, problem == nil { problem = "iv twice" }
                        iv = decoded
                    case "data":
                        if data != nil, problem == nil { problem = "data twice" }
                        data = decoded
                    default:
                        if tag != nil, problem == nil { problem = "authtag twice" }
                        tag = decoded
                    }
                }
                try scanner.finish()
                return .success(())
            } catch {
                return .failure(error)
            }
        }
        if case .failure(let error) = read { return .malformed("sealed body is not a strict JSON object: \(error)") }
        if let problem { return .malformed(problem) }
        guard let iv, iv.count == 12 else { return .malformed("iv is missing or not 12 bytes") }
        guard let data, !data.isEmpty else { return .malformed("data is missing or empty") }
        guard let tag, tag.count == 16 else { return .malformed("authtag is missing or not 16 bytes") }
        return .sealed(iv: iv, data: data, tag: tag)
    }

    /// Reads `_appid` (a string) and `_timestamp` (a non-negative integer) from a decrypted answer,
    /// each exactly once; other members are skipped.
    public static func stamp(_ plaintext: [UInt8]) -> SealedEnvelope {
        var appid: String?
        var timestamp: Int64?
        var problem: String?
        let read: Result<Void, JSONSyntaxError> = plaintext.withUnsafeBufferPointer { bytes in
            var scanner = JSONScanner(bytes)
            do throws(JSONSyntaxError) {
                try scanner.forEachMember { scanner, key throws(JSONSyntaxError) in
                    if scanner.token(key, equals: "_appid") {
                        if appid != nil, problem == nil { problem = "_appid twice" }
                        if try scanner.peek() == UInt8(ascii: "\"") {
                            appid = scanner.string(try scanner.readString())
                        } else {
                            try scanner.skipValue()
                            if problem == nil { problem = "_appid is not a string" }
                        }
                    } else if scanner.token(key, equals: "_timestamp") {
                        if timestamp != nil, problem == nil { problem = "_timestamp twice" }
                        let first = try scanner.peek()
                        if first &- UInt8(ascii: "0") < 10 {
                            timestamp = try scanner.readNonNegativeInteger()
                        } else {
                            try scanner.skipValue()
                        }
                        if timestamp == nil, problem == nil { problem = "_timestamp is not an integer" }
                    } else {
                        try scanner.skipValue()
                    }
                }
                try scanner.finish()
                return .success(())
            } catch {
                return .failure(error)
            }
        }
        if case .failure(let error) = read { return .malformed("answer is not a strict JSON object: \(error)") }
        if let problem { return .malformed(problem) }
        guard let appid, let timestamp else { return .malformed("answer has no _appid or no _timestamp") }
        return .stamp(appid: appid, timestamp: timestamp)
    }
}
