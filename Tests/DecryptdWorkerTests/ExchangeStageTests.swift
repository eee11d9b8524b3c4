import DecryptdStore
import DecryptdTestSupport
import Foundation
import KafkaClient
import Locks
import Logging
import PhoneDecryption
import Testing
import WeChatAPI

@testable import DecryptdWorker

/// The exchange stage over an in-memory ledger and exchanger: no server, no broker.
@Suite("Exchange stage", .ownThread(minutes: 2))
struct ExchangeStageTests {
    static let appid = "wx6ede2086ee29a89f"
    static let phone = PhonePayload(phoneNumber: "+86 138", purePhoneNumber: "138", countryCode: "86", watermarkTimestamp: 7)

    /// The ledger: entries by key, and an error to throw instead, if set.
    final class Ledger: CodeLedger, Sendable {
        private let state = Mutex((entries: [String: DecryptdDatabase.ExchangedCode](), error: String?.none, deletes: 0, lookups: 0))

        init(entries: [String: DecryptdDatabase.ExchangedCode] = [:], error: String? = nil) {
            state.withLock { $0 = (entries, error, 0, 0) }
        }

        var deletes: Int { state.withLock { $0.deletes } }
        var lookups: Int { state.withLock { $0.lookups } }

        func ledgerKey(for code: String) -> String { "key-" + code }

        func exchangedCodes(_ keys: [String]) throws -> [String: DecryptdDatabase.ExchangedCode] {
            let (entries, error) = state.withLock {
                $0.lookups += 1
                return ($0.entries, $0.error)
            }
            if let error { throw LedgerFailure(description: error) }
            return entries.filter { keys.contains($0.key) }
        }

        func deleteExchanges(olderThan seconds: Double, limit: Int) throws -> Int {
            state.withLock { $0.deletes += 1 }
            return 0
        }
    }

    struct LedgerFailure: Error, CustomStringConvertible {
        var description: String
    }

    /// WeChat: each code's answer from `answer`, which may wait; the codes called, in order.
    final class Exchanger: CodeExchanging {
        let answer: @Sendable (String) async -> PhoneCodeExchanger.Result
        let calls = Mutex<[String]>([])

        init(answer: @escaping @Sendable (String) async -> PhoneCodeExchanger.Result = { _ in .phone(ExchangeStageTests.phone) }) {
            self.answer = answer
        }

        func exchange(code: String, appid: String, jobTimestamp: Int64?) async -> PhoneCodeExchanger.Result {
            calls.withLock { $0.append(code) }
            return await answer(code)
        }

        func hasSecret(for appid: String) -> Bool { true }

        /// A check is called as "check:<openid>:<key>" and answered by `answer` with that name.
        func checkSession(appid: String, openid: String, sessionKey: String, failure: DecryptFailure) async -> PhoneCodeExchanger.Result {
            let name = "check:\(openid):\(sessionKey)"
            calls.withLock { $0.append(name) }
            switch await answer(name) {
            case .failure(let refined): return .failure(DecryptFailure(refined.reason, failure.detail + refined.detail))
            case let other: return other
            }
        }
    }

    /// A stage with `concurrency` slots, what it hands on collected in `collected`.
    final class Harness: Sendable {
        let stage: ExchangeStage
        let exchanger: Exchanger
        let abandon = StopRequest()
        let collected = Collected()
        var batches: [WorkBatch] { collected.delivered.withLock { $0 } }
        var reported: [(error: String, stage: String)] { collected.errors.withLock { $0 } }

        /// What the stage hands on, in a box the stage's closures can hold before the harness exists.
        final class Collected: Sendable {
            let delivered = Mutex<[WorkBatch]>([])
            let errors = Mutex<[(String, String)]>([])
        }

        init(concurrency: Int = 4, ledger: Ledger = Ledger(), exchanger: Exchanger = Exchanger()) {
            self.exchanger = exchanger
            let collected = collected
            stage = ExchangeStage(
                settings: .init(concurrency: concurrency, lanes: 2, ledgerRetention: 86_400), exchanger: exchanger, ledger: { ledger },
                backoff: Backoff(initialDelay: 0.001, maximumDelay: 0.002), logger: Logger(label: "test"), abandon: abandon,
                owns: { _ in true }, onPostgresRetry: {}, deliver: { batches in collected.delivered.withLock { $0 += batches } })
            stage.start(onError: { error, stage in collected.errors.withLock { $0.append(("\(error)", stage)) } })
        }

        func submit(_ codes: [String]) {
            let jobs = codes.enumerated().map { offset, code in
                CodeJob(
                    PendingJob(
                        jobMessage(offset, partition: 0, value: #"{"openid":"o-\#(code)","code":"\#(code)"}"#),
                        appids: [ExchangeStageTests.appid]
                    ))!
            }
            stage.submit(.init(jobs: jobs, fetchedAt: .now(), fetchedDate: Date()))
        }

        /// Encrypted jobs of `openids` about to fail bad_padding, for checksession.
        func submitChecks(_ openids: [String]) {
            let jobs = openids.enumerated().map { offset, openid in
                let job = PendingJob(
                    jobMessage(100 + offset, partition: 0, value: #"{"openid":"\#(openid)","encryptedData":"AAAA","iv":"AAAA"}"#),
                    appids: [ExchangeStageTests.appid])
                return CodeJob(
                    checking: job, user: job.user!, newestKey: "K-\(openid)", failure: DecryptFailure(.badPadding, "padding (\(offset))"))
            }
            stage.submit(.init(jobs: jobs, fetchedAt: .now(), fetchedDate: Date()))
        }

        var jobs: [PendingJob] { batches.flatMap(\.jobs) }

        func stop() {
            abandon.request()
            stage.close()
        }
    }

    @Test("codes found in the ledger complete without an exchange: a success as already stored, a failure as recorded")
    func ledgerHits() throws {
        let ledger = Ledger(entries: [
            "key-a": .init(outcome: "ok", detail: ""), "key-b": .init(outcome: "code_invalid", detail: "errcode 40029"),
        ])
        let harness = Harness(ledger: ledger)
        defer { harness.stop() }
        harness.submit(["a", "b"])
        try waitUntil(timeout: 10, "both delivered") { harness.jobs.count == 2 }
        let outcomes = Dictionary(uniqueKeysWithValues: harness.jobs.map { ($0.openid!, $0.outcome) })
        guard case .alreadyStored = outcomes["o-a"] else {
            Issue.record("a: \(String(describing: outcomes["o-a"]))")
            return
        }
        #expect(outcomes["o-b"]??.failureValue == DecryptFailure(.codeInvalid, "errcode 40029"))
        #expect(harness.exchanger.calls.withLock { $0 }.isEmpty, "WeChat is not called")
        #expect(harness.batches.flatMap(\.exchanges).isEmpty, "no new ledger row")
        #expect(ledger.deletes == 1, "the first submission sweeps the ledger")
    }

    @Test("exchanged codes: a ledger row each, the lease on the leader; a second job with the code in flight follows it")
    func exchangedAndFollowed() throws {
        let gate = Mutex(false)
        let exchanger = Exchanger { _ in
            while !gate.withLock({ $0 }) { try? await Task.sleep(for: .milliseconds(2)) }
            return .phone(Self.phone)
        }
        let harness = Harness(exchanger: exchanger)
        defer { harness.stop() }
        harness.submit(["a"])
        try waitUntil(timeout: 10, "a in flight") { exchanger.calls.withLock { $0 } == ["a"] }
        harness.submit(["a"])  // a redelivery while the first is in flight
        Thread.sleep(forTimeInterval: 0.05)
        gate.withLock { $0 = true }
        try waitUntil(timeout: 10, "both delivered") { harness.jobs.count == 2 }
        #expect(exchanger.calls.withLock { $0 } == ["a"], "one exchange for both")
        #expect(harness.jobs.allSatisfy { if case .success(Self.phone) = $0.outcome { true } else { false } })
        let batches = harness.batches
        #expect(batches.flatMap(\.exchanges).map(\.outcome) == ["ok"] && batches.flatMap(\.exchanges).first?.codeDigest == "key-a")
        #expect(batches.flatMap(\.leases).count == 1, "one slot, held by the leader")
    }

    @Test("at most `concurrency` codes are exchanged and not yet durable; releasing a batch's leases lets the next ones go")
    func leasesBoundTheGap() throws {
        let harness = Harness(concurrency: 2)
        defer { harness.stop() }
        harness.submit(["a", "b", "c", "d", "e"])
        try waitUntil(timeout: 10, "two exchanged") { harness.jobs.count == 2 }
        Thread.sleep(forTimeInterval: 0.2)
        #expect(harness.exchanger.calls.withLock { $0.count } == 2, "no third exchange while two are not durable")
        for batch in harness.batches { batch.releaseLeases() }
        try waitUntil(timeout: 10, "two more") { harness.jobs.count == 4 }
        for batch in harness.batches { batch.releaseLeases() }  // twice for the first: released once
        try waitUntil(timeout: 10, "all five") { harness.jobs.count == 5 }
    }

    @Test("session checks: no ledger lookup or row, one call per user in flight, each job its own detail with the answer")
    func sessionChecks() throws {
        let gate = Mutex(false)
        let exchanger = Exchanger { name in
            while !gate.withLock({ $0 }) { try? await Task.sleep(for: .milliseconds(2)) }
            return .failure(DecryptFailure(name.hasPrefix("check:o-stale") ? .staleSessionKey : .badPadding, "; checked"))
        }
        let ledger = Ledger()
        let harness = Harness(ledger: ledger, exchanger: exchanger)
        defer { harness.stop() }
        harness.submitChecks(["o-stale", "o-stale", "o-current"])
        Thread.sleep(forTimeInterval: 0.05)
        gate.withLock { $0 = true }
        try waitUntil(timeout: 10, "all three delivered") { harness.jobs.count == 3 }
        #expect(Set(exchanger.calls.withLock { $0 }) == ["check:o-stale:K-o-stale", "check:o-current:K-o-current"], "one call per user")
        #expect(exchanger.calls.withLock { $0 }.count == 2)
        let outcomes = harness.jobs.map { ($0.openid!, $0.outcome?.failureValue) }
        #expect(outcomes.filter { $0.0 == "o-stale" }.allSatisfy { $0.1?.reason == .staleSessionKey })
        #expect(outcomes.first { $0.0 == "o-current" }?.1 == DecryptFailure(.badPadding, "padding (2); checked"))
        #expect(harness.batches.flatMap(\.exchanges).isEmpty, "a check spends no code: no ledger row")
        #expect(ledger.lookups == 0, "no ledger lookup for checks")
    }

    @Test("a code with no secret for its appid is not spent: no ledger row")
    func notConfigured() throws {
        let harness = Harness(exchanger: Exchanger { _ in .failure(DecryptFailure(.exchangeNotConfigured, "no app secret")) })
        defer { harness.stop() }
        harness.submit(["a"])
        try waitUntil(timeout: 10, "delivered") { harness.jobs.count == 1 }
        #expect(harness.jobs.first?.outcome?.failureValue?.reason == .exchangeNotConfigured)
        #expect(harness.batches.flatMap(\.exchanges).isEmpty)
    }

    /// The defect the stage had: a permanent ledger error was swallowed, and its jobs never finished.
    @Test("a permanent ledger error goes to onError with the stage's name; nothing is delivered")
    func permanentLedgerError() throws {
        let ledger = Ledger(error: "permission denied for table phone_code_exchanges")
        let harness = Harness(ledger: ledger)
        defer { harness.stop() }
        harness.submit(["a"])
        try waitUntil(timeout: 10, "the error reported") { !harness.reported.isEmpty }
        #expect(harness.reported.map(\.stage) == ["decryptd-exchange"])
        #expect(harness.reported.first?.error.contains("permission denied") == true)
        #expect(harness.jobs.isEmpty && harness.exchanger.calls.withLock { $0 }.isEmpty)
    }

    @Test("abandoning cancels the exchanges under way at once: close returns, nothing is delivered")
    func abandonCancels() throws {
        let exchanger = Exchanger { _ in
            do { try await Task.sleep(for: .seconds(600)) } catch { return .stopped }
            return .phone(Self.phone)
        }
        let harness = Harness(exchanger: exchanger)
        harness.submit(["a", "b"])
        try waitUntil(timeout: 10, "both in flight") { exchanger.calls.withLock { $0.count } == 2 }
        let started = Date()
        harness.stop()
        #expect(Date().timeIntervalSince(started) < 5, "close did not wait for the 600 s answers")
        #expect(harness.jobs.isEmpty, "stopped exchanges leave their jobs unfinished")
    }
}
