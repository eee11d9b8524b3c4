internal import CLibPQ

#if canImport(Glibc)
    import Glibc
#endif

/// Owns one `PGconn`; finishes it in `deinit`. Blocking: call it from a dedicated thread, never
/// from Swift's cooperative pool.
final class PQConnection {
    let pointer: OpaquePointer

    /// Connects synchronously. `PQconnectdbParams` allocates a `PGconn` even on failure; this
    /// initializer finishes it before throwing, so a failed connection never leaks.
    ///
    /// `defaults` come first and `expand_dbname` is on, so every setting in the URL (or conninfo
    /// string) overrides them: `connect_timeout` and `application_name` are defaults only.
    init(conninfo: String, defaults: [(String, String)]) throws(PostgresError) {
        let keywords = defaults.map(\.0) + ["dbname"]
        let values = defaults.map(\.1) + [conninfo]
        let connection = Self.withCStrings(keywords) { keywordPointers in
            Self.withCStrings(values) { valuePointers in
                PQconnectdbParams(keywordPointers, valuePointers, 1)
            }
        }
        guard let connection else {
            throw PostgresError(kind: .connection, message: "libpq could not allocate a connection")
        }
        guard PQstatus(connection) == CONNECTION_OK else {
            let message = String(cString: PQerrorMessage(connection)).libpqMessageAsOneLine()
            PQfinish(connection)
            throw PostgresError(kind: .connection, message: message.isEmpty ? "connection failed" : message)
        }
        CLibPQ_silenceNotices(connection)
        pointer = connection
    }

    deinit {
        PQfinish(pointer)
    }

    var isHealthy: Bool { PQstatus(pointer) == CONNECTION_OK }
    var backendPID: Int32 { PQbackendPID(pointer) }
    var errorMessage: String { String(cString: PQerrorMessage(pointer)).libpqMessageAsOneLine() }

    /// The value libpq uses for the connection setting `keyword`, if set.
    func setting(_ keyword: String) -> String? {
        // PQconninfo returns a copy that we own; it ends at an entry without a keyword.
        guard let options = PQconninfo(pointer) else { return nil }
        defer { PQconninfoFree(options) }
        var entry = options
        while let name = entry.pointee.keyword {
            if String(cString: name) == keyword { return entry.pointee.val.map { String(cString: $0) } }
            entry += 1
        }
        return nil
    }

    /// Runs `body` with a NULL-terminated array of C strings; valid only inside `body`.
    static func withCStrings<R>(_ strings: [String], _ body: ([UnsafePointer<CChar>?]) -> R) -> R {
        withParameters(strings) { body($0 + [nil]) }
    }

    /// Checks a conninfo string or URL without connecting; returns libpq's complaint, if any.
    static func conninfoProblem(_ conninfo: String) -> String? {
        var message: UnsafeMutablePointer<CChar>?
        guard let options = PQconninfoParse(conninfo, &message) else {
            defer { if let message { PQfreemem(message) } }
            return message.map { String(cString: $0).libpqMessageAsOneLine() } ?? "unparsable connection string"
        }
        PQconninfoFree(options)
        return nil
    }

    /// Runs `body` with C string pointers for `values`; the pointers are valid only inside `body`.
    static func withParameters<R>(_ values: [String?], _ body: ([UnsafePointer<CChar>?]) -> R) -> R {
        let storage: [UnsafeMutablePointer<CChar>?] = values.map { value in value.map { strdup($0)! } }
        defer { for pointer in storage { free(pointer) } }
        return body(storage.map { $0.map { UnsafePointer($0) } })
    }

    func execParams(_ sql: String, _ values: [String?]) -> PQResult? {
        Self.withParameters(values) { pointers in
            PQexecParams(pointer, sql, Int32(values.count), nil, pointers, nil, nil, 0).map(PQResult.init)
        }
    }

    func exec(_ sql: String) -> PQResult? {
        PQexec(pointer, sql).map(PQResult.init)
    }

    func prepare(_ name: String, _ sql: String, parameterCount: Int) -> PQResult? {
        PQprepare(pointer, name, sql, Int32(parameterCount), nil).map(PQResult.init)
    }

    func execPrepared(_ name: String, _ values: [String?]) -> PQResult? {
        Self.withParameters(values) { pointers in
            PQexecPrepared(pointer, name, Int32(values.count), pointers, nil, nil, 0).map(PQResult.init)
        }
    }

    /// Notifications (LISTEN/NOTIFY) that have arrived, as (channel, payload), waiting up to
    /// `timeout` seconds for the first when none is queued. `nil` when the connection broke.
    func notifications(waitingUpTo timeout: Double) -> [(channel: String, payload: String)]? {
        var found = drainNotifications()
        guard found.isEmpty, timeout > 0 else { return found }
        var descriptor = pollfd(fd: PQsocket(pointer), events: Int16(POLLIN), revents: 0)
        guard descriptor.fd >= 0 else { return nil }
        let ready = poll(&descriptor, 1, Int32(max(1, (timeout * 1000).rounded())))
        if ready < 0, errno != EINTR { return nil }
        if ready > 0 {
            guard PQconsumeInput(pointer) == 1 else { return nil }
            found = drainNotifications()
        }
        return found
    }

    private func drainNotifications() -> [(channel: String, payload: String)] {
        var found: [(channel: String, payload: String)] = []
        while let notification = PQnotifies(pointer) {
            found.append((String(cString: notification.pointee.relname), String(cString: notification.pointee.extra)))
            PQfreemem(notification)
        }
        return found
    }
}
