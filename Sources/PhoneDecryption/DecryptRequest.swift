/// One input of `decryptd decrypt`: the fields SPEC.md gives for a JSON line.
///
/// `{"appid": str, "session_key": str | "session_keys": [str], "iv": str, "encryptedData": str}`.
/// `appid` may be left out when the tool was given a default appid.
public struct DecryptRequest: Sendable, Hashable {
    public var appid: String
    public var sessionKeys: [String]
    public var iv: String
    public var encryptedData: String

    public init(appid: String, sessionKeys: [String], iv: String, encryptedData: String) {
        self.appid = appid
        self.sessionKeys = sessionKeys
        self.iv = iv
        self.encryptedData = encryptedData
    }

    /// Parses one line. Anything that is not such an object is `malformed_job`.
    public static func parse(_ line: UnsafeBufferPointer<UInt8>, defaultAppid: String?) -> Result<DecryptRequest, DecryptFailure> {
        var appid: String?
        var sessionKey: String?
        var sessionKeys: [String]?
        var iv: String?
        var encryptedData: String?
        var problem: String?
        var scanner = JSONScanner(line)
        func readString(_ scanner: inout JSONScanner, _ name: String) throws(JSONSyntaxError) -> String? {
            guard try scanner.peek() == UInt8(ascii: "\"") else {
                if problem == nil { problem = "\(name) is not a string" }
                try scanner.skipValue()
                return nil
            }
            return scanner.string(try scanner.readString())
        }
        do throws(JSONSyntaxError) {
            guard try scanner.peek() == UInt8(ascii: "{") else {
                return .failure(DecryptFailure(.malformedJob, "line is not a JSON object"))
            }
            try scanner.forEachMember { scanner, key throws(JSONSyntaxError) in
                if scanner.token(key, equals: "appid") {
                    appid = try readString(&scanner, "appid")
                } else if scanner.token(key, equals: "session_key") {
                    sessionKey = try readString(&scanner, "session_key")
                } else if scanner.token(key, equals: "iv") {
                    iv = try readString(&scanner, "iv")
                } else if scanner.token(key, equals: "encryptedData") {
                    encryptedData = try readString(&scanner, "encryptedData")
                } else if scanner.token(key, equals: "session_keys") {
                    guard try scanner.peek() == UInt8(ascii: "[") else {
                        if problem == nil { problem = "session_keys is not an array" }
                        try scanner.skipValue()
                        return
                    }
                    var keys: [String] = []
                    try scanner.forEachElement { scanner throws(JSONSyntaxError) in
                        if let key = try readString(&scanner, "session_keys element") { keys.append(key) }
                    }
                    sessionKeys = keys
                } else {
                    try scanner.skipValue()
                }
            }
            try scanner.finish()
        } catch {
            return .failure(DecryptFailure(.malformedJob, "line is not strict JSON: \(error)"))
        }
        if let problem { return .failure(DecryptFailure(.malformedJob, problem)) }
        guard let appid = appid ?? defaultAppid else {
            return .failure(DecryptFailure(.malformedJob, "no appid (give it in the line or with --appid)"))
        }
        guard let iv else { return .failure(DecryptFailure(.malformedJob, "no iv")) }
        guard let encryptedData else { return .failure(DecryptFailure(.malformedJob, "no encryptedData")) }
        let keys: [String]
        switch (sessionKey, sessionKeys) {
        case (let key?, nil): keys = [key]
        case (nil, let list?): keys = list
        case (nil, nil): return .failure(DecryptFailure(.malformedJob, "no session_key or session_keys"))
        case (_?, _?): return .failure(DecryptFailure(.malformedJob, "give session_key or session_keys, not both"))
        }
        return .success(DecryptRequest(appid: appid, sessionKeys: keys, iv: iv, encryptedData: encryptedData))
    }
}

extension PhoneDecryptor {
    /// Decrypts a request and renders SPEC.md's output line (without the newline).
    public func outputLine(for request: Result<DecryptRequest, DecryptFailure>) -> String {
        let result = request.flatMap { request in
            decrypt(appid: request.appid, sessionKeys: request.sessionKeys, iv: request.iv, encryptedData: request.encryptedData)
        }
        return Self.outputLine(result)
    }

    /// Renders an outcome as SPEC.md's `decrypt` output line.
    public static func outputLine(_ result: Result<PhonePayload, DecryptFailure>) -> String {
        var writer = JSONWriter()
        writer.beginObject()
        switch result {
        case .success(let payload):
            writer.field("ok", true)
            writer.field("phoneNumber", payload.phoneNumber)
            writer.field("purePhoneNumber", payload.purePhoneNumber)
            writer.field("countryCode", payload.countryCode)
            writer.field("watermarkTimestamp", payload.watermarkTimestamp)
            writer.field("keyIndex", payload.keyIndex)
            writer.field("repaired", payload.repaired)
        case .failure(let failure):
            writer.field("ok", false)
            writer.field("reason", failure.reason.rawValue)
            writer.field("detail", failure.detail)
        }
        writer.endObject()
        return writer.text
    }
}
