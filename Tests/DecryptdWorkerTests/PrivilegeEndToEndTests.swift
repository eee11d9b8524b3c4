import DecryptdStore
import DecryptdTestSupport
import Foundation
import KafkaClient
import Testing

/// Every privilege the worker uses, revoked one at a time from the role it connects as: a
/// permanent error wherever it strikes (lookup, decrypt's write, the exchange ledger's lookup,
/// write or retention sweep) stops the worker with exit 1, the error logged once with its stage,
/// and nothing committed that is not durable. Before this suite, a revoked SELECT on the ledger
/// left code jobs unfinished for good (no log line, no exit), and a revoked DELETE was a warning.
@Suite(
    "Revoked privileges: exit 1, the error named (end to end)", .enabled(if: IsolatedDatabase.enabled, "needs scripts/test.sh"),
    .ownThread(minutes: 10))
struct PrivilegeEndToEndTests {
    struct Grant: Sendable, CustomTestStringConvertible {
        var privilege: String
        var table: String
        var testDescription: String { "\(privilege) on \(table)" }
    }

    /// What `decryptd run` needs of each table (SPEC "Tables"). The members upsert reads the
    /// stored watermark, so it needs SELECT as well as INSERT and UPDATE; the ledger's retention
    /// sweep needs DELETE.
    static let grants: [Grant] = [
        .init(privilege: "SELECT", table: "wechat_sessions"),
        .init(privilege: "SELECT", table: "members"), .init(privilege: "INSERT", table: "members"),
        .init(privilege: "UPDATE", table: "members"),
        .init(privilege: "INSERT", table: "decrypt_failures"),
        .init(privilege: "SELECT", table: "phone_code_exchanges"), .init(privilege: "INSERT", table: "phone_code_exchanges"),
        .init(privilege: "DELETE", table: "phone_code_exchanges"),
        // Jobs waiting for their session key: parked in the batch's write, locked (FOR UPDATE needs
        // UPDATE) for a retry or at their deadline, removed when they end, their ending recorded.
        .init(privilege: "INSERT", table: "parked_jobs"), .init(privilege: "SELECT", table: "parked_jobs"),
        .init(privilege: "UPDATE", table: "parked_jobs"), .init(privilege: "DELETE", table: "parked_jobs"),
        .init(privilege: "SELECT", table: "parked_job_endings"), .init(privilege: "INSERT", table: "parked_job_endings"),
    ]

    @Test("revoked, with both kinds of job to do: exit 1 within a minute, the table and the stage named once", arguments: grants)
    func revoked(_ grant: Grant) throws {
        let wechat = try WeChatStandIn()
        let pipeline = try Pipeline(partitions: 2)
        let expectation = try pipeline.generate(jobs: 400, codeShare: 0.5, transientShare: 0, seed: 41)
        let role = "priv_\(UInt32.random(in: 0...UInt32.max))"
        var environment = pipeline.binaryEnvironment(wechat: wechat)
        environment["DATABASE_URL"] = try pipeline.restrictedRole(role)
        try pipeline.database.connection.execute("REVOKE \(grant.privilege) ON \(grant.table) FROM \(role)")
        let log = NSTemporaryDirectory() + "decryptd-privilege-\(role).log"
        defer { try? FileManager.default.removeItem(atPath: log) }
        // The parked tables are used only with parking on, some of them only at a job's deadline
        // (after the partitions are drained): those cases park for 2 s and run until stopped.
        let parking = grant.table.hasPrefix("parked_")
        if parking { environment["DECRYPTD_PARK_TIMEOUT"] = "2s" }
        let worker = try ChildProcess(
            [
                decryptdBinary.path, "run", "--group", "g", "--batch-size", "100", "--progress-interval", "0",
                "--kafka-property", "session.timeout.ms=6000",
            ] + (parking ? [] : ["--exit-at-end"]), environment: environment, logPath: log)
        defer { if worker.exitStatus == nil { worker.kill(SIGKILL) } }

        #expect(try worker.wait(timeout: 60) == 1, "exit 1, not a drained run or a stall")
        let output = worker.output
        #expect(output.contains("permission denied for table \(grant.table)"), "the error names the table")
        let reports = output.split(separator: "\n").filter { $0.contains("permanent error") }
        #expect(reports.count == 1, "logged once: \(reports)")
        #expect(reports.first?.contains("stage=") == true, "with its stage: \(reports)")
        #expect(!output.contains("Program crashed"))

        // Nothing committed that is not durable: every failed job below the group's committed
        // offsets has its failure row (or waits, durably, in parked_jobs).
        let uncommitted = Set(try pipeline.readAll("wechat.phone.jobs", group: "g").map(\.id))
        let parked = try pipeline.database.connection.query("SELECT source_topic, source_partition, source_offset FROM parked_jobs").map {
            KafkaMessageID(topic: $0[0]!, partition: Int32($0[1]!)!, offset: Int64($0[2]!)!)
        }
        let rows = Set(try pipeline.failureRows().map(\.id) + parked)
        let committedWithoutRow = expectation.failures.keys.filter { !uncommitted.contains($0) && !rows.contains($0) }
        #expect(committedWithoutRow.isEmpty, "committed failed jobs without their row: \(committedWithoutRow.prefix(3))")
    }
}
