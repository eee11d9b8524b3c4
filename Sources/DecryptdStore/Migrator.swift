public import PostgresClient

/// Applies migrations in order, each once, each in its own transaction, recorded with a SHA-256
/// checksum in `decryptd_migrations`. A migration that was applied and has changed since is an
/// error, never a silent re-run. Concurrent migrators serialize on an advisory lock.
public struct Migrator {
    public enum Outcome: Sendable, Hashable {
        case applied(Migration)
        case alreadyApplied(Migration)
    }

    public struct ChangedMigrationError: Error, Sendable, CustomStringConvertible {
        public var version: Int
        public var name: String
        public var description: String {
            "migration \(name) (version \(version)) was applied with different contents; restore the original file or write a new migration"
        }
    }

    public var migrations: [Migration]

    public init(migrations: [Migration] = Migration.embedded) {
        self.migrations = migrations.sorted { $0.version < $1.version }
    }

    /// Brings the database up to date. Throws `ChangedMigrationError` or `PostgresError`.
    public func migrate(_ connection: PostgresConnection) throws -> [Outcome] {
        try connection.transaction { connection throws(PostgresError) in
            try Self.lock(connection)
            try connection.execute(
                """
                CREATE TABLE IF NOT EXISTS decryptd_migrations (
                    version    integer     PRIMARY KEY,
                    name       text        NOT NULL,
                    checksum   text        NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now()
                )
                """)
        }
        var outcomes: [Outcome] = []
        for migration in migrations {
            let outcome = try connection.transaction { connection throws(PostgresError) -> Result<Outcome, ChangedMigrationError> in
                try Self.lock(connection)
                let checksum = try connection.query(
                    "SELECT encode(sha256(convert_to($1, 'UTF8')), 'hex')", [migration.sql]
                )[0][0]!
                let recorded = try connection.query(
                    "SELECT checksum FROM decryptd_migrations WHERE version = $1", [String(migration.version)]
                )
                if let row = recorded.first {
                    guard row[0] == checksum else {
                        return .failure(ChangedMigrationError(version: migration.version, name: migration.name))
                    }
                    return .success(.alreadyApplied(migration))
                }
                try connection.executeScript(migration.sql)
                try connection.execute(
                    "INSERT INTO decryptd_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    [String(migration.version), migration.name, checksum]
                )
                return .success(.applied(migration))
            }
            outcomes.append(try outcome.get())
        }
        return outcomes
    }

    /// The migrations of ``migrations`` not recorded as applied in the database: what
    /// `decryptd migrate` would apply. A database migrated by an older binary lacks the newer ones.
    public func pending(_ connection: PostgresConnection) throws(PostgresError) -> [Migration] {
        let applied = Set(try Self.appliedVersions(connection))
        return migrations.filter { !applied.contains($0.version) }
    }

    /// Versions recorded as applied, in order (for status output and tests).
    public static func appliedVersions(_ connection: PostgresConnection) throws(PostgresError) -> [Int] {
        let exists = try connection.query("SELECT to_regclass('decryptd_migrations') IS NOT NULL")[0][0] == "t"
        guard exists else { return [] }
        return try connection.query("SELECT version FROM decryptd_migrations ORDER BY version").compactMap { $0[0].flatMap { Int($0) } }
    }

    private static func lock(_ connection: PostgresConnection) throws(PostgresError) {
        try connection.query("SELECT pg_advisory_xact_lock(hashtext('decryptd_migrations'))")
    }
}
