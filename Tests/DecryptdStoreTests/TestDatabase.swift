import DecryptdStore
import DecryptdTestSupport
import PostgresClient
import Testing

/// The store tests' fixtures: the shared isolated-schema helper.
enum TestDatabase {
    static let enabled = IsolatedDatabase.enabled

    static func isolatedConnection() throws -> PostgresConnection {
        try IsolatedDatabase.create(migrated: false).database.connection
    }

    static func migrated() throws -> DecryptdDatabase {
        try IsolatedDatabase.create().database
    }
}
