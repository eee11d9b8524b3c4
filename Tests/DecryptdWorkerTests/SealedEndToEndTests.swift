import DecryptdStore
import DecryptdTestSupport
import DecryptdWorker
import DevWeChat
import Foundation
import KafkaClient
import PhoneDecryption
import SyntheticLoad
import Testing
import WeChatAPISecurity

/// Code jobs in WeChat's API security mode end to end: dev-wechat verifies every sealed request as
/// WeChat's gateway does and seals its answers; the worker verifies them (SPEC "API security mode").
@Suite(
    "API security mode end to end (dev-wechat sealed + embedded broker + PostgreSQL)",
    .enabled(if: IsolatedDatabase.enabled, "needs scripts/test.sh"), .ownThread(minutes: 10))
struct SealedEndToEndTests {
    /// RSA key generation costs a little: one app's keys for the suite.
    static let app = DevSealedApp.generate(appid: Pipeline.appid)

    /// Every piece of key material in the worker's key file, as text a leak would show.
    static var keyMaterial: [String] {
        let pem = app.appKey.pem.split(separator: "\n").filter { !$0.hasPrefix("-----") }.map(String.init)
        return [Base64Encoding.encode(app.symmetricKey), "BEGIN PRIVATE KEY"] + pem
    }

    @Test(
        "a sealed mixed load with every outcome, forged answers and a certificate rotation mid-run: tables, dead letters and offsets exact"
    )
    func mixedLoad() throws {
        let wechat = try WeChatStandIn(latency: 0.005) { settings in
            settings.sealed = [Pipeline.appid: Self.app]
            settings.forgeShare = 0.05
            settings.rotateAfter = 400
        }
        let pipeline = try Pipeline()
        let expectation = try pipeline.generate(jobs: 2000, codeShare: 0.6, seed: 38, wechat: wechat)
        #expect(Set(expectation.counts.keys) == Set(FailureReason.allCases.map(\.rawValue) + ["ok"]), "the load has every code")
        var configuration = pipeline.configuration(group: "sealed", wechat: wechat)
        configuration.apiSecurity = [Pipeline.appid: Self.app.workerKeys]
        let summary = try WorkerRun(configuration).wait()
        #expect(summary.drained && summary.total == 2000 && summary.abandoned == 0)
        for (kind, count) in expectation.counts {
            #expect(summary.outcomes[kind] == count, "outcome \(kind)")
        }
        try pipeline.expectTables(expectation)
        try pipeline.expectDeadLetters(expectation, group: "sealed", exactly: true)
        try pipeline.expectCommitted(group: "sealed")
        let stats = wechat.stats
        #expect(stats.sealedExchanges > 800 && stats.gatewayErrors.isEmpty, "every request sealed and accepted: \(stats.gatewayErrors)")
        #expect(stats.forgedAnswers > 10, "forged answers were sent (and refused: no member has the forger's number)")
        #expect(try !pipeline.members().values.contains { $0.phone == "+86 13800000000" })
        #expect(stats.certificateRotated, "the certificate was rotated mid-run")
        #expect(stats.codesReused == 0, "no code exchanged twice")
        try CodeJobEndToEndTests().expectNoSecrets(
            pipeline, ledger: try pipeline.ledger().text, extra: [WeChatStandIn.secret] + Self.keyMaterial)
    }

    /// A load of ok jobs only: `codeShare` of them code jobs.
    func okLoad(_ pipeline: Pipeline, jobs: Int, codeShare: Double, seed: UInt64) throws -> LoadGenerator.Expectation {
        var plan = LoadGenerator.Plan(jobs: jobs, appid: Pipeline.appid)
        plan.codeShare = codeShare
        plan.staleKeyShare = 0
        plan.damagedShare = 0
        plan.seed = seed
        return try pipeline.generate(plan)
    }

    @Test("a wrong private key: every code job wechat_error 40234, one error log saying what to fix, nothing stored for them, no stall")
    func wrongPrivateKey() throws {
        let wechat = try WeChatStandIn(latency: 0.005) { $0.sealed = [Pipeline.appid: Self.app] }
        let pipeline = try Pipeline(partitions: 2)
        let expectation = try okLoad(pipeline, jobs: 600, codeShare: 0.5, seed: 40)
        let codeJobs = try #require(expectation.kinds[.code])
        // The key file as dev-wechat writes it, but with another private key under the same number.
        let wrong = DevSealedApp.generate(appid: Pipeline.appid)
        var entry = try #require(try JSONSerialization.jsonObject(with: Data(Self.app.keyFile.utf8)) as? [String: [String: Any]])
        entry[Pipeline.appid]?["privateKey"] = wrong.appKey.pem
        let keyFile = NSTemporaryDirectory() + "decryptd-keys-\(UUID().uuidString).json"
        try JSONSerialization.data(withJSONObject: entry).write(to: URL(fileURLWithPath: keyFile))
        defer { try? FileManager.default.removeItem(atPath: keyFile) }
        chmod(keyFile, 0o600)
        var environment = pipeline.binaryEnvironment(wechat: wechat)
        environment["WECHAT_API_SECURITY_FILE"] = keyFile
        let log = NSTemporaryDirectory() + "decryptd-sealed-wrong-\(UUID().uuidString).log"
        defer { try? FileManager.default.removeItem(atPath: log) }
        let worker = try ChildProcess(
            [
                decryptdBinary.path, "run", "--group", "wrongkey", "--exit-at-end", "--progress-interval", "0", "--kafka-property",
                "session.timeout.ms=6000",
            ], environment: environment,
            logPath: log)
        defer { if worker.exitStatus == nil { worker.kill(SIGKILL) } }
        #expect(try worker.wait(timeout: 180) == 0)
        let failures = try pipeline.database.connection.query("SELECT reason, detail, job_kind FROM decrypt_failures")
        #expect(failures.count == codeJobs, "every code job failed, and only they: the encrypted ones were not held up")
        #expect(
            failures.allSatisfy {
                $0[0] == "wechat_error" && ($0[1] ?? "").hasPrefix("errcode 40234 (API security mode)") && $0[2] == "code"
            })
        #expect(try pipeline.members().count > 0)
        #expect(wechat.stats.codesSpent == 0 && wechat.stats.gatewayErrors["40234"] == codeJobs)
        try pipeline.expectCommitted(group: "wrongkey")
        let text = try String(contentsOfFile: log, encoding: .utf8)
        let errors = text.split(separator: "\n").filter { $0.contains("API security mode is misconfigured") }
        #expect(errors.count == 1, "one error per appid and errcode")
        #expect(errors.first?.contains("errcode=40234") == true && errors.first?.contains("privateKey") == true)
        for secret in Self.keyMaterial + [wrong.appKey.pem.split(separator: "\n")[1].description] {
            #expect(!text.contains(secret), "key material in the log")
        }
    }

    @Test("a clock more than 300 s off WeChat's: every code job wechat_error 40240; the encrypted ones go on")
    func skewedClock() throws {
        let wechat = try WeChatStandIn(latency: 0.005) { settings in
            settings.sealed = [Pipeline.appid: Self.app]
            settings.clockSkew = -400
        }
        let pipeline = try Pipeline(partitions: 2)
        let expectation = try okLoad(pipeline, jobs: 300, codeShare: 0.5, seed: 41)
        let codeJobs = try #require(expectation.kinds[.code])
        var configuration = pipeline.configuration(group: "skewed", wechat: wechat)
        configuration.apiSecurity = [Pipeline.appid: Self.app.workerKeys]
        let summary = try WorkerRun(configuration).wait()
        #expect(summary.outcomes["wechat_error"] == codeJobs)
        #expect(summary.outcomes["ok"] == 300 - codeJobs, "the encrypted jobs went on")
        let details = try pipeline.database.connection.query("SELECT detail FROM decrypt_failures").compactMap { $0[0] }
        #expect(details.count == codeJobs && details.allSatisfy { $0.hasPrefix("errcode 40240") })
    }
}
