public import DecryptdStore
public import Foundation
import PostgresClient

/// Test fixtures over the throwaway PostgreSQL server scripts/test.sh starts.
public enum IsolatedDatabase {
    /// `DECRYPTD_TEST_DATABASE_URL`; `nil` outside scripts/test.sh.
    public static let baseURL = ProcessInfo.processInfo.environment["DECRYPTD_TEST_DATABASE_URL"]
    /// In CI (CI=true) suites that need the server run anyway, and fail on a missing URL.
    public static let enabled = baseURL != nil || ProcessInfo.processInfo.environment["CI"] == "true"

    public struct MissingServer: Error, CustomStringConvertible {
        public var description: String { "DECRYPTD_TEST_DATABASE_URL is not set: run scripts/test.sh" }
    }

    /// A fresh schema of its own on `base`: the URL (with search_path set) and a connection to it.
    public static func create(on base: String? = baseURL, migrated: Bool = true) throws -> (url: String, database: DecryptdDatabase) {
        guard let base else { throw MissingServer() }
        let schema = "t_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
        try PostgresConnection(url: base).execute("CREATE SCHEMA \(schema)")
        let url = base + (base.contains("?") ? "&" : "?") + "options=-csearch_path%3D\(schema)"
        let connection = try PostgresConnection(url: url)
        if migrated { _ = try Migrator().migrate(connection) }
        return (url, DecryptdDatabase(connection: connection))
    }
}

/// Polls `condition` every 20 ms until it holds, or throws after `timeout` seconds.
public func waitUntil(timeout: TimeInterval, _ what: String = "condition", _ condition: () throws -> Bool) throws {
    let deadline = Date(timeIntervalSinceNow: timeout)
    while try !condition() {
        guard Date() < deadline else { throw TimedOut(description: "\(what) not met within \(Int(timeout)) s") }
        usleep(20_000)
    }
}

public struct TimedOut: Error, CustomStringConvertible {
    public var description: String
}
