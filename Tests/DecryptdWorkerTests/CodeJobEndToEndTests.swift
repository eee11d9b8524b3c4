import DecryptdStore
import DecryptdTestSupport
import DecryptdWorker
import Foundation
import KafkaClient
import PhoneDecryption
import SyntheticLoad
import Testing

@Suite(
    "Code jobs end to end (dev-wechat + embedded broker + PostgreSQL)", .enabled(if: IsolatedDatabase.enabled, "needs scripts/test.sh"),
    .ownThread(minutes: 10))
struct CodeJobEndToEndTests {
    @Test(
        "a mixed load with every reason and transient answers: tables, dead letters, ledger and offsets exactly right; no code exchanged twice"
    )
    func mixedLoad() throws {
        let wechat = try WeChatStandIn()
        let pipeline = try Pipeline()
        let expectation = try pipeline.generate(jobs: 3000, codeShare: 0.5, wechat: wechat)
        #expect(Set(expectation.counts.keys) == Set(FailureReason.allCases.map(\.rawValue) + ["ok"]), "the load has every code")
        #expect((expectation.kinds[.code] ?? 0) > 1000 && (expectation.kinds[.encrypted] ?? 0) > 1000)

        let summary = try WorkerRun(pipeline.configuration(group: "c1", wechat: wechat)).wait()
        #expect(summary.drained && summary.total == 3000 && summary.abandoned == 0)
        for (kind, count) in expectation.counts {
            #expect(summary.outcomes[kind] == count, "outcome \(kind)")
        }
        try pipeline.expectTables(expectation)
        try pipeline.expectDeadLetters(expectation, group: "c1", exactly: true)
        try pipeline.expectCommitted(group: "c1")

        let stats = wechat.stats
        #expect(stats.codesReused == 0, "no code exchanged twice")
        #expect(
            (stats.exchangesAnswered["-1"] ?? 0) > 0 && (stats.exchangesAnswered["45011"] ?? 0) > 0
                && (stats.exchangesAnswered["reset"] ?? 0) > 0,
            "transient answers were met (and retried: the counts above are exact)")
        // The ledger holds every code WeChat answered for, by digest only.
        let ledger = try pipeline.ledger()
        #expect(ledger.rows == stats.codesSpent + (expectation.counts["code_invalid"] ?? 0) + (expectation.counts["code_expired"] ?? 0))
        try expectNoSecrets(pipeline, ledger: ledger.text)

        // Failure rows name their job kind; the code reasons only ever code jobs.
        let kinds = try pipeline.database.connection.query("SELECT reason, job_kind, count(*) FROM decrypt_failures GROUP BY 1, 2")
        for row in kinds where FailureReason(rawValue: row[0]!)?.applies(to: .encrypted) == false {
            #expect(row[1] == "code", "\(row[0]!) is a code job's reason")
        }
        #expect(
            kinds.contains { $0[0] == "appid_mismatch" && $0[1] == "code" }
                && kinds.contains { $0[0] == "appid_mismatch" && $0[1] == "encrypted" })

        // A replay by another group exchanges nothing: every code is found in the ledger.
        let exchangesBefore = wechat.stats.exchanges
        let replay = try WorkerRun(pipeline.configuration(group: "c2", wechat: wechat)).wait()
        #expect(replay.total == 3000)
        #expect(wechat.stats.exchanges == exchangesBefore, "redelivered code jobs are complete without calling WeChat")
        try pipeline.expectTables(expectation)
        // ... and a failed code job found there is dead-lettered again (its first dead letter may
        // not have been acknowledged when the worker died).
        #expect(try pipeline.readAll("wechat.phone.dlq").count == 2 * expectation.failures.count)
    }

    @Test("tokens invalidated mid-run are renewed once per appid; two workers in one group share one token")
    func tokens() throws {
        let wechat = try WeChatStandIn(latency: 0.03)
        let pipeline = try Pipeline(partitions: 4)
        let expectation = try pipeline.generate(jobs: 2500, codeShare: 1, transientShare: 0, seed: 5)
        // Answers with a phone_info: the ok codes and those watermarked for another appid.
        let okCodes = (expectation.counts["ok"] ?? 0) + (expectation.counts["appid_mismatch"] ?? 0)
        // Both run until stopped: with --exit-at-end the first to drain its partitions would leave
        // the group, and the second could stop before it was given them.
        let one = try WorkerRun(pipeline.configuration(group: "t", wechat: wechat, exitAtEnd: false))
        let two = try WorkerRun(pipeline.configuration(group: "t", wechat: wechat, exitAtEnd: false))
        try waitUntil(timeout: 60, "exchanges under way") { wechat.stats.exchanges > 400 }
        #expect(wechat.server.invalidateTokens() == 1, "one token for the appid, shared by both workers")
        // Durable tables are not enough: a job finished by the member that lost its partition in a
        // rebalance is redelivered to the new owner, which must still take and commit it.
        try waitUntil(timeout: 120, "every job durable and every partition drained by its owner") {
            try pipeline.members().count == expectation.members.count && pipeline.failureRows().count == expectation.failures.count
                && one.worker.isDrained && two.worker.isDrained
                && Set(one.worker.consumerAssignment + two.worker.consumerAssignment).count == 4
        }
        // One after the other: the first one's leaving rebalances the group, and a commit made
        // during a rebalance may be refused (its jobs are then redelivered, which at least once
        // allows but this test's last check would not).
        one.worker.stop()
        let first = try one.wait()
        try waitUntil(timeout: 60, "the second worker owns every partition") { Set(two.worker.consumerAssignment).count == 4 }
        two.worker.stop()
        let summaries = [first, try two.wait()]
        #expect(summaries.allSatisfy { $0.total > 0 }, "both workers exchanged codes")
        #expect(summaries.map(\.total).reduce(0, +) >= 2500)
        try pipeline.expectTables(expectation)
        try pipeline.expectCommitted(group: "t")
        let stats = wechat.stats
        #expect(stats.tokensIssued[Pipeline.appid] == 2, "the first token, and one renewal after the invalidation")
        #expect((stats.tokenFetches[Pipeline.appid] ?? 0) <= 4, "at most one fetch per worker per token")
        #expect(stats.codesReused == 0)
        #expect(stats.exchangesAnswered["ok"] ?? 0 == okCodes)
    }

    /// Exchanged jobs hold their exchange slot until they are durable; a permanent error means they
    /// never are. The worker used to stop cleanly and then crash releasing the exchange stage
    /// (a DispatchSemaphore deallocated below its initial value: exit 132), found by chaos.sh.
    @Test("a permanent database error while exchanged jobs hold their slots: exit 1, nothing committed; a restart completes")
    func permanentErrorWithExchangesHeld() throws {
        let wechat = try WeChatStandIn(latency: 0.02)
        let pipeline = try Pipeline(partitions: 2)
        let expectation = try pipeline.generate(jobs: 2000, codeShare: 1, transientShare: 0, seed: 17)
        let environment = pipeline.binaryEnvironment(wechat: wechat)
        let arguments = [
            decryptdBinary.path, "run", "--group", "permanent", "--exchange-concurrency", "8", "--progress-interval", "0",
            "--kafka-property", "session.timeout.ms=6000",
        ]
        let log = NSTemporaryDirectory() + "decryptd-code-permanent-\(UUID().uuidString).log"
        defer { try? FileManager.default.removeItem(atPath: log) }
        let first = try ChildProcess(arguments, environment: environment, logPath: log)
        defer { if first.exitStatus == nil { first.kill(SIGKILL) } }
        try waitUntil(timeout: 90, "exchanges under way") { wechat.stats.exchanges > 200 }
        // Every new or changed member row now breaks a constraint: SQLSTATE 23514, permanent.
        try pipeline.database.connection.execute("ALTER TABLE members ADD CONSTRAINT refuse_all CHECK (false) NOT VALID")
        #expect(try first.wait(timeout: 120) == 1)
        #expect(first.output.contains("permanent error"))
        #expect(!first.output.contains("Program crashed"), "no crash on the way out")
        #expect(try pipeline.members().count < expectation.members.count, "stopped mid-run")

        try pipeline.database.connection.execute("ALTER TABLE members DROP CONSTRAINT refuse_all")
        let second = try ChildProcess(arguments + ["--exit-at-end"], environment: environment, logPath: log + ".2")
        defer { try? FileManager.default.removeItem(atPath: log + ".2") }
        #expect(try second.wait(timeout: 180) == 0)
        // Jobs whose exchange had answered when the worker stopped are spent codes now (SPEC:
        // code_invalid on redelivery); at most the 8 in flight and those waiting to be durable.
        let failures = Dictionary(try pipeline.failureRows().map { ($0.id, $0.reason) }, uniquingKeysWith: { a, _ in a })
        #expect(expectation.failures.keys.allSatisfy { failures[$0] != nil }, "every failed job has its row")
        let spent = failures.filter { expectation.failures[$0.key] == nil }
        #expect(spent.values.allSatisfy { $0 == "code_invalid" })
        #expect(try pipeline.members().count + spent.count >= expectation.members.count, "every other job is a member")
        try pipeline.expectCommitted(group: "permanent")
    }

    @Test("kill -9 mid-run, restart: every job a member or a failure, and only the exchanges in flight lost to the crash gap")
    func crash() throws {
        let wechat = try WeChatStandIn(latency: 0.05)
        let pipeline = try Pipeline(partitions: 4)
        let expectation = try pipeline.generate(jobs: 3000, codeShare: 0.7, transientShare: 0.05, seed: 9)
        let concurrency = 16
        // A ledger row from last week: the worker deletes it (--exchange-ledger-retention, 7 days).
        _ = try pipeline.database.connection.query(
            """
            INSERT INTO phone_code_exchanges (code_sha256, appid, openid, outcome, exchanged_at)
            VALUES (decode(repeat('ab', 32), 'hex'), 'wx', 'o-old', 'ok', now() - interval '8 days')
            """)
        var environment = pipeline.binaryEnvironment(wechat: wechat)
        environment["WECHAT_APPIDS"] = "\(Pipeline.appid), \(Pipeline.unconfiguredAppid)"  // a space after the comma is allowed
        environment["DECRYPTD_LOG_LEVEL"] = "debug"
        let arguments = [
            decryptdBinary.path, "run", "--group", "crash", "--batch-size", "100", "--progress-interval", "1",
            "--exchange-concurrency", String(concurrency), "--kafka-property", "session.timeout.ms=6000",
        ]
        let logs = [1, 2].map { NSTemporaryDirectory() + "decryptd-code-crash-\($0)-\(UUID().uuidString).log" }
        defer { for log in logs { try? FileManager.default.removeItem(atPath: log) } }
        let first = try ChildProcess(arguments, environment: environment, logPath: logs[0])
        try waitUntil(timeout: 90, "exchanges under way") { wechat.stats.exchanges > 500 }
        first.kill(SIGKILL)
        #expect(try first.wait(timeout: 30) == 128 + SIGKILL)
        let second = try ChildProcess(arguments + ["--exit-at-end"], environment: environment, logPath: logs[1])
        #expect(try second.wait(timeout: 180) == 0)

        // Every job is a member or a failure row; the only difference the crash may make is a code
        // spent by an exchange whose answer died with the process: its redelivery fails code_invalid.
        let members = try pipeline.members()
        let failures = Dictionary(try pipeline.failureRows().map { ($0.id, $0.reason) }, uniquingKeysWith: { a, _ in a })
        var lostToTheGap = 0
        for (user, expected) in expectation.members where members[user]?.phone != expected.phone {
            lostToTheGap += 1
            #expect(user.openid.contains("c"), "only code jobs can be lost to the gap: \(user.openid)")
        }
        for (id, reason) in expectation.failures where failures[id] != reason {
            lostToTheGap += 1
            #expect(failures[id] == "code_invalid", "failure \(id): \(reason) or, lost to the gap, code_invalid")
        }
        #expect(
            failures.count == expectation.failures.count + expectation.members.filter { members[$0.key]?.phone != $0.value.phone }.count,
            "one failure row per failed job, and one per ok job lost to the gap")
        #expect(lostToTheGap <= concurrency, "at most the exchanges in flight")
        #expect(wechat.stats.codesReused == lostToTheGap, "no code exchanged twice but those")
        try pipeline.expectCommitted(group: "crash")

        #expect(try pipeline.database.connection.query("SELECT count(*) FROM phone_code_exchanges WHERE openid = 'o-old'")[0][0] == "0")

        // What the worker logged, at debug, holds no secret, token, code or number; the appid
        // without a secret is named once per start.
        let texts = try logs.map { try String(contentsOfFile: $0, encoding: .utf8) }
        for text in texts {
            #expect(text.components(separatedBy: "no app secret for these appids").count == 2, "logged once at start")
        }
        let printed = texts.joined(separator: "\n")
        #expect(printed.contains("progress"))
        try expectNoSecrets(pipeline, ledger: printed, extra: ["devtoken", WeChatStandIn.secret])
    }

    @Test(
        "/metrics: exchanges by outcome, their latency, tokens fetched, errcodes, exchanges in flight and the oldest unfinished job's age")
    func metrics() throws {
        let wechat = try WeChatStandIn(latency: 0.1)
        let pipeline = try Pipeline(partitions: 2)
        let expectation = try pipeline.generate(jobs: 1500, codeShare: 1, transientShare: 0.05, seed: 13)
        let port = try HTTPProbe.freePort()
        let environment = pipeline.binaryEnvironment(wechat: wechat)
        let worker = try ChildProcess(
            [
                decryptdBinary.path, "run", "--group", "metrics", "--metrics-port", "\(port)", "--progress-interval", "1",
                "--exchange-concurrency", "8",
            ], environment: environment, logPath: NSTemporaryDirectory() + "decryptd-code-metrics-\(UUID().uuidString).log")
        defer { if worker.exitStatus == nil { worker.kill(SIGKILL) } }
        var samples = PrometheusSamples("")
        var oldestSeen = 0.0
        var inFlightSeen = 0.0
        try waitUntil(timeout: 120, "every job counted in /metrics") {
            guard let response = try? HTTPProbe.get(port: port, "/metrics"), response.status == 200 else { return false }
            samples = PrometheusSamples(response.body)
            oldestSeen = max(oldestSeen, samples.all("decryptd_oldest_unfinished_job_age_seconds").values.max() ?? 0)
            inFlightSeen = max(inFlightSeen, samples["decryptd_exchanges_in_flight"] ?? 0)
            return samples.all("decryptd_jobs_total").values.reduce(0, +) >= Double(expectation.jobs)
        }
        #expect(oldestSeen >= 1, "8 exchanges of 0.1 s at a time leave jobs waiting for seconds")
        #expect(inFlightSeen > 0 && inFlightSeen <= 8)
        #expect(samples["decryptd_exchanges_total", ["outcome": "ok"]] == Double((expectation.counts["ok"] ?? 0)))
        #expect(samples["decryptd_exchanges_total", ["outcome": "code_expired"]] == Double(expectation.counts["code_expired"] ?? 0))
        #expect(
            (samples["decryptd_exchanges_total", ["outcome": "busy"]] ?? 0) > 0
                && (samples["decryptd_exchanges_total", ["outcome": "no_answer"]] ?? 0) > 0)
        #expect((samples["decryptd_exchange_duration_seconds_count"] ?? 0) >= Double(expectation.counts["ok"] ?? 0))
        #expect((samples["decryptd_token_fetches_total", ["appid": Pipeline.appid, "result": "ok"]] ?? 0) >= 1)
        #expect((samples["decryptd_wechat_errcodes_total", ["errcode": "40029"]] ?? 0) > 0)
        #expect((samples["decryptd_wechat_errcodes_total", ["errcode": "45011"]] ?? 0) > 0)
        try waitUntil(timeout: 30, "nothing unfinished") {
            guard let text = try? HTTPProbe.get(port: port, "/metrics").body else { return false }
            samples = PrometheusSamples(text)
            return samples.all("decryptd_oldest_unfinished_job_age_seconds").values.allSatisfy { $0 == 0 }
                && samples["decryptd_exchanges_in_flight"] == 0
        }
        let text = try HTTPProbe.get(port: port, "/metrics").body
        try expectNoSecrets(pipeline, ledger: text, extra: ["devtoken", WeChatStandIn.secret])
        worker.kill(SIGTERM)
        #expect(try worker.wait(timeout: 60) == 0)
    }

    @Test("reprocess passes code jobs over, counted as skipped, and replays the encrypted ones")
    func reprocess() throws {
        let wechat = try WeChatStandIn()
        let pipeline = try Pipeline(partitions: 2)
        let expectation = try pipeline.generate(jobs: 600, codeShare: 0.5, transientShare: 0, seed: 17)
        _ = try WorkerRun(pipeline.configuration(group: "r", wechat: wechat)).wait()
        let exchanges = wechat.stats.exchanges
        let kinds = try pipeline.database.connection.query(
            "SELECT count(*) FILTER (WHERE job_kind = 'code'), count(*) FROM decrypt_failures")
        let codeFailures = Int(kinds[0][0]!)!
        let allFailures = Int(kinds[0][1]!)!
        #expect(codeFailures > 20 && allFailures == expectation.failures.count)

        let summary = try Reprocessor(configuration: pipeline.configuration(group: "r", wechat: wechat), options: .init(), logger: logger)
            .run(partitions: 2)
        #expect(summary.total.skipped == codeFailures, "every code job's dead letter is passed over")
        #expect(summary.total.replayed == allFailures - codeFailures)
        for reason in FailureReason.codeOnly {
            #expect(summary.byReason[reason.rawValue].map { $0.skipped == $0.replayed + $0.skipped } ?? true, "\(reason) never replayed")
        }
        #expect(wechat.stats.exchanges == exchanges, "reprocessing calls WeChat never")
    }

    /// No code, code user's number, or `extra` appears in `text`, in the failure rows or in the
    /// dead letters' headers.
    func expectNoSecrets(
        _ pipeline: Pipeline, ledger text: String, extra: [String] = [WeChatStandIn.secret],
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        var secrets = extra
        for message in try pipeline.readAll("wechat.phone.jobs") {
            guard let value = message.value, case .success(let job) = DecryptJob.parse(value), case .code(let code) = job.payload else {
                continue
            }
            secrets.append(code)
            if let synthetic = SyntheticCode.parse(code, appid: job.appid ?? Pipeline.appid) {
                secrets.append(synthetic.phone.purePhoneNumber)
            }
        }
        #expect(secrets.count > 100, sourceLocation: sourceLocation)
        let details = try pipeline.database.connection.query("SELECT detail FROM decrypt_failures").compactMap { $0[0] }.joined(
            separator: "\n")
        let headers = try pipeline.readAll("wechat.phone.dlq").flatMap { letter in
            letter.headers.filter { $0.name.hasPrefix("decrypt.") }.map { String(decoding: $0.value ?? [], as: UTF8.self) }
        }.joined(separator: "\n")
        for secret in Set(secrets) {
            #expect(
                !text.contains(secret) && !details.contains(secret) && !headers.contains(secret), "a secret leaked",
                sourceLocation: sourceLocation)
        }
    }
}
