/// The stable failure codes of SPEC.md. Every one is permanent: the job is dead-lettered.
///
/// The raw values are the contract (tables, dead-letter headers, metrics labels); never rename them.
public enum FailureReason: String, Sendable, CaseIterable, Codable, Hashable {
    /// The job value is not a JSON object with string `openid`, `encryptedData` and `iv`.
    case malformedJob = "malformed_job"
    /// No session key is stored for (appid, openid).
    case sessionNotFound = "session_not_found"
    /// The session key is not base64, or not 16 bytes (WeChat sample: -41001).
    case invalidSessionKey = "invalid_session_key"
    /// The iv is not base64, or not 16 bytes (-41002).
    case invalidIV = "invalid_iv"
    /// encryptedData is not base64, empty, or not a multiple of 16 bytes (-41004).
    case invalidCiphertext = "invalid_ciphertext"
    /// The PKCS#7 check failed with every key tried, usually a stale key (-41003).
    case badPadding = "bad_padding"
    /// Decrypted, but not UTF-8 JSON with string phone fields and a watermark (-41003).
    case invalidPlaintext = "invalid_plaintext"
    /// The watermark appid (or the job's appid) is not the expected one (-41003).
    case appidMismatch = "appid_mismatch"

    // MARK: Code jobs (SPEC "Code jobs")

    /// WeChat answered 40029 while the job was younger than a code's 5 minutes: a wrong or reused code.
    case codeInvalid = "code_invalid"
    /// WeChat answered 40029 for a job older than a code's 5 minutes: the pipeline was too slow.
    case codeExpired = "code_expired"
    /// The exchange answered without a usable `phone_info`.
    case invalidPhoneInfo = "invalid_phone_info"
    /// No app secret is configured for the job's appid.
    case exchangeNotConfigured = "exchange_not_configured"
    /// Any other WeChat errcode (named in the detail).
    case wechatError = "wechat_error"

    // MARK: Telling stale keys apart (SPEC)

    /// What `bad_padding` means, and WeChat's `checksession` says the newest stored key is no
    /// longer the user's current one: the login service missed a newer key.
    case staleSessionKey = "stale_session_key"

    /// Whether a job of `kind` can fail for this reason.
    public func applies(to kind: JobKind) -> Bool {
        switch self {
        case .malformedJob, .appidMismatch: true
        case .codeInvalid, .codeExpired, .invalidPhoneInfo, .exchangeNotConfigured, .wechatError: kind == .code
        default: kind == .encrypted
        }
    }

    /// The reasons only code jobs have.
    public static let codeOnly: Set<FailureReason> = [.codeInvalid, .codeExpired, .invalidPhoneInfo, .exchangeNotConfigured, .wechatError]
}

/// The two kinds of job SPEC names: the legacy `encryptedData`/`iv` and the one-time `code`.
public enum JobKind: String, Sendable, CaseIterable, Hashable {
    case encrypted
    case code
}

/// A permanent decryption failure: a stable code and a short detail for humans.
///
/// The detail never contains key material, plaintext, ciphertext or a phone number; it names sizes,
/// positions and field names only, so it is safe for logs, tables and dead-letter headers.
public struct DecryptFailure: Error, Sendable, Hashable, CustomStringConvertible {
    public var reason: FailureReason
    public var detail: String

    public init(_ reason: FailureReason, _ detail: String) {
        self.reason = reason
        self.detail = detail
    }

    public var description: String { "\(reason.rawValue): \(detail)" }
}
