import ArgumentParser
import DecryptdWorker
import PostgresClient

/// `--database-url` (env `DATABASE_URL`), shared by every command that talks to PostgreSQL.
struct DatabaseOptions: ParsableArguments {
    @Option(
        name: .customLong("database-url"),
        help: ArgumentHelp(
            "PostgreSQL URL or conninfo; every libpq parameter is honoured (sslmode, ...). Env: DATABASE_URL.",
            valueName: "url"
        ))
    var databaseURL: String?

    /// The URL from the flag, else the environment; `nil` when neither gives one.
    var url: String? { databaseURL ?? Environment.value("DATABASE_URL") }

    /// The URL from the flag or the environment, validated by libpq without connecting.
    func connection() throws -> PostgresConnection {
        guard let url else {
            throw CommandError.usage(Preflight.noDatabase)
        }
        do {
            return try PostgresConnection(url: url)
        } catch {
            throw CommandError.usage(Preflight.databaseProblem(error))
        }
    }

    /// Connects now, so an unreachable server is reported at start-up as bad configuration.
    func connectedConnection() throws -> PostgresConnection {
        let connection = try connection()
        do {
            try connection.connect()
        } catch {
            throw CommandError.usage(Preflight.databaseProblem(error))
        }
        return connection
    }
}
