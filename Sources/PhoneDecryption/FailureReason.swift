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
