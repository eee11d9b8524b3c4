import DecryptdStore
import DecryptdTestSupport
import DecryptdWorker
import Foundation
import KafkaClient
import PhoneDecryption
import SyntheticLoad
import Testing

/// Telling stale keys apart end to end (SPEC "Telling stale keys apart"): jobs about to fail
/// bad_padding ask dev-wechat's checksession, at once or at their parking deadline; the users whose
/// newest stored key is no longer WeChat's fail stale_session_key, the others bad_padding.
@Suite(
    "Stale session keys told apart with checksession (end to end)", .enabled(if: IsolatedDatabase.enabled, "needs scripts/test.sh"),
    .ownThread(minutes: 10))
struct StaleKeyEndToEndTests {
    /// Encrypted jobs with stale keys, plain bad padding, and the other failures a check must not touch.
    func load(_ pipeline: Pipeline, wechat: WeChatStandIn, jobs: Int, seed: UInt64) throws -> LoadGenerator.Expectation {
        var plan = LoadGenerator.Plan(jobs: jobs, appid: Pipeline.appid)
        plan.faults = [.badPadding: 0.05, .staleSessionKey: 0.05, .sessionNotFound: 0.02, .invalidIV: 0.01]
        plan.seed = seed
        let expectation = try pipeline.generate(plan)
        wechat.server.registerSessionKeys(expectation.currentKeys.map { ($0.key.appid, $0.key.openid, $0.value) })
        #expect((expectation.counts["stale_session_key"] ?? 0) > 20 && (expectation.counts["bad_padding"] ?? 0) > 20)
        return expectation
    }

    func expectDetails(_ pipeline: Pipeline, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let rows = try pipeline.database.connection.query(
            "SELECT reason, detail FROM decrypt_failures WHERE reason IN ('bad_padding', 'stale_session_key')")
        #expect(!rows.isEmpty, sourceLocation: sourceLocation)
        for row in rows {
            let expected =
                row[0] == "stale_session_key"
                ? "checksession: the newest stored key is no longer the user's (errcode 87009)"
                : "checksession: the newest stored key is current, so the payload was not made with it"
            #expect(row[1]?.contains(expected) == true, "\(row[0]!): \(row[1] ?? "")", sourceLocation: sourceLocation)
        }
    }

    @Test("at once (parking off): stale users fail stale_session_key, the rest bad_padding; tables, dead letters, offsets exact")
    func atOnce() throws {
        let wechat = try WeChatStandIn(latency: 0.005)
        let pipeline = try Pipeline()
        let expectation = try load(pipeline, wechat: wechat, jobs: 2000, seed: 61)
        let summary = try WorkerRun(pipeline.configuration(group: "stale", wechat: wechat)).wait()
        #expect(summary.drained && summary.total == 2000 && summary.abandoned == 0)
        for (kind, count) in expectation.counts {
            #expect(summary.outcomes[kind] == count, "outcome \(kind)")
        }
        try pipeline.expectTables(expectation)
        try pipeline.expectDeadLetters(expectation, group: "stale", exactly: true)
        try pipeline.expectCommitted(group: "stale")
        try expectDetails(pipeline)
        // The report shows the new reason, and who acts on it and on bad_padding.
        let report = try pipeline.decryptd(["report"])
        #expect(report.status == 0)
        let line = report.text.split(separator: "\n").first { $0.hasPrefix("stale_session_key ") }
        #expect(
            line?.split(separator: " ").dropFirst().first.map(String.init) == String(expectation.counts["stale_session_key"] ?? -1),
            "\(report.text)")
        #expect(report.text.contains("who acts:") && report.text.contains("login service: it missed the user's newest session_key"))
        #expect(report.text.contains("client: the payload was not made with the user's current key"))
        let answers = wechat.stats.checksessions
        #expect(
            (answers["87009"] ?? 0) > 0 && (answers["0"] ?? 0) > 0 && answers.keys.allSatisfy { $0 == "0" || $0 == "87009" }, "\(answers)")
        #expect(
            (answers["87009"] ?? 0) + (answers["0"] ?? 0)
                <= (expectation.counts["stale_session_key"] ?? 0) + (expectation.counts["bad_padding"] ?? 0),
            "at most one call per job (a user's answer is shared by the jobs in flight)")
    }

    @Test("at the parking deadline: the same answer, after the wait")
    func atDeadline() throws {
        let wechat = try WeChatStandIn(latency: 0.005)
        let pipeline = try Pipeline(partitions: 2)
        let expectation = try load(pipeline, wechat: wechat, jobs: 800, seed: 62)
        var configuration = pipeline.configuration(group: "stale-parked", wechat: wechat, exitAtEnd: false)
        configuration.parkTimeout = 2
        let run = try WorkerRun(configuration)
        let failures = expectation.failures.count
        try waitUntil(timeout: 120, "every failure recorded, the parked ones at their deadline") {
            (try? pipeline.failureRows().count) == failures
        }
        run.worker.stop()
        _ = try run.wait()
        try pipeline.expectTables(expectation)
        try expectDetails(pipeline)
        let waited = try pipeline.database.connection.query(
            "SELECT count(*) FROM parked_job_endings WHERE NOT healed AND reason = 'bad_padding'")
        #expect(
            Int(waited.first?[0] ?? "0") == (expectation.counts["stale_session_key"] ?? 0) + (expectation.counts["bad_padding"] ?? 0),
            "every bad_padding and stale job waited first")
        #expect((wechat.stats.checksessions["87009"] ?? 0) > 0)
    }

    @Test("parked --expire asks checksession as a deadline would, given the app secrets")
    func expireNow() throws {
        let wechat = try WeChatStandIn(latency: 0.005)
        let pipeline = try Pipeline(partitions: 2)
        let expectation = try load(pipeline, wechat: wechat, jobs: 600, seed: 63)
        var configuration = pipeline.configuration(group: "stale-expire", wechat: wechat, exitAtEnd: false)
        configuration.parkTimeout = 3600
        let run = try WorkerRun(configuration)
        let waiting =
            (expectation.counts["stale_session_key"] ?? 0) + (expectation.counts["bad_padding"] ?? 0)
            + (expectation.counts["session_not_found"] ?? 0)
        try waitUntil(timeout: 120, "the bad_padding, stale and session_not_found jobs parked") {
            (try? pipeline.database.connection.query("SELECT count(*) FROM parked_jobs").first?[0]).flatMap { $0.flatMap(Int.init) }
                == waiting
        }
        run.worker.stop()
        _ = try run.wait()
        let expired = try pipeline.decryptd(["parked", "--expire"], environment: pipeline.binaryEnvironment(wechat: wechat))
        #expect(expired.status == 0, "\(expired.text)")
        #expect(expired.text.contains("\(expectation.counts["stale_session_key"] ?? -1) stale_session_key"), "\(expired.text)")
        try pipeline.expectTables(expectation)
        try expectDetails(pipeline)
    }
}
