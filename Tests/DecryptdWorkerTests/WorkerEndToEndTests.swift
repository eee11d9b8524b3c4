import DeadLetterFormat
import DecryptdStore
import DecryptdTestSupport
import DecryptdWorker
import Foundation
import KafkaClient
import PhoneDecryption
import Testing

@Suite(
    "Worker end to end (embedded broker + PostgreSQL)", .enabled(if: IsolatedDatabase.enabled, "needs scripts/test.sh"),
    .ownThread(minutes: 10))
struct WorkerEndToEndTests {
    @Test("every failure code, several jobs per user out of order: tables, dead letters and offsets exactly right")
    func generatedLoad() throws {
        let pipeline = try Pipeline()
        let expectation = try pipeline.generate(jobs: 3000)
        #expect(
            Set(expectation.counts.keys)
                == Set(FailureReason.allCases.filter { $0.applies(to: .encrypted) && $0 != .staleSessionKey }.map(\.rawValue) + ["ok"]),
            "the load has every code of encrypted jobs")
        #expect(expectation.usersWithPhone == expectation.members.count)

        let summary = try WorkerRun(pipeline.configuration(group: "g1")).wait()
        #expect(summary.drained)
        #expect(summary.total == 3000)
        #expect(summary.abandoned == 0)
        for (kind, count) in expectation.counts {
            #expect(summary.outcomes[kind] == count, "outcome \(kind)")
        }
        try pipeline.expectTables(expectation)
        try pipeline.expectDeadLetters(expectation, group: "g1", exactly: true)
        try pipeline.expectCommitted(group: "g1")

        // A replay of the whole topic by another group changes nothing in the tables.
        _ = try WorkerRun(pipeline.configuration(group: "g2")).wait()
        try pipeline.expectTables(expectation)
    }

    @Test("start-up: a missing jobs topic is a problem; a missing dead-letter topic is created by the brokers on demand and used")
    func missingTopics() throws {
        let pipeline = try Pipeline(partitions: 2)
        let expectation = try pipeline.generate(jobs: 300, seed: 11)
        var configuration = pipeline.configuration(group: "g-fresh")
        configuration.deadLetterTopic = "fresh.dlq"

        var misspelt = configuration
        misspelt.jobsTopic = "wechat.phone.jbos"
        let problems = Preflight.problems(misspelt, topics: [misspelt.jobsTopic], produced: [misspelt.deadLetterTopic], logger: logger)
        #expect(
            problems == ["topic wechat.phone.jbos does not exist on \(pipeline.cluster.bootstrapServers)"],
            "a topic that is read is never created")

        let findings = Preflight.check(
            configuration, topics: [configuration.jobsTopic], produced: [configuration.deadLetterTopic], logger: logger)
        #expect(findings.problems.isEmpty)
        #expect((findings.partitions["fresh.dlq"] ?? 0) > 0)
        #expect(findings.partitions["wechat.phone.jbos"] == nil)

        let summary = try WorkerRun(configuration).wait()
        #expect(summary.drained && summary.total == 300)
        let letters = try pipeline.readAll("fresh.dlq")
        #expect(letters.count == expectation.failures.count && !letters.isEmpty)
        #expect(Set(letters.compactMap { DeadLetter.header(DeadLetter.reason, in: $0.headers) }) == Set(expectation.failures.values))
        try pipeline.expectCommitted(group: "g-fresh")
    }

    @Test("a job too large for the dead-letter topic is dead-lettered without its value, and the partition goes on")
    func oversizedJob() throws {
        let pipeline = try Pipeline(partitions: 1)
        var producerConfiguration = KafkaProducer.Configuration(bootstrapServers: pipeline.cluster.bootstrapServers)
        producerConfiguration.properties = ["message.max.bytes": "4000000"]
        let producer = try KafkaProducer(configuration: producerConfiguration, logger: logger)
        producer.start()
        // Over the worker producer's 1,000,000-byte message.max.bytes once the decrypt.* headers are on.
        let value =
            Array(#"{"openid":"o-big","padding":""#.utf8) + Array(repeating: UInt8(ascii: "x"), count: 1_100_000) + Array(#""}"#.utf8)
        let big = try producer.send(
            KafkaRecord(
                topic: "wechat.phone.jobs", key: Array("o-big".utf8), value: value,
                headers: [KafkaHeader("trace", "t-big")])
        ).get()
        producer.close()
        let expectation = try pipeline.generate(jobs: 400, seed: 5)

        let summary = try WorkerRun(pipeline.configuration(group: "g-big")).wait()
        #expect(summary.drained && summary.total == 401 && summary.abandoned == 0)
        #expect(summary.outcomes["malformed_job"] == (expectation.counts["malformed_job"] ?? 0) + 1)
        try pipeline.expectCommitted(group: "g-big")
        let rows = try pipeline.failureRows()
        #expect(rows.contains { $0.id == big && $0.reason == "malformed_job" }, "the failure row is written as for any job")
        #expect(rows.count == expectation.failures.count + 1)

        let letters = try pipeline.readAll("wechat.phone.dlq")
        #expect(letters.count == expectation.failures.count + 1)
        let letter = try #require(letters.first { DeadLetter.header(DeadLetter.sourceOffset, in: $0.headers) == String(big.offset) })
        #expect(letter.value == nil, "the value is left out")
        #expect(letter.key == Array("o-big".utf8), "the key is kept")
        #expect(DeadLetter.header("trace", in: letter.headers) == "t-big", "original headers kept")
        #expect(DeadLetter.header(DeadLetter.omitted, in: letter.headers) == "value")
        #expect(DeadLetter.header(DeadLetter.reason, in: letter.headers) == "malformed_job")
        #expect(DeadLetter.header(DeadLetter.attempts, in: letter.headers) == "1")
        #expect(letters.filter { DeadLetter.header(DeadLetter.omitted, in: $0.headers) != nil }.count == 1, "only that one is cut")
    }

    @Test(
        "two workers share the partitions, one stops mid-run: nothing lost; each is ready only while it owns partitions and is not stopping"
    )
    func twoWorkers() throws {
        let pipeline = try Pipeline(partitions: 6)
        let expectation = try pipeline.generate(jobs: 6000, seed: 11)
        var first = pipeline.configuration(group: "shared", exitAtEnd: false)
        first.batchSize = 100
        let a = try WorkerRun(first)
        try waitUntil(timeout: 60, "first worker progress") { try pipeline.members().count > 200 }
        #expect(a.worker.health == (live: true, ready: true))
        let b = try WorkerRun(pipeline.configuration(group: "shared", exitAtEnd: false))
        #expect(b.worker.health == (live: true, ready: false), "/readyz: not ready before it owns partitions")
        try waitUntil(timeout: 60, "second worker joined") { !b.worker.consumerAssignment.isEmpty }
        #expect(b.worker.health.ready, "/readyz: ready once it owns partitions")
        a.worker.stop()
        #expect(a.worker.health.ready == false, "/readyz: not ready once stopping")
        let summaryA = try a.wait()
        #expect(summaryA.abandoned == 0, "a graceful stop finishes in-flight work")
        // The survivor now owns every partition; it is done when all of them are drained.
        try waitUntil(timeout: 120, "second worker drained every partition") {
            b.worker.consumerAssignment.count == 6 && b.worker.isDrained
        }
        b.worker.stop()
        _ = try b.wait()
        try pipeline.expectTables(expectation)
        try pipeline.expectDeadLetters(expectation, group: "shared", exactly: false)
        try pipeline.expectCommitted(group: "shared")
    }

    @Test("dead letters unacknowledged for a while: retried, not committed; a stop then and a restart lose nothing")
    func deadLetterOutage() throws {
        let pipeline = try Pipeline(partitions: 2)
        let expectation = try pipeline.generate(jobs: 2000, seed: 41)
        // From now on the broker refuses every produce (retriable NOT_ENOUGH_REPLICAS) until cleared.
        pipeline.cluster.pushRequestErrors(.produce, [Int32](repeating: 19, count: 100_000))
        var configuration = pipeline.configuration(group: "dlq-outage", exitAtEnd: false)
        configuration.batchSize = 100
        configuration.shutdownTimeout = 3
        configuration.kafkaProperties["message.timeout.ms"] = "1000"
        let first = try WorkerRun(configuration)
        try waitUntil(timeout: 60, "failures recorded during the outage") { try pipeline.failureRows().count >= 50 }
        // Each refused round of dead letters takes message.timeout.ms (1 s): three rounds retried.
        try waitUntil(timeout: 60, "dead letters retried through the outage") { first.worker.retries.kafka >= 3 }
        #expect(first.result == nil, "the worker keeps running while dead letters are refused")
        #expect(try pipeline.readAll("wechat.phone.dlq").isEmpty, "the outage holds: no dead letter got through")

        // Stopped while its dead letters are still unacknowledged: those batches must stay
        // uncommitted, so that the next run gets their jobs again and dead-letters them.
        let stopAt = Date()
        first.worker.stop()
        let stopped = try first.wait(timeout: 60)
        #expect(stopped.abandoned > 0, "batches waiting on their dead letters are not finished")
        // Bounded by --shutdown-timeout (3 s) and a dead-letter send in progress (1 s), not by
        // the consumer waiting on work that was given up (its 15 s revoke drain had applied).
        #expect(Date().timeIntervalSince(stopAt) < 10, "the stop took \(Date().timeIntervalSince(stopAt)) s")
        pipeline.cluster.clearRequestErrors(.produce)

        let summary = try WorkerRun(pipeline.configuration(group: "dlq-outage")).wait()
        #expect(summary.drained && summary.abandoned == 0)
        try pipeline.expectTables(expectation)
        try pipeline.expectDeadLetters(expectation, group: "dlq-outage", exactly: false)
        try pipeline.expectCommitted(group: "dlq-outage")
    }

    /// What an operator types first: SPEC's three variables and nothing else, so SPEC's default
    /// topics and group, through the binary; then the report, through the binary too.
    @Test("decryptd run --exit-at-end with only KAFKA_BROKERS, DATABASE_URL and WECHAT_APPIDS: SPEC's default topics and group")
    func binaryWithDefaults() throws {
        let pipeline = try Pipeline(partitions: 2)
        let expectation = try pipeline.generate(jobs: 600, seed: 23)
        let run = try pipeline.decryptd(["run", "--exit-at-end"])
        #expect(run.status == 0)
        #expect(run.text.contains("decryptd run: 600 jobs") && run.text.contains("all partitions drained"), "\(run.text)")

        try pipeline.expectTables(expectation)
        try pipeline.expectDeadLetters(expectation, group: "decryptd", exactly: true)
        try pipeline.expectCommitted(group: "decryptd")

        let report = try pipeline.decryptd(["report", "--format", "json"])
        #expect(report.status == 0)
        let json = try JSONSerialization.jsonObject(with: Data(report.text.utf8)) as? [String: Any]
        #expect(json?["total"] as? Int == expectation.failures.count)
    }

    /// The load an operator generates with the binary is the load the worker then finds: what
    /// `loadgen` says it produced, `run` counts, and the tables and the dead-letter topic hold.
    @Test("decryptd loadgen, then decryptd run: the worker's outcome counts are the ones loadgen printed")
    func binaryLoadgen() throws {
        let pipeline = try Pipeline(partitions: 2)
        let loadgen = try pipeline.decryptd(["loadgen", "--jobs", "900", "--faults", Pipeline.everyFaultFlag, "--seed", "5"])
        #expect(loadgen.status == 0, "\(loadgen.text)")
        let run = try pipeline.decryptd(["run", "--exit-at-end", "--log-level", "warning"])
        #expect(run.status == 0, "\(run.text)")

        let produced = Pipeline.outcomeCounts(in: loadgen.text)
        #expect(produced.keys.count == 9 && produced.values.reduce(0, +) == 900, "every code in the load: \(loadgen.text)")
        #expect(Pipeline.outcomeCounts(in: run.text) == produced, "\(run.text)")

        // "loadgen: produced 900 jobs to wechat.phone.jobs for N users with a phone number to store"
        let words = loadgen.text.split(whereSeparator: \.isWhitespace)
        let users = words.firstIndex(of: "users").flatMap { Int(words[$0 - 1]) }
        #expect(try pipeline.members().count == users, "\(loadgen.text)")
        let failed = produced.filter { $0.key != "ok" }.values.reduce(0, +)
        #expect(try pipeline.failureRows().count == failed)
        #expect(try pipeline.readAll("wechat.phone.dlq").count == failed)
        try pipeline.expectCommitted(group: "decryptd")
    }
}
