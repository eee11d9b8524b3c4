import ArgumentParser
import DecryptdStore
import PostgresClient

/// `decryptd migrate`: applies the migrations built into this binary.
struct MigrateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate",
        abstract: "Apply the database migrations built into this binary, in order, once each.",
        discussion: """
            Each migration runs in its own transaction and is recorded with a SHA-256 checksum in \
            decryptd_migrations. Re-running is a no-op. A migration that was applied and has changed since \
            is an error (exit 1), never a silent re-run. Works from any directory: the SQL is embedded.
            """
    )

    @OptionGroup var database: DatabaseOptions

    func run() throws {
        let connection = try database.connectedConnection()
        let outcomes: [Migrator.Outcome]
        do {
            outcomes = try Migrator().migrate(connection)
        } catch let error as Migrator.ChangedMigrationError {
            throw CommandError.failure(cause: error)
        } catch let error as PostgresError {
            throw CommandError.failure("migration failed", cause: error)
        }
        var applied = 0
        for outcome in outcomes {
            switch outcome {
            case .applied(let migration):
                applied += 1
                print("applied          \(migration.name)")
            case .alreadyApplied(let migration):
                print("already applied  \(migration.name)")
            }
        }
        print("database is at version \(Migration.embedded.last?.version ?? 0) (\(applied) applied now)")
    }
}
