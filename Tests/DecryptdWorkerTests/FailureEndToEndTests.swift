import DecryptdStore
import DecryptdTestSupport
import DecryptdWorker
import Foundation
import SyntheticLoad
import Testing

/// `decryptd run` as a child process, its output in a file (a pipe could fill and block it).
func launchWorker(_ pipeline: Pipeline, group: String, extra: [String] = [], logPath: String? = nil) throws -> ChildProcess {
    var environment = pipeline.binaryEnvironment
    environment["DECRYPTD_LOG_LEVEL"] = "warning"
    let arguments =
        [
            decryptdBinary.path, "run", "--group", group, "--batch-size", "100", "--progress-interval", "0",
            "--kafka-property", "session.timeout.ms=6000", "--kafka-property", "heartbeat.interval.ms=300",
        ] + extra
    return try ChildProcess(arguments, environment: environment, logPath: logPath ?? NSTemporaryDirectory() + "decryptd-child-\(group).log")
}

@Suite("Worker under failure (end to end)", .enabled(if: IsolatedDatabase.enabled, "needs scripts/test.sh"), .ownThread(minutes: 10))
struct FailureEndToEndTests {
    @Test("kill -9 mid-run, restart: nothing lost, nothing duplicated in the tables")
    func crash() throws {
        let pipeline = try Pipeline(partitions: 4)
        let expectation = try pipeline.generate(jobs: 8000, seed: 21)
        let first = try launchWorker(pipeline, group: "crash")
        try waitUntil(timeout: 90, "the worker made progress") { try pipeline.members().count >= 300 }
        first.kill(SIGKILL)
        #expect(try first.wait(timeout: 30) == 128 + SIGKILL)
        #expect(try pipeline.members().count < expectation.members.count, "it was killed mid-run")
        try restartToTheEnd(pipeline, expectation, group: "crash", deadLettersOnce: false)
    }

    /// Ctrl-C on a worker in a terminal: the same graceful stop as SIGTERM. What it had fetched
    /// is finished and committed, so the restart neither loses a job nor dead-letters one twice.
    @Test("SIGINT mid-run: exit 0 with finished work committed; the restart completes it, every dead letter once")
    func interrupt() throws {
        let pipeline = try Pipeline(partitions: 4)
        let expectation = try pipeline.generate(jobs: 8000, seed: 27)
        // A small in-flight limit, so that the stop comes while most of the topic is still unread.
        let first = try launchWorker(pipeline, group: "interrupt", extra: ["--max-in-flight", "400"])
        try waitUntil(timeout: 90, "the worker made progress") { try pipeline.members().count >= 300 }
        first.kill(SIGINT)
        #expect(try first.wait(timeout: 60) == 0)
        #expect(try pipeline.members().count < expectation.members.count, "it was stopped mid-run")
        try restartToTheEnd(pipeline, expectation, group: "interrupt", deadLettersOnce: true)
    }

    /// Runs the worker again in the group until the topic is drained, and checks that the tables,
    /// the dead letters and the group's offsets then hold the whole load.
    func restartToTheEnd(_ pipeline: Pipeline, _ expectation: LoadGenerator.Expectation, group: String, deadLettersOnce: Bool) throws {
        let second = try launchWorker(pipeline, group: group, extra: ["--exit-at-end"])
        #expect(try second.wait(timeout: 180) == 0)
        try pipeline.expectTables(expectation)
        try pipeline.expectDeadLetters(expectation, group: group, exactly: deadLettersOnce)
        try pipeline.expectCommitted(group: group)
    }
}

/// Outages of the one PostgreSQL server these tests stop and start: one test at a time.
@Suite(
    "Worker through PostgreSQL outages (end to end)", .serialized, .enabled(if: IsolatedDatabase.enabled, "needs scripts/test.sh"),
    .ownThread(minutes: 10))
struct OutageEndToEndTests {
    static let outageURL = ProcessInfo.processInfo.environment["DECRYPTD_TEST_OUTAGE_DATABASE_URL"]
    static let outageControl = ProcessInfo.processInfo.environment["DECRYPTD_TEST_OUTAGE_PG_CONTROL"]

    func control(_ action: String) throws {
        let control = try #require(Self.outageControl, "DECRYPTD_TEST_OUTAGE_PG_CONTROL is not set: run scripts/test.sh")
        #expect(try ChildProcess.run(["/bin/sh", "-c", "\(control) \(action)"]) == 0, "pg-control \(action)")
    }

    @Test(
        "PostgreSQL stopped and restarted mid-run: nothing dead-lettered because of it, everything processed after",
        .enabled(if: outageURL != nil || ProcessInfo.processInfo.environment["CI"] == "true"))
    func databaseOutage() throws {
        let url = try #require(Self.outageURL, "DECRYPTD_TEST_OUTAGE_DATABASE_URL is not set: run scripts/test.sh")
        let pipeline = try Pipeline(partitions: 4, databaseURL: url)
        // Enough that the worker is still at work when the server stops: with 6,000 jobs, a loaded
        // CI host once saw the worker finish between the 200th member and the stop, so that
        // nothing was left to retry.
        let expectation = try pipeline.generate(jobs: 24000, seed: 31)
        var configuration = pipeline.configuration(group: "outage")
        configuration.batchSize = 100
        let run = try WorkerRun(configuration)
        try waitUntil(timeout: 90, "the worker made progress") { try pipeline.members().count >= 200 }

        try control("stop")
        let before = run.worker.retries.postgres
        // The outage lasts until every stage has met it and retried a few times with backoff.
        try waitUntil(timeout: 120, "PostgreSQL work retried through the outage") { run.worker.retries.postgres >= before + 10 }
        #expect(run.result == nil, "the worker keeps running through the outage")
        try control("start")
        pipeline.database.connection.disconnect()

        let summary = try run.wait(timeout: 180)
        #expect(summary.abandoned == 0)
        #expect(summary.total >= 24000)
        try pipeline.expectTables(expectation)
        try pipeline.expectDeadLetters(expectation, group: "outage", exactly: true)
        try pipeline.expectCommitted(group: "outage")
    }

    @Test(
        "a PostgreSQL outage while jobs wait for their keys: the listener reconnects, and keys stored afterwards still heal them",
        .enabled(if: outageURL != nil || ProcessInfo.processInfo.environment["CI"] == "true"))
    func outageWhileParked() throws {
        let url = try #require(Self.outageURL, "DECRYPTD_TEST_OUTAGE_DATABASE_URL is not set: run scripts/test.sh")
        let pipeline = try Pipeline(partitions: 2, databaseURL: url)
        let waiting = ParkingEndToEndTests.jobs(30, prefix: "late", seed: 21)
        _ = try pipeline.produce(waiting.map(\.record))
        let run = try WorkerRun(pipeline.configuration(group: "parked-outage", exitAtEnd: false, parkTimeout: 600))
        defer { run.worker.stop() }
        try waitUntil(timeout: 60, "30 jobs parked") { try ParkingEndToEndTests.count("parked_jobs", pipeline) == 30 }
        try control("stop")
        let before = run.worker.retries.postgres
        try waitUntil(timeout: 120, "the parked-jobs stage retried through the outage") { run.worker.retries.postgres >= before + 5 }
        #expect(run.result == nil, "the worker keeps running through the outage")
        try control("start")
        pipeline.database.connection.disconnect()
        try ParkingEndToEndTests.store(Array(waiting.prefix(15)), in: pipeline.database)
        try waitUntil(timeout: 90, "15 jobs healed") { try pipeline.members().count == 15 }
        #expect(try ParkingEndToEndTests.count("parked_jobs", pipeline) == 15)
        run.worker.stop()
        #expect(try run.wait(timeout: 60).abandoned == 0)
        #expect(try pipeline.failureRows().isEmpty)
        let members = try pipeline.members()
        for job in waiting.prefix(15) { #expect(members[job.user]?.phone == job.phone) }
        try pipeline.expectCommitted(group: "parked-outage")
    }
}
