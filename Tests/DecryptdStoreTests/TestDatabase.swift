import DecryptdStore
import Foundation
import PostgresClient
import Testing

/// The throwaway server scripts/test.sh starts. Without it the suites are disabled locally; in CI
/// (CI=true) they run anyway and fail on the missing URL, so they never silently skip there.
enum TestDatabase {
    static let url = ProcessInfo.processInfo.environment["DECRYPTD_TEST_DATABASE_URL"]
    static let enabled = url != nil || ProcessInfo.processInfo.environment["CI"] == "true"

    /// A connection whose tables live in a fresh schema of their own.
    static func isolatedConnection() throws -> PostgresConnection {
        let base = try #require(url, "DECRYPTD_TEST_DATABASE_URL is not set: run scripts/test.sh")
        let schema = "t_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
        try PostgresConnection(url: base).execute("CREATE SCHEMA \(schema)")
        let separator = base.contains("?") ? "&" : "?"
        return try PostgresConnection(url: base + separator + "options=-csearch_path%3D\(schema)")
    }

    /// An isolated, migrated database.
    static func migrated() throws -> DecryptdDatabase {
        let connection = try isolatedConnection()
        _ = try Migrator().migrate(connection)
        return DecryptdDatabase(connection: connection)
    }
}
