/// WeChat's answers to the two server API calls decryptd makes, parsed strictly (SPEC "Code jobs").
///
/// Both are JSON objects; an `errcode` other than 0 is an error whatever else the object holds. The
/// parsers keep no text from the answer but what they return: `errmsg` is dropped (it is free text of
/// any size), and a token is only ever returned, never described.

/// What `POST /wxa/business/getuserphonenumber` answered.
public enum PhoneNumberAnswer: Sendable, Hashable {
    /// `errcode` 0 with a `phone_info` that checks out like a decrypted plaintext.
    case phone(PhonePayload)
    /// A non-zero `errcode`.
    case error(errcode: Int64)
    /// `errcode` 0 (or none) without a usable `phone_info`; the detail names the problem, never a value.
    case invalidPhoneInfo(String)
    /// A usable `phone_info` whose `watermark.appid` is not the job's appid.
    case appidMismatch
    /// Not a JSON object, or `errcode` not an integer: not an answer of WeChat's API at all (a proxy's
    /// error page, say), so transient.
    case unreadable(String)

    /// Parses an answer body for a job of `expectedAppid`.
    public static func parse(_ body: UnsafeBufferPointer<UInt8>, expectedAppid: String) -> PhoneNumberAnswer {
        var phoneInfo: Range<Int>?
        let errcode: Int64?
        switch readAnswer(
            body,
            { scanner, key, problem throws(JSONSyntaxError) in
                guard scanner.token(key, equals: "phone_info") else { return false }
                if phoneInfo != nil, problem == nil { problem = "answer has phone_info twice" }
                _ = try scanner.peek()
                let start = scanner.position
                try scanner.skipValue()
                phoneInfo = start..<scanner.position
                return true
            })
        {
        case .failure(let unreadable): return .unreadable(unreadable.detail)
        case .success(let code): errcode = code
        }
        if let errcode, errcode != 0 { return .error(errcode: errcode) }
        guard let phoneInfo else { return .invalidPhoneInfo("answer has no phone_info") }
        let info = UnsafeBufferPointer(rebasing: body[phoneInfo])
        guard info.first == UInt8(ascii: "{") else { return .invalidPhoneInfo("phone_info is not an object") }
        var appid = expectedAppid
        return appid.withUTF8 { appid in
            switch PhonePayload.parse(plaintext: info, expectedAppid: appid) {
            case .success(let fields):
                return .phone(
                    PhonePayload(
                        phoneNumber: fields.phone, purePhoneNumber: fields.pure, countryCode: fields.country,
                        watermarkTimestamp: fields.timestamp
                    ))
            case .failure(.appidMismatch): return .appidMismatch
            case .failure(.invalid(let detail)):
                return .invalidPhoneInfo("phone_info: " + detail.replacingPrefix("plaintext ", with: ""))
            }
        }
    }
}

/// What `GET /wxa/checksession` answered (SPEC "Telling stale keys apart").
public enum CheckSessionAnswer: Sendable, Hashable {
    /// errcode 0: the signature was made with the user's current key.
    case current
    /// errcode 87009: the key is no longer the user's.
    case stale
    /// Any other errcode.
    case error(errcode: Int64)
    /// Not WeChat's JSON, or no errcode at all.
    case unreadable(String)

    public static let staleErrcode: Int64 = 87009

    public static func parse(_ body: UnsafeBufferPointer<UInt8>) -> CheckSessionAnswer {
        switch readAnswer(body, { _, _, _ in false }) {
        case .failure(let unreadable): return .unreadable(unreadable.detail)
        case .success(nil): return .unreadable("answer has no errcode")
        case .success(0?): return .current
        case .success(staleErrcode?): return .stale
        case .success(let errcode?): return .error(errcode: errcode)
        }
    }
}

/// What `POST /cgi-bin/stable_token` answered.
public enum StableTokenAnswer: Sendable, Hashable {
    /// An access token and its lifetime in seconds.
    case token(String, expiresIn: Int64)
    case error(errcode: Int64)
    case unreadable(String)

    /// The longest token accepted (WeChat's are about 150 characters).
    public static let maximumTokenLength = 2048

    public static func parse(_ body: UnsafeBufferPointer<UInt8>) -> StableTokenAnswer {
        var token: JSONStringToken?
        var expiresIn: Int64?
        let errcode: Int64?
        let scanner = JSONScanner(body)
        switch readAnswer(
            body,
            { scanner, key, problem throws(JSONSyntaxError) in
                if scanner.token(key, equals: "access_token") {
                    if token != nil, problem == nil { problem = "answer has access_token twice" }
                    if try scanner.peek() == UInt8(ascii: "\"") {
                        token = try scanner.readString()
                    } else {
                        if problem == nil { problem = "access_token is not a string" }
                        try scanner.skipValue()
                    }
                } else if scanner.token(key, equals: "expires_in") {
                    if expiresIn != nil, problem == nil { problem = "answer has expires_in twice" }
                    expiresIn = try readInteger(&scanner)
                    if expiresIn == nil, problem == nil { problem = "expires_in is not an integer" }
                } else {
                    return false
                }
                return true
            })
        {
        case .failure(let unreadable): return .unreadable(unreadable.detail)
        case .success(let code): errcode = code
        }
        if let errcode, errcode != 0 { return .error(errcode: errcode) }
        guard let token else { return .unreadable("answer has no access_token") }
        guard let expiresIn, expiresIn > 0 else { return .unreadable("answer has no positive expires_in") }
        let length = token.end - token.start
        guard length > 0, length <= maximumTokenLength else { return .unreadable("access_token is empty or too long") }
        // The token goes into a URL's query (percent-encoded where it must be): printable ASCII only.
        guard !scanner.token(token, containsByte: { $0 <= 0x20 || $0 >= 0x7F }) else {
            return .unreadable("access_token has a character that is not printable ASCII")
        }
        return .token(scanner.string(token), expiresIn: expiresIn)
    }

    /// `token` as a URL query value: unreserved characters as they are, the rest percent-encoded.
    public static func queryValue(_ token: String) -> String {
        var out = ""
        for byte in token.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "~"):
                out.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                let hex = Array("0123456789ABCDEF".unicodeScalars)
                out.unicodeScalars.append("%")
                out.unicodeScalars.append(hex[Int(byte >> 4)])
                out.unicodeScalars.append(hex[Int(byte & 0xF)])
            }
        }
        return out
    }
}

/// Why an answer is not one of WeChat's.
private struct Unreadable: Error {
    var detail: String
}

/// Walks an answer object strictly: reads `errcode` and offers every other member to `member`,
/// which reads its value and returns true, or returns false to have it skipped; either may note
/// the first `problem`. Returns the errcode (nil when absent), or why the answer is unreadable.
private func readAnswer(
    _ body: UnsafeBufferPointer<UInt8>,
    _ member: (inout JSONScanner, JSONStringToken, inout String?) throws(JSONSyntaxError) -> Bool
) -> Result<Int64?, Unreadable> {
    var scanner = JSONScanner(body)
    var errcode: Int64?
    var problem: String?
    do throws(JSONSyntaxError) {
        guard try scanner.peek() == UInt8(ascii: "{") else { return .failure(Unreadable(detail: "answer is not a JSON object")) }
        try scanner.forEachMember { scanner, key throws(JSONSyntaxError) in
            if scanner.token(key, equals: "errcode") {
                if errcode != nil { problem = "answer has errcode twice" }
                errcode = try readInteger(&scanner)
                if errcode == nil, problem == nil { problem = "errcode is not an integer" }
            } else if try !member(&scanner, key, &problem) {
                try scanner.skipValue()
            }
        }
        try scanner.finish()
    } catch {
        return .failure(Unreadable(detail: "answer is not strict JSON: \(error)"))
    }
    if let problem { return .failure(Unreadable(detail: problem)) }
    return .success(errcode)
}

/// Reads an integer that fits an `Int64`, signed; `nil` (number consumed) for any other value.
private func readInteger(_ scanner: inout JSONScanner) throws(JSONSyntaxError) -> Int64? {
    let first = try scanner.peek()
    guard first == UInt8(ascii: "-") || first &- UInt8(ascii: "0") < 10 else {
        try scanner.skipValue()
        return nil
    }
    let range = try scanner.readNumber()
    let text = String(decoding: UnsafeBufferPointer(rebasing: scanner.bytes[range]), as: UTF8.self)
    return Int64(text)
}

extension String {
    fileprivate func replacingPrefix(_ prefix: String, with replacement: String) -> String {
        hasPrefix(prefix) ? replacement + dropFirst(prefix.count) : self
    }
}
