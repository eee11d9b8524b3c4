import PostgresClient

extension DecryptdDatabase {
    /// The one wording of a database that cannot be used, for every command that needs one: a bad
    /// URL as libpq words it, anything else (refused, timed out, authentication) as unreachable.
    public static func problem(_ error: any Error) -> String {
        guard let error = error as? PostgresError else { return "cannot reach the database: \(error)" }
        return error.kind == .configuration ? error.message : "cannot reach the database: \(error.message)"
    }

    /// What keeps the database at `url` from serving this binary, as one line for the user, if
    /// anything: unreachable within `timeoutSeconds` (unless the URL sets `connect_timeout`), a role
    /// that cannot read the migrations, or migrations of this binary's not applied
    /// (``Migrator/pending(_:)``).
    public static func startupProblem(url: String, timeoutSeconds: Int) -> String? {
        do {
            let connection = try PostgresConnection(url: url)
            // libpq counts whole seconds, and takes anything under 2 as 2.
            connection.connectTimeoutSeconds = max(2, timeoutSeconds)
            try connection.connect()
            return notMigrated(try Migrator().pending(connection))
        } catch {
            if error.sqlState == "42501" {
                return "the database role cannot read decryptd_migrations (\(error.message)): grant it SELECT on the table"
            }
            return problem(error)
        }
    }

    /// The one wording of a database that lacks `pending` migrations, or nil when none is pending.
    static func notMigrated(_ pending: [Migration]) -> String? {
        guard !pending.isEmpty else { return nil }
        let names = pending.map(\.name).joined(separator: ", ")
        return "database is not migrated: \(pending.count) migration(s) of this binary not applied (\(names)): run decryptd migrate"
    }
}
