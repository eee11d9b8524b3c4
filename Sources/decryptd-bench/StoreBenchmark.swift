import ArgumentParser
import DecryptdStore
import Dispatch
import Foundation
import PostgresClient

/// `decryptd-bench store`: rows per second of the PostgreSQL layer alone, as the worker uses it:
/// per batch one session lookup round trip plus one outcome transaction (members upsert).
///
/// With one connection this is the issue's "PostgreSQL alone" figure. With one connection per
/// core it is the server's own ceiling for these statements on this machine: what the worker,
/// which runs the same statements and also consumes, decrypts and dead-letters on the same
/// cores, cannot exceed.
struct StoreBenchmark: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "store",
        abstract: "Rows/s of batched session lookup + members upsert (needs a scratch database).",
        discussion: """
            Each connection gets a schema of its own (created and dropped here), seeds its rows' \
            session keys, and then looks up and upserts them in batches; the connections run at \
            once, and rows/s is all their rows over the time from the first batch to the last one.
            """
    )

    @Option(name: .customLong("database-url"), help: "A scratch database; the benchmark creates and drops its own schemas.")
    var databaseURL: String

    @Option(help: "Rows per connection.")
    var rows = 200_000

    @Option(help: "Rows per batch.")
    var batch = 1000

    @Option(help: "Connections working at once, each on rows of its own (one per core gives the server's ceiling).")
    var connections = 1

    @Flag(help: "Print one JSON line instead of text.")
    var json = false

    func validate() throws {
        guard rows > 0, batch > 0, connections > 0 else { throw ValidationError("--rows, --batch and --connections must be positive") }
    }

    func run() throws {
        let admin = try PostgresConnection(url: databaseURL)
        var lanes: [StoreLane] = []
        defer { for lane in lanes { _ = try? admin.execute("DROP SCHEMA \(lane.schema) CASCADE") } }
        for _ in 0..<connections {
            lanes.append(try StoreLane(databaseURL: databaseURL, admin: admin, rows: rows))
        }

        let started = DispatchTime.now().uptimeNanoseconds
        let timings = try runAtOnce(lanes.map { lane in { try lane.run(batch: batch) } })
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9

        let perSecond = Int(Double(rows * connections) / seconds)
        let lookup = timings.reduce(0) { $0 + $1.lookup }
        let lookupShare = Int(Double(lookup) / Double(timings.reduce(0) { $0 + $1.lookup + $1.write }) * 100)
        if json {
            print(
                #"{"rows_per_s":\#(perSecond),"rows":\#(rows * connections),"batch":\#(batch),"connections":\#(connections),"lookup_share_percent":\#(lookupShare)}"#
            )
        } else {
            let over = connections == 1 ? "one connection" : "\(connections) connections at once"
            print(
                "lookup + upsert, \(rows * connections) rows in batches of \(batch) over \(over): \(perSecond) rows/s (lookup \(lookupShare)% of the time)"
            )
        }
    }
}

/// One connection's share of the store benchmark: its own schema, tables and users.
/// Unchecked Sendable: its connection is used by one thread at a time (set up on the caller's, then
/// run on a thread of its own).
private struct StoreLane: @unchecked Sendable {
    let schema = "bench_\(UInt32.random(in: 0...UInt32.max))"
    private let connection: PostgresConnection
    private let database: DecryptdDatabase
    private let users: [UserKey]

    /// Creates the schema, migrates it and seeds one session key per user (none of it timed).
    init(databaseURL: String, admin: PostgresConnection, rows: Int) throws {
        try admin.execute("CREATE SCHEMA \(schema)")
        let separator = databaseURL.contains("?") ? "&" : "?"
        connection = try PostgresConnection(url: databaseURL + separator + "options=-csearch_path%3D\(schema)")
        _ = try Migrator().migrate(connection)
        database = DecryptdDatabase(connection: connection)
        users = (0..<rows).map { UserKey(appid: "wx6ede2086ee29a89f", openid: "o\($0)") }
        for start in stride(from: 0, to: rows, by: 10_000) {
            try database.insertSessionKeys(users[start..<min(rows, start + 10_000)].map { ($0, "AAAAAAAAAAAAAAAAAAAAAA==", 1_700_000_000) })
        }
        try connection.execute("ANALYZE")
    }

    /// Looks up and upserts every user, `batch` at a time; nanoseconds spent in each statement.
    func run(batch: Int) throws -> (lookup: UInt64, write: UInt64) {
        var lookup: UInt64 = 0
        var write: UInt64 = 0
        for start in stride(from: 0, to: users.count, by: batch) {
            let slice = Array(users[start..<min(users.count, start + batch)])
            let t0 = DispatchTime.now().uptimeNanoseconds
            let keys = try database.sessionKeys(for: slice, limit: 3)
            precondition(keys.count == slice.count)
            let t1 = DispatchTime.now().uptimeNanoseconds
            try database.write(
                OutcomeBatch(
                    members: slice.map {
                        MemberRecord(
                            user: $0, phoneNumber: "13800138000", purePhoneNumber: "13800138000", countryCode: "86",
                            watermarkTimestamp: 1_700_000_000)
                    }))
            let t2 = DispatchTime.now().uptimeNanoseconds
            lookup += t1 - t0
            write += t2 - t1
        }
        return (lookup, write)
    }
}

/// Runs each body on a thread of its own, all at once (they block on the network, so not on
/// Dispatch's pool, which would run no more of them than there are cores), and returns their
/// results in order, or throws the first error.
private func runAtOnce<R>(_ bodies: [@Sendable () throws -> R]) throws -> [R] {
    let slots = bodies.map { _ in ResultSlot<R>() }
    let done = DispatchSemaphore(value: 0)
    for (body, slot) in zip(bodies, slots) {
        let thread = Thread {
            slot.result = Result { try body() }
            done.signal()
        }
        thread.start()
    }
    for _ in bodies { done.wait() }
    return try slots.map { try $0.result!.get() }
}

/// Where a thread leaves its result; read only after the thread has signalled.
private final class ResultSlot<R>: @unchecked Sendable {
    var result: Result<R, any Error>?
}
