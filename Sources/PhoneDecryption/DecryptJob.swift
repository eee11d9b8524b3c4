/// A job message from the input topic, as SPEC.md defines its value.
///
/// `{"openid": str, "encryptedData": str, "iv": str, "appid": str?, "requestId": str?}`;
/// unknown members are validated as JSON and ignored; `null` counts as absent for the optional ones.
/// A known member that appears twice makes the job malformed (no first-wins guessing).
public struct DecryptJob: Sendable, Hashable {
    public var openid: String
    public var encryptedData: String
    public var iv: String
    public var appid: String?
    public var requestId: String?

    public init(openid: String, encryptedData: String, iv: String, appid: String? = nil, requestId: String? = nil) {
        self.openid = openid
        self.encryptedData = encryptedData
        self.iv = iv
        self.appid = appid
        self.requestId = requestId
    }

    /// Parses a message value; any failure is `malformed_job` with a detail that quotes no content.
    public static func parse(_ value: UnsafeBufferPointer<UInt8>) -> Result<DecryptJob, DecryptFailure> {
        var fields = [String?](repeating: nil, count: 5)
        var duplicate: StaticString?
        var wrongType: StaticString?
        let names: [StaticString] = ["openid", "encryptedData", "iv", "appid", "requestId"]
        var scanner = JSONScanner(value)
        do throws(JSONSyntaxError) {
            guard try scanner.peek() == UInt8(ascii: "{") else {
                return .failure(DecryptFailure(.malformedJob, "job value is not a JSON object"))
            }
            try scanner.forEachMember { scanner, key throws(JSONSyntaxError) in
                guard let slot = names.firstIndex(where: { scanner.token(key, equals: $0) }) else {
                    try scanner.skipValue()
                    return
                }
                if fields[slot] != nil, duplicate == nil { duplicate = names[slot] }
                if try scanner.peek() == UInt8(ascii: "\"") {
                    fields[slot] = scanner.string(try scanner.readString())
                } else if slot >= 3, try scanner.readNullIfPresent() {
                    // optional member given as null: absent
                } else {
                    if wrongType == nil { wrongType = names[slot] }
                    try scanner.skipValue()
                }
            }
            try scanner.finish()
        } catch {
            return .failure(DecryptFailure(.malformedJob, "job value is not strict JSON: \(error)"))
        }
        if let duplicate { return .failure(DecryptFailure(.malformedJob, "job has \(duplicate) twice")) }
        if let wrongType { return .failure(DecryptFailure(.malformedJob, "job field \(wrongType) is not a string")) }
        for slot in 0..<3 where fields[slot] == nil {
            return .failure(DecryptFailure(.malformedJob, "job has no \(names[slot])"))
        }
        // A NUL (from a \u0000 escape) cannot be stored in PostgreSQL text and would be truncated
        // by C APIs, letting two different openids look alike: refuse it.
        for slot in [0, 3] where fields[slot]?.utf8.contains(0) == true {
            return .failure(DecryptFailure(.malformedJob, "job field \(names[slot]) contains a NUL character"))
        }
        return .success(DecryptJob(
            openid: fields[0]!, encryptedData: fields[1]!, iv: fields[2]!, appid: fields[3], requestId: fields[4]
        ))
    }

    /// Parses a message value given as bytes.
    public static func parse(_ value: [UInt8]) -> Result<DecryptJob, DecryptFailure> {
        value.withUnsafeBufferPointer { parse($0) }
    }
}
