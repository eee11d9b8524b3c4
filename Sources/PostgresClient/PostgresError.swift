public import Retries

/// A PostgreSQL failure with a stable kind, the SQLSTATE when the server sent one, and whether
/// retrying (after reconnecting) can help.
///
/// `description` carries the server's primary message, which never contains parameter values
/// (decryptd sends every value as a parameter, and PostgreSQL does not echo parameters in errors).
public struct PostgresError: RetriableError, Sendable, CustomStringConvertible, CustomDebugStringConvertible {
    public enum Kind: String, Sendable {
        /// Could not connect, or the connection broke.
        case connection
        /// The server rejected a statement.
        case server
        /// The configuration (URL) is unusable.
        case configuration
        /// The server answered something decryptd did not expect.
        case protocolViolation = "protocol"
        /// A parameter cannot be sent (it contains a NUL character, which libpq would truncate at).
        case invalidParameter = "parameter"
    }

    public var kind: Kind
    /// Five-character SQLSTATE, when the server sent one.
    public var sqlState: String?
    public var message: String

    public init(kind: Kind, sqlState: String? = nil, message: String) {
        self.kind = kind
        self.sqlState = sqlState
        self.message = message
    }

    /// Whether retrying later can succeed: connection trouble, and the SQLSTATEs that mean
    /// "not now" (class 08 connection exception, 40001 serialization failure, 40P01 deadlock,
    /// class 53 insufficient resources such as 53300 too many connections, 57P01-57P03 shutdown
    /// and cannot-connect-now, 57014 query canceled, 55P03 lock not available, 58000/58030 I/O).
    /// Everything else (syntax, constraint, type errors) is permanent.
    public var isRetriable: Bool {
        switch kind {
        case .connection: return true
        case .configuration, .protocolViolation, .invalidParameter: return false
        case .server:
            guard let state = sqlState else { return false }
            if state.hasPrefix("08") || state.hasPrefix("53") { return true }
            return ["40001", "40P01", "57P01", "57P02", "57P03", "57014", "55P03", "58000", "58030"].contains(state)
        }
    }

    public var description: String {
        "postgres \(kind.rawValue) error\(sqlState.map { " \($0)" } ?? ""): \(message)"
    }

    /// Every field, for a developer's eyes (logs at debug level, test failures).
    public var debugDescription: String {
        "PostgresError(kind: \(kind.rawValue), sqlState: \(sqlState ?? "none"), retriable: \(isRetriable), message: \(message))"
    }
}
