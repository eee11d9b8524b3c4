import DecryptdStore
import PostgresClient
import Testing

@Suite("Migrations", .enabled(if: TestDatabase.enabled, "needs DECRYPTD_TEST_DATABASE_URL (scripts/test.sh sets it)"))
struct MigratorTests {
    @Test("from empty every migration applies; a re-run is a no-op")
    func fromEmptyAndRerun() throws {
        let connection = try TestDatabase.isolatedConnection()
        let first = try Migrator().migrate(connection)
        #expect(!first.isEmpty)
        #expect(first.allSatisfy { if case .applied = $0 { true } else { false } })
        #expect(try Migrator.appliedVersions(connection) == Migration.embedded.map(\.version))
        for table in ["wechat_sessions", "members", "decrypt_failures"] {
            #expect(try connection.query("SELECT to_regclass($1) IS NOT NULL", [table])[0][0] == "t")
        }
        let second = try Migrator().migrate(connection)
        #expect(second.count == first.count)
        #expect(second.allSatisfy { if case .alreadyApplied = $0 { true } else { false } })
    }

    @Test("a changed applied migration is refused, not re-run")
    func tampered() throws {
        let connection = try TestDatabase.isolatedConnection()
        _ = try Migrator().migrate(connection)
        var migrations = Migration.embedded
        migrations[0].sql += "\nCREATE TABLE should_not_exist (x int);\n"
        #expect(throws: Migrator.ChangedMigrationError.self) { try Migrator(migrations: migrations).migrate(connection) }
        #expect(try connection.query("SELECT to_regclass('should_not_exist') IS NULL")[0][0] == "t")
    }

    @Test("a new migration applies on top of the existing ones, in order")
    func incremental() throws {
        let connection = try TestDatabase.isolatedConnection()
        _ = try Migrator().migrate(connection)
        let extra = Migration(version: 9999, name: "9999_test.sql", sql: "CREATE TABLE extra_table (x int);")
        let outcomes = try Migrator(migrations: Migration.embedded + [extra]).migrate(connection)
        #expect(outcomes.last == .applied(extra))
        #expect(try Migrator.appliedVersions(connection).last == 9999)
    }

    @Test("pending: every migration on an empty database, the newer ones after an older binary's, none once migrated")
    func pending() throws {
        let connection = try TestDatabase.isolatedConnection()
        #expect(try Migrator().pending(connection) == Migration.embedded)
        _ = try Migrator(migrations: [Migration.embedded[0]]).migrate(connection)
        #expect(try Migrator().pending(connection) == Array(Migration.embedded.dropFirst()))
        _ = try Migrator().migrate(connection)
        #expect(try Migrator().pending(connection).isEmpty)
    }

    @Test("a broken migration rolls back whole and is not recorded")
    func brokenMigration() throws {
        let connection = try TestDatabase.isolatedConnection()
        let broken = Migration(version: 1, name: "001_broken.sql", sql: "CREATE TABLE half (x int); SELECT * FROM no_such_table;")
        #expect(throws: PostgresError.self) { try Migrator(migrations: [broken]).migrate(connection) }
        #expect(try connection.query("SELECT to_regclass('half') IS NULL")[0][0] == "t")
        #expect(try Migrator.appliedVersions(connection).isEmpty)
    }
}
