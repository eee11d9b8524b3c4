internal import CLibPQ

#if canImport(Glibc)
    import Glibc
#endif

/// A named statement that is prepared once per connection and re-prepared after a reconnect.
public struct PreparedStatement: Sendable, Hashable {
    public var name: String
    public var sql: String
    public var parameterCount: Int

    public init(name: String, sql: String, parameterCount: Int) {
        self.name = name
        self.sql = sql
        self.parameterCount = parameterCount
    }
}

/// One PostgreSQL session over libpq, reconnecting on demand.
///
/// Every value travels as a text parameter (`$1`...), never spliced into SQL; arrays go as one
/// parameter in PostgreSQL's array text form (see ``PostgresArray``). After a connection error the
/// broken session is dropped and the next call connects again, so a caller that retries transient
/// errors recovers from server restarts and `pg_terminate_backend`.
///
/// Not `Sendable` and blocking: own it from one dedicated thread (or serial `DispatchQueue`).
public final class PostgresConnection {
    /// The URL or conninfo string as given (it may hold a password: never log it).
    public let url: String
    /// Seconds libpq waits for a connection unless the URL sets `connect_timeout`. Default: 10.
    public var connectTimeoutSeconds = 10
    /// `application_name` unless the URL sets one. Default: "decryptd".
    public var applicationName = "decryptd"

    /// TCP settings libpq uses unless the URL sets them, so that a server that goes away without
    /// closing the connection (a host that died, a network partition, a failover that moved the
    /// address) fails the call in about 30 s instead of the kernel's 15 minutes of retransmissions,
    /// and the caller retries on a new connection. Keepalive probes (after 10 s of silence, every
    /// 5 s, 3 unanswered) cover the wait for a result; `tcp_user_timeout` (30 s) covers a request
    /// the server never acknowledged. A slow statement is not affected: its server keeps answering
    /// the probes.
    static let deadServerDetection = [
        ("keepalives", "1"), ("keepalives_idle", "10"), ("keepalives_interval", "5"), ("keepalives_count", "3"),
        ("tcp_user_timeout", "30000"),
    ]

    private var session: PQConnection?
    private var preparedNames: Set<String> = []
    private var transactionDepth = 0

    /// Validates `url` (without connecting); throws a `.configuration` error if libpq cannot parse it.
    public init(url: String) throws(PostgresError) {
        if let problem = PQConnection.conninfoProblem(url) {
            throw PostgresError(kind: .configuration, message: "bad database URL: \(problem)")
        }
        self.url = url
    }

    // MARK: - Connection

    /// Connects now if not connected (otherwise the first statement does).
    public func connect() throws(PostgresError) {
        _ = try liveSession()
    }

    /// Whether a healthy session is open.
    public var isConnected: Bool { session?.isHealthy ?? false }

    /// The server process of the current session (for tests that kill it).
    public var backendPID: Int32? { session?.backendPID }

    /// The value of a libpq connection setting in the current session (for tests).
    func sessionSetting(_ keyword: String) -> String? { session?.setting(keyword) }

    /// Closes the session; the next call reconnects.
    public func disconnect() {
        session = nil
        preparedNames = []
        transactionDepth = 0
    }

    /// libpq takes C strings: a NUL would silently cut a value short (and could make two openids
    /// equal), so such a value is refused before anything is sent.
    private static func checkParameters(_ parameters: [String?]) throws(PostgresError) {
        for (index, value) in parameters.enumerated() where value.map(containsNUL) == true {
            throw PostgresError(kind: .invalidParameter, message: "parameter $\(index + 1) contains a NUL character")
        }
    }

    /// memchr over the UTF-8 bytes (array literals are large; a generic scan was measurable).
    private static func containsNUL(_ value: String) -> Bool {
        if let found = value.utf8.withContiguousStorageIfAvailable({ bytes in
            bytes.baseAddress.map { memchr($0, 0, bytes.count) != nil } ?? false
        }) {
            return found
        }
        return value.utf8.contains(0)
    }

    private func liveSession() throws(PostgresError) -> PQConnection {
        if let session, session.isHealthy { return session }
        disconnect()
        let fresh = try PQConnection(
            conninfo: url,
            defaults: [
                ("connect_timeout", String(connectTimeoutSeconds)),
                ("application_name", applicationName),
            ] + Self.deadServerDetection)
        session = fresh
        return fresh
    }

    // MARK: - Statements

    /// Runs one statement and returns its rows as text (`nil` for NULL).
    @discardableResult
    public func query(_ sql: String, _ parameters: [String?] = []) throws(PostgresError) -> [[String?]] {
        try Self.checkParameters(parameters)
        let session = try liveSession()
        return try check(session.execParams(sql, parameters), on: session).rows()
    }

    /// Runs one statement and returns the number of rows it affected.
    @discardableResult
    public func execute(_ sql: String, _ parameters: [String?] = []) throws(PostgresError) -> Int {
        try Self.checkParameters(parameters)
        let session = try liveSession()
        return try check(session.execParams(sql, parameters), on: session).affectedRows
    }

    /// Runs a script of several statements without parameters (migrations only).
    public func executeScript(_ sql: String) throws(PostgresError) {
        let session = try liveSession()
        try check(session.exec(sql), on: session)
    }

    /// Runs a prepared statement (preparing it first on this session) and returns its rows.
    @discardableResult
    public func query(_ statement: PreparedStatement, _ parameters: [String?]) throws(PostgresError) -> [[String?]] {
        try runPrepared(statement, parameters).rows()
    }

    /// Runs a prepared statement and calls `body` with each row, read in place: for large
    /// results, where copying every value into `[[String?]]` would cost more than the reading.
    public func forEachRow(
        _ statement: PreparedStatement, _ parameters: [String?], _ body: (PostgresRow) throws(PostgresError) -> Void
    ) throws(PostgresError) {
        try runPrepared(statement, parameters).forEachRow(body)
    }

    /// Runs a prepared statement and returns the number of rows it affected.
    @discardableResult
    public func execute(_ statement: PreparedStatement, _ parameters: [String?]) throws(PostgresError) -> Int {
        try runPrepared(statement, parameters).affectedRows
    }

    private func runPrepared(_ statement: PreparedStatement, _ parameters: [String?]) throws(PostgresError) -> PQResult {
        precondition(parameters.count == statement.parameterCount, "\(statement.name) takes \(statement.parameterCount) parameters")
        try Self.checkParameters(parameters)
        let session = try liveSession()
        if !preparedNames.contains(statement.name) {
            try check(session.prepare(statement.name, statement.sql, parameterCount: statement.parameterCount), on: session)
            preparedNames.insert(statement.name)
        }
        return try check(session.execPrepared(statement.name, parameters), on: session)
    }

    // MARK: - Notifications

    /// Notifications on the channels this session LISTENs to, as (channel, payload): those
    /// already received, or else the first ones to arrive within `timeout` seconds (an empty list
    /// when none did). A broken connection throws a `.connection` error, and the session is
    /// dropped: the next call connects anew, and LISTEN must be repeated on it.
    public func notifications(waitingUpTo timeout: Double) throws(PostgresError) -> [(channel: String, payload: String)] {
        let session = try liveSession()
        guard let found = session.notifications(waitingUpTo: timeout), session.isHealthy else {
            let message = session.errorMessage
            disconnect()
            throw PostgresError(kind: .connection, message: message.isEmpty ? "connection lost while listening" : message)
        }
        return found
    }

    // MARK: - Transactions

    /// Runs `body` inside BEGIN ... COMMIT; rolls back and rethrows if `body` throws.
    /// If the connection breaks, the transaction is gone: the error is transient and the caller
    /// retries the whole transaction.
    public func transaction<R>(_ body: (PostgresConnection) throws(PostgresError) -> R) throws(PostgresError) -> R {
        precondition(transactionDepth == 0, "transactions do not nest")
        try execute("BEGIN")
        transactionDepth = 1
        do {
            let result = try body(self)
            try execute("COMMIT")
            transactionDepth = 0
            return result
        } catch {
            transactionDepth = 0
            if isConnected { _ = try? execute("ROLLBACK") }
            throw error
        }
    }

    // MARK: - Errors

    /// Data exceptions (SQLSTATE class 22: invalid input syntax, malformed array literal, ...) quote
    /// the offending input, which for decryptd's statements could be phone numbers or keys: the
    /// quoted part is replaced, so the message is safe to log.
    static func redacted(_ message: String, sqlState: String?) -> String {
        guard sqlState?.hasPrefix("22") == true, let open = message.firstIndex(of: "\"") else { return message }
        return String(message[..<open]) + "\"<value redacted>\""
    }

    /// Turns a failed result into an error; drops the session when it is no longer usable.
    @discardableResult
    private func check(_ result: PQResult?, on session: PQConnection) throws(PostgresError) -> PQResult {
        guard let result else {
            let message = session.errorMessage
            disconnect()
            throw PostgresError(kind: .connection, message: message.isEmpty ? "no result (connection lost)" : message)
        }
        if result.isSuccess { return result }
        if !session.isHealthy {
            let message = session.errorMessage
            disconnect()
            throw PostgresError(kind: .connection, sqlState: result.sqlState, message: message.isEmpty ? result.primaryMessage : message)
        }
        let error = PostgresError(
            kind: .server, sqlState: result.sqlState, message: Self.redacted(result.primaryMessage, sqlState: result.sqlState))
        if let state = error.sqlState, state.hasPrefix("08") || state.hasPrefix("57P") { disconnect() }
        throw error
    }
}
