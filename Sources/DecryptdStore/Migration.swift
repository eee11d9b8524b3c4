/// One schema migration, embedded from `migrations/NNN_name.sql` at build time.
public struct Migration: Sendable, Hashable {
    public var version: Int
    public var name: String
    public var sql: String

    public init(version: Int, name: String, sql: String) {
        self.version = version
        self.name = name
        self.sql = sql
    }

    /// Every migration built into this binary, in version order.
    public static let embedded: [Migration] = embeddedMigrations.sorted { $0.version < $1.version }
}
