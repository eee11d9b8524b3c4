/// A job message from the input topic, as SPEC.md defines its value: an **encrypted job**
/// `{"openid": str, "encryptedData": str, "iv": str, "appid": str?, "requestId": str?}` or a
/// **code job** `{"openid": str, "code": str, "appid": str?, "requestId": str?}`.
///
/// Unknown members are validated as JSON and ignored; `null` counts as absent for the optional ones.
/// A known member that appears twice makes the job malformed (no first-wins guessing), and so does a
/// value with both `code` and `encryptedData`.
public struct DecryptJob: Sendable, Hashable {
    /// How long WeChat honours a phone code after it was issued, in seconds (SPEC: 5 minutes).
    public static let codeLifetime: Int64 = 300

    /// What the job carries to get the phone number from.
    public enum Payload: Sendable, Hashable {
        /// The legacy button's `encryptedData` and `iv`, decrypted with the user's session key.
        case encrypted(encryptedData: String, iv: String)
        /// The one-time `code` that WeChat's phone-number API exchanges.
        case code(String)
    }

    public var openid: String
    public var payload: Payload
    public var appid: String?
    public var requestId: String?

    public init(openid: String, encryptedData: String, iv: String, appid: String? = nil, requestId: String? = nil) {
        self.init(openid: openid, payload: .encrypted(encryptedData: encryptedData, iv: iv), appid: appid, requestId: requestId)
    }

    public init(openid: String, code: String, appid: String? = nil, requestId: String? = nil) {
        self.init(openid: openid, payload: .code(code), appid: appid, requestId: requestId)
    }

    public init(openid: String, payload: Payload, appid: String? = nil, requestId: String? = nil) {
        self.openid = openid
        self.payload = payload
        self.appid = appid
        self.requestId = requestId
    }

    /// The job as SPEC's JSON object, the value of a message on the jobs topic: `openid`, then
    /// `encryptedData` and `iv` or `code`, then `appid` and `requestId` when set. ``parse(_:)``
    /// reads it back as the same job.
    public var jsonValue: [UInt8] {
        var writer = JSONWriter()
        writer.beginObject()
        writer.field("openid", openid)
        switch payload {
        case .encrypted(let encryptedData, let iv):
            writer.field("encryptedData", encryptedData)
            writer.field("iv", iv)
        case .code(let code):
            writer.field("code", code)
        }
        if let appid { writer.field("appid", appid) }
        if let requestId { writer.field("requestId", requestId) }
        writer.endObject()
        return Array(writer.text.utf8)
    }

    public var kind: JobKind {
        if case .code = payload { return .code }
        return .encrypted
    }

    /// The longest `code` accepted, in UTF-8 bytes once escapes are resolved (WeChat's are a few
    /// dozen characters); a longer one is `malformed_job`, never sent to WeChat.
    public static let maximumCodeLength = 512

    /// Parses a message value; any failure is `malformed_job` with a detail that quotes no content.
    public static func parse(_ value: UnsafeBufferPointer<UInt8>) -> Result<DecryptJob, DecryptFailure> {
        locate(value).map { job in
            let payload: Payload =
                switch job.payload {
                case .encrypted(let encryptedData, let iv):
                    .encrypted(encryptedData: job.string(encryptedData, in: value), iv: job.string(iv, in: value))
                case .code(let code): .code(job.string(code, in: value))
                }
            return DecryptJob(
                openid: job.string(job.openid, in: value), payload: payload,
                appid: job.appid.map { job.string($0, in: value) }, requestId: job.requestId.map { job.string($0, in: value) }
            )
        }
    }

    /// Where a valid job's members are in its message value: ``parse(_:)`` without the copies,
    /// for a reader that keeps the value anyway (the worker decrypts straight from it).
    public struct Located: Sendable {
        public enum Payload: Sendable {
            case encrypted(encryptedData: JSONStringToken, iv: JSONStringToken)
            case code(JSONStringToken)
        }

        public var openid: JSONStringToken
        public var payload: Payload
        public var appid, requestId: JSONStringToken?

        /// A member's text (escapes resolved); `value` is the buffer that was located.
        public func string(_ token: JSONStringToken, in value: UnsafeBufferPointer<UInt8>) -> String {
            JSONScanner(value).string(token)
        }
    }

    /// Validates a message value as ``parse(_:)`` does and says where the members are.
    public static func locate(_ value: UnsafeBufferPointer<UInt8>) -> Result<Located, DecryptFailure> {
        var scanner = JSONScanner(value)
        // The walk allocates nothing: tokens go into a struct passed inout (an array of fields or
        // captured variables cost more than the walk itself).
        var found = Members()
        do throws(JSONSyntaxError) {
            guard try scanner.peek() == UInt8(ascii: "{") else {
                return .failure(DecryptFailure(.malformedJob, "job value is not a JSON object"))
            }
            try scanner.forEachMember(into: &found) { scanner, key, found throws(JSONSyntaxError) in
                guard let field = Field(key, in: scanner) else {
                    try scanner.skipValue()
                    return
                }
                if found[field] != nil, found.duplicate == nil { found.duplicate = field }
                if try scanner.peek() == UInt8(ascii: "\"") {
                    found[field] = try scanner.readString()
                } else if field.isOptional, try scanner.readNullIfPresent() {
                    // optional member given as null: absent
                } else {
                    if found.wrongType == nil { found.wrongType = field }
                    try scanner.skipValue()
                }
            }
            try scanner.finish()
        } catch {
            return .failure(DecryptFailure(.malformedJob, "job value is not strict JSON: \(error)"))
        }
        if let duplicate = found.duplicate { return .failure(DecryptFailure(.malformedJob, "job has \(duplicate.name) twice")) }
        if let wrongType = found.wrongType { return .failure(DecryptFailure(.malformedJob, "job field \(wrongType.name) is not a string")) }
        guard let openid = found.openid else { return .failure(DecryptFailure(.malformedJob, "job has no openid")) }
        let payload: Located.Payload
        if let code = found.code {
            guard found.encryptedData == nil else { return .failure(DecryptFailure(.malformedJob, "job has both code and encryptedData")) }
            guard code.end > code.start else { return .failure(DecryptFailure(.malformedJob, "job field code is empty")) }
            // The code's own length, not its escaped form's: the same code written with \u escapes
            // is the same job (found by fuzzing: a code of DEL characters passed raw, not escaped).
            let length = code.hasEscapes ? scanner.string(code).utf8.count : code.end - code.start
            guard length <= maximumCodeLength else {
                return .failure(DecryptFailure(.malformedJob, "job field code is longer than \(maximumCodeLength) bytes"))
            }
            payload = .code(code)
        } else {
            guard let encryptedData = found.encryptedData, let iv = found.iv else {
                return .failure(DecryptFailure(.malformedJob, "job has no \(found.encryptedData == nil ? "encryptedData or code" : "iv")"))
            }
            payload = .encrypted(encryptedData: encryptedData, iv: iv)
        }
        // A NUL (from a \u0000 escape: raw control characters are already refused) cannot be stored
        // in PostgreSQL text and would be truncated by C APIs, letting two different openids look
        // alike: refuse it. A code goes into a request body and a digest: the same holds.
        for field in [Field.openid, .appid, .code] {
            guard let token = found[field], scanner.token(token, containsByte: { $0 == 0 }) else { continue }
            return .failure(DecryptFailure(.malformedJob, "job field \(field.name) contains a NUL character"))
        }
        return .success(Located(openid: openid, payload: payload, appid: found.appid, requestId: found.requestId))
    }

    /// The members a job names.
    private enum Field: CaseIterable {
        case openid, encryptedData, iv, code, appid, requestId

        var name: StaticString {
            switch self {
            case .code: "code"
            case .openid: "openid"
            case .encryptedData: "encryptedData"
            case .iv: "iv"
            case .appid: "appid"
            case .requestId: "requestId"
            }
        }

        var isOptional: Bool { self == .appid || self == .requestId }

        /// The field `key` names, if any (compared after unescaping, like any JSON key).
        init?(_ key: JSONStringToken, in scanner: JSONScanner) {
            guard let field = Self.allCases.first(where: { scanner.token(key, equals: $0.name) }) else { return nil }
            self = field
        }
    }

    /// What the walk found: each known member's string token, and the first problem.
    private struct Members {
        var openid, encryptedData, iv, code, appid, requestId: JSONStringToken?
        var duplicate: Field?
        var wrongType: Field?

        subscript(field: Field) -> JSONStringToken? {
            get {
                switch field {
                case .openid: openid
                case .encryptedData: encryptedData
                case .iv: iv
                case .code: code
                case .appid: appid
                case .requestId: requestId
                }
            }
            set {
                switch field {
                case .openid: openid = newValue
                case .encryptedData: encryptedData = newValue
                case .iv: iv = newValue
                case .code: code = newValue
                case .appid: appid = newValue
                case .requestId: requestId = newValue
                }
            }
        }
    }

    /// Parses a message value given as bytes.
    public static func parse(_ value: [UInt8]) -> Result<DecryptJob, DecryptFailure> {
        value.withUnsafeBufferPointer { parse($0) }
    }
}
