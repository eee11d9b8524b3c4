import ArgumentParser
import DecryptdStore
import Dispatch
import PostgresClient

/// `decryptd-bench store`: rows per second of the PostgreSQL layer alone, as the worker uses it:
/// per batch one session lookup round trip plus one outcome transaction (members upsert).
struct StoreBenchmark: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "store",
        abstract: "Rows/s of batched session lookup + members upsert over one connection (needs a scratch database)."
    )

    @Option(name: .customLong("database-url"), help: "A scratch database; the benchmark creates and drops its own schema.")
    var databaseURL: String

    @Option(help: "Rows in all.")
    var rows = 200_000

    @Option(help: "Rows per batch.")
    var batch = 1000

    @Flag(help: "Print one JSON line instead of text.")
    var json = false

    func run() throws {
        let schema = "bench_\(UInt32.random(in: 0...UInt32.max))"
        let admin = try PostgresConnection(url: databaseURL)
        try admin.execute("CREATE SCHEMA \(schema)")
        defer { _ = try? admin.execute("DROP SCHEMA \(schema) CASCADE") }
        let separator = databaseURL.contains("?") ? "&" : "?"
        let connection = try PostgresConnection(url: databaseURL + separator + "options=-csearch_path%3D\(schema)")
        _ = try Migrator().migrate(connection)
        let database = DecryptdDatabase(connection: connection)

        let users = (0..<rows).map { UserKey(appid: "wx6ede2086ee29a89f", openid: "o\($0)") }
        for start in stride(from: 0, to: rows, by: 10_000) {
            try database.insertSessionKeys(users[start..<min(rows, start + 10_000)].map { ($0, "AAAAAAAAAAAAAAAAAAAAAA==", 1_700_000_000) })
        }
        try connection.execute("ANALYZE")

        var lookupNanoseconds: UInt64 = 0
        var writeNanoseconds: UInt64 = 0
        for start in stride(from: 0, to: rows, by: batch) {
            let slice = Array(users[start..<min(rows, start + batch)])
            let t0 = DispatchTime.now().uptimeNanoseconds
            let keys = try database.sessionKeys(for: slice, limit: 3)
            precondition(keys.count == slice.count)
            let t1 = DispatchTime.now().uptimeNanoseconds
            try database.write(OutcomeBatch(members: slice.map {
                MemberRecord(user: $0, phoneNumber: "13800138000", purePhoneNumber: "13800138000", countryCode: "86", watermarkTimestamp: 1_700_000_000)
            }))
            let t2 = DispatchTime.now().uptimeNanoseconds
            lookupNanoseconds += t1 - t0
            writeNanoseconds += t2 - t1
        }
        let seconds = Double(lookupNanoseconds + writeNanoseconds) / 1e9
        let perSecond = Int(Double(rows) / seconds)
        let lookupShare = Int(Double(lookupNanoseconds) / Double(lookupNanoseconds + writeNanoseconds) * 100)
        if json {
            print(#"{"rows_per_s":\#(perSecond),"rows":\#(rows),"batch":\#(batch),"lookup_share_percent":\#(lookupShare)}"#)
        } else {
            print("lookup + upsert, \(rows) rows in batches of \(batch): \(perSecond) rows/s (lookup \(lookupShare)% of the time)")
        }
    }
}
