import DeadLetterFormat
import DecryptdStore
import DecryptdTestSupport
import DecryptdWorker
import Foundation
import KafkaClient
import PhoneDecryption
import PostgresClient
import SyntheticLoad
import Testing

@Suite(
    "Reprocessing the dead-letter topic (end to end)", .enabled(if: IsolatedDatabase.enabled, "needs scripts/test.sh"),
    .ownThread(minutes: 10))
struct ReprocessTests {
    /// Jobs for: a user whose key was stale (bad_padding), a user with no key yet
    /// (session_not_found), and a job that can never succeed (invalid_iv).
    struct Story {
        let stale = UserKey(appid: Pipeline.appid, openid: "o-stale")
        let late = UserKey(appid: Pipeline.appid, openid: "o-late")
        let broken = UserKey(appid: Pipeline.appid, openid: "o-broken")
        let staleKey: [UInt8]
        let freshKey: [UInt8]
        let lateKey: [UInt8]

        /// Keys of its own: tests run in parallel, and none depends on particular bytes.
        init() {
            var random = SystemRandomNumberGenerator()
            staleKey = PhoneEncryptor.randomBlock(using: &random)
            freshKey = PhoneEncryptor.randomBlock(using: &random)
            lateKey = PhoneEncryptor.randomBlock(using: &random)
        }
    }

    func job(_ user: UserKey, key: [UInt8], phone: String, iv: String? = nil) -> KafkaRecord {
        var random = SystemRandomNumberGenerator()
        let encrypted = PhoneEncryptor().encrypt(
            plaintext: PhoneEncryptor.plaintext(
                phoneNumber: phone, purePhoneNumber: phone, countryCode: "86", timestamp: 1_750_000_000, appid: Pipeline.appid),
            key: key, iv: PhoneEncryptor.randomBlock(using: &random)
        )
        return Pipeline.job(
            openid: user.openid, encryptedData: encrypted.encryptedData, iv: iv ?? encrypted.iv,
            key: Array(user.openid.utf8), headers: [KafkaHeader("trace", user.openid)])
    }

    /// An invalid_iv dead letter on partition 0, as the worker writes them: it fails again when replayed.
    func deadLetter(_ s: Story, sourceOffset: Int, attempts: Int) -> KafkaRecord {
        var letter = job(s.broken, key: s.staleKey, phone: "1", iv: "AAAA")
        letter.topic = "wechat.phone.dlq"
        letter.partition = 0
        letter.headers += [
            KafkaHeader(DeadLetter.reason, "invalid_iv"), KafkaHeader(DeadLetter.detail, "iv is 3 bytes, not 16"),
            KafkaHeader(DeadLetter.sourceTopic, "wechat.phone.jobs"), KafkaHeader(DeadLetter.sourcePartition, "0"),
            KafkaHeader(DeadLetter.sourceOffset, String(sourceOffset)), KafkaHeader(DeadLetter.attempts, String(attempts)),
        ]
        return letter
    }

    func options(_ configure: (inout Reprocessor.Options) -> Void = { _ in }) -> Reprocessor.Options {
        var options = Reprocessor.Options()
        configure(&options)
        return options
    }

    @Test("after a key refresh, bad_padding and session_not_found recover; the rest is dead-lettered again with attempts + 1")
    func keyRefresh() throws {
        let pipeline = try Pipeline(partitions: 2)
        let s = Story()
        try pipeline.database.insertSessionKeys([
            (s.stale, Base64Encoding.encode(s.staleKey), 1_700_000_000), (s.broken, Base64Encoding.encode(s.staleKey), 1_700_000_000),
        ])
        let sent = try pipeline.produce([
            job(s.stale, key: s.freshKey, phone: "13800000001"),
            job(s.late, key: s.lateKey, phone: "13800000002"),
            job(s.broken, key: s.staleKey, phone: "13800000003", iv: "AAAA"),
        ])
        _ = try WorkerRun(pipeline.configuration(group: "worker")).wait()
        #expect(try pipeline.failureRows().map(\.reason).sorted() == ["bad_padding", "invalid_iv", "session_not_found"])
        #expect(try pipeline.members().isEmpty)

        // The login service refreshes keys.
        try pipeline.database.insertSessionKeys([
            (s.stale, Base64Encoding.encode(s.freshKey), 1_700_000_500), (s.late, Base64Encoding.encode(s.lateKey), 1_700_000_500),
        ])

        // A dry run counts and changes nothing.
        let configuration = pipeline.configuration(group: "worker")
        let dry = try Reprocessor(configuration: configuration, options: options { $0.dryRun = true }, logger: logger).run(partitions: 2)
        #expect(dry.total.replayed == 3 && dry.total.recovered == 2 && dry.total.failedAgain == 1)
        #expect(try pipeline.members().isEmpty)
        #expect(try pipeline.readAll("wechat.phone.dlq").count == 3)

        let summary = try Reprocessor(configuration: configuration, options: options(), logger: logger).run(partitions: 2)
        #expect(summary.byReason["bad_padding"] == Reprocessor.Counts(replayed: 1, recovered: 1, failedAgain: 0, skipped: 0))
        #expect(summary.byReason["session_not_found"] == Reprocessor.Counts(replayed: 1, recovered: 1, failedAgain: 0, skipped: 0))
        #expect(summary.byReason["invalid_iv"] == Reprocessor.Counts(replayed: 1, recovered: 0, failedAgain: 1, skipped: 0))
        let members = try pipeline.members()
        #expect(members[s.stale]?.phone == "13800000001" && members[s.late]?.phone == "13800000002" && members[s.broken] == nil)
        let resolved = try pipeline.database.connection.query(
            "SELECT reason FROM decrypt_failures WHERE resolved_at IS NOT NULL ORDER BY reason"
        ).map { $0[0]! }
        #expect(resolved == ["bad_padding", "session_not_found"])

        // The broken job is dead-lettered again: same key/value, original source, attempts 2.
        let letters = try pipeline.readAll("wechat.phone.dlq")
        #expect(letters.count == 4)
        let again = try #require(letters.first { DeadLetter.header(DeadLetter.attempts, in: $0.headers) == "2" })
        #expect(DeadLetter.header(DeadLetter.reason, in: again.headers) == "invalid_iv")
        #expect(DeadLetter.header(DeadLetter.sourceOffset, in: again.headers) == String(sent[2].offset))
        #expect(DeadLetter.header(DeadLetter.sourcePartition, in: again.headers) == String(sent[2].partition))
        #expect(DeadLetter.header(DeadLetter.sourceTopic, in: again.headers) == "wechat.phone.jobs")
        #expect(DeadLetter.header(DeadLetter.consumerGroup, in: again.headers) == "decryptd-reprocess")
        #expect(again.headers.first == KafkaHeader("trace", s.broken.openid))

        // A second run starts where the group stopped: only the new dead letter, which is at the
        // attempt limit when --max-attempts is 2, so it is skipped and counted.
        let second = try Reprocessor(configuration: configuration, options: options { $0.maxAttempts = 2 }, logger: logger).run(
            partitions: 2)
        #expect(second.total == Reprocessor.Counts(replayed: 0, recovered: 0, failedAgain: 0, skipped: 1))
        #expect(try pipeline.readAll("wechat.phone.dlq").count == 4)
    }

    @Test("--reason replays only the chosen codes; the others are passed over")
    func reasonFilter() throws {
        let pipeline = try Pipeline(partitions: 2)
        let s = Story()
        try pipeline.database.insertSessionKeys([(s.broken, Base64Encoding.encode(s.staleKey), 1_700_000_000)])
        _ = try pipeline.produce([
            job(s.late, key: s.lateKey, phone: "13800000002"), job(s.broken, key: s.staleKey, phone: "1", iv: "AAAA"),
        ])
        _ = try WorkerRun(pipeline.configuration(group: "worker")).wait()
        try pipeline.database.insertSessionKeys([(s.late, Base64Encoding.encode(s.lateKey), 1_700_000_500)])

        let summary = try Reprocessor(
            configuration: pipeline.configuration(group: "worker"), options: options { $0.reasons = ["session_not_found"] }, logger: logger
        ).run(partitions: 2)
        #expect(summary.byReason["session_not_found"] == Reprocessor.Counts(replayed: 1, recovered: 1, failedAgain: 0, skipped: 0))
        #expect(summary.byReason["invalid_iv"] == Reprocessor.Counts(replayed: 0, recovered: 0, failedAgain: 0, skipped: 1))
        #expect(try pipeline.readAll("wechat.phone.dlq").count == 2, "nothing dead-lettered again")
    }

    @Test("the reprocess command replays every partition of the dead-letter topic, as the start-up probe found them")
    func command() throws {
        let pipeline = try Pipeline(partitions: 2)
        _ = try pipeline.generate(jobs: 1500, seed: 41)
        _ = try WorkerRun(pipeline.configuration(group: "worker")).wait()
        let letters = try pipeline.readAll("wechat.phone.dlq")
        #expect(Set(letters.map(\.id.partition)) == [0, 1], "dead letters on both partitions")

        let (status, text) = try pipeline.decryptd(["reprocess", "--dry-run"])
        #expect(status == 0)
        #expect(Pipeline.reprocessTotals(in: text).first == letters.count, "\(text)")
    }

    /// SPEC's --max-attempts defaults to 5: a dead letter already tried five times is passed over
    /// (and counted), one tried four times is replayed.
    @Test("the reprocess command skips dead letters already tried --max-attempts times, 5 unless told otherwise")
    func attemptLimit() throws {
        let pipeline = try Pipeline(partitions: 1)
        let s = Story()
        _ = try pipeline.produce((4...5).map { deadLetter(s, sourceOffset: $0, attempts: $0) })

        /// Replayed, recovered, failed again, skipped.
        func total(_ arguments: [String]) throws -> [Int] {
            // A group of its own each time: the embedded broker would hold a reused one for a while.
            let (status, text) = try pipeline.decryptd(["reprocess", "--dry-run", "--group", "r-\(UUID().uuidString)"] + arguments)
            #expect(status == 0, "\(text)")
            return Pipeline.reprocessTotals(in: text)
        }
        #expect(try total([]) == [1, 0, 1, 1], "by default the fifth attempt is the last")
        #expect(try total(["--max-attempts", "4"]) == [0, 0, 0, 2])
        #expect(try total(["--max-attempts", "6"]) == [2, 0, 2, 0])
    }

    /// Stopped mid-run, reprocess finishes the batch under way, commits what it replayed and
    /// exits 0; the next run goes on from there, so no dead letter is replayed twice.
    @Test("SIGTERM mid-run: reprocess finishes its batch, commits, exits 0; the next run replays the rest, nothing twice")
    func stopMidRun() throws {
        let pipeline = try Pipeline(partitions: 1)
        let s = Story()
        let total = 3000
        _ = try pipeline.produce((0..<total).map { deadLetter(s, sourceOffset: $0, attempts: 1) })

        // Hold the failure table, so that the first batch's write waits while the signal comes.
        let holder = try PostgresConnection(url: pipeline.url)
        try holder.executeScript("BEGIN; LOCK TABLE decrypt_failures IN EXCLUSIVE MODE")
        let log = NSTemporaryDirectory() + "reprocess-stop-\(UUID().uuidString).txt"
        defer { try? FileManager.default.removeItem(atPath: log) }
        let first = try ChildProcess(
            [decryptdBinary.path, "reprocess", "--log-level", "info"], environment: pipeline.binaryEnvironment, logPath: log)
        defer { if first.exitStatus == nil { first.kill(SIGKILL) } }
        try waitUntil(timeout: 60, "the first batch's write waiting") {
            // Asked on another connection (within the holder's transaction the view would not change),
            // about this test's own table (other tests share the server).
            try pipeline.database.connection.query(
                "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'decrypt_failures'::regclass"
            ).first?.first != "0"
        }
        first.kill(SIGTERM)
        try waitUntil(timeout: 10, "the stop request") { first.output.contains("stopping: finishing the batch under way") }
        try holder.executeScript("ROLLBACK")
        #expect(try first.wait(timeout: 60) == 0, "\(first.output)")
        #expect(first.output.contains("stopped early by a signal"), "\(first.output)")
        let firstTotals = Pipeline.reprocessTotals(in: first.output)  // replayed, recovered, failed again, skipped
        let replayed = try #require(firstTotals.first)
        #expect(replayed > 0 && replayed < total && firstTotals == [replayed, 0, replayed, 0], "one batch: \(first.output)")

        // The next run replays the rest, and the first run's own dead letters (produced after its start).
        let (status, output) = try pipeline.decryptd(["reprocess"])
        #expect(status == 0 && !output.contains("stopped early"), "\(output)")
        #expect(Pipeline.reprocessTotals(in: output) == [total, 0, total, 0], "\(output)")
        let attempts = try pipeline.readAll("wechat.phone.dlq").map { DeadLetter.header(DeadLetter.attempts, in: $0.headers) ?? "" }
        #expect(attempts.filter { $0 == "2" }.count == total, "every original replayed exactly once")
        #expect(attempts.filter { $0 == "3" }.count == replayed)
    }

    @Test(
        "loadgen --store-withheld-sessions stores the keys a load left out, once; reprocess then recovers every session_not_found job and nothing else"
    )
    func withheldSessions() throws {
        let pipeline = try Pipeline(partitions: 2)
        let expected = try pipeline.generate(jobs: 1500, seed: 43)
        _ = try WorkerRun(pipeline.configuration(group: "worker")).wait()
        let notFound = try #require(expected.counts["session_not_found"])
        #expect(try pipeline.members().count == expected.usersWithPhone)

        let store = ["loadgen", "--store-withheld-sessions", "--jobs", "1500", "--seed", "43", "--faults", Pipeline.everyFaultFlag]
        let first = try pipeline.decryptd(store)
        #expect(first.status == 0 && first.text.contains("stored \(notFound) withheld session key(s)"), "\(first.text)")
        let again = try pipeline.decryptd(store)
        #expect(again.status == 0 && again.text.contains("stored 0 withheld session key(s)"), "\(again.text)")
        #expect(try pipeline.readAll("wechat.phone.jobs").count == 1500, "nothing produced")

        let summary = try Reprocessor(configuration: pipeline.configuration(group: "worker"), options: options(), logger: logger).run(
            partitions: 2)
        #expect(
            summary.byReason["session_not_found"] == Reprocessor.Counts(replayed: notFound, recovered: notFound, failedAgain: 0, skipped: 0)
        )
        #expect(summary.total.recovered == notFound)
        #expect(try pipeline.members().count == expected.usersWithPhone + notFound, "each session_not_found job is its own user")
        let unresolved = try pipeline.database.connection.query(
            "SELECT count(*) FROM decrypt_failures WHERE reason = 'session_not_found' AND resolved_at IS NULL")
        #expect(unresolved.first?.first == "0")
    }
}
