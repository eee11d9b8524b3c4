import DecryptdStore
import Dispatch
import Foundation
import KafkaClient
import Locks
import LogKeys
import Logging
import PhoneDecryption
import Retries
import WeChatAPI

/// What the exchange stage needs of the store: the ledger of codes exchanged before (SPEC "Code
/// jobs"). Used by the stage's own thread only.
protocol CodeLedger {
    /// The key the ledger files `code` under.
    func ledgerKey(for code: String) -> String
    /// The ledger's entries among `keys`.
    func exchangedCodes(_ keys: [String]) throws -> [String: DecryptdDatabase.ExchangedCode]
    /// Deletes at most `limit` entries older than `seconds`; how many it deleted.
    func deleteExchanges(olderThan seconds: Double, limit: Int) throws -> Int
}

extension DecryptdDatabase: CodeLedger {
    func ledgerKey(for code: String) -> String { Self.ledgerKey(for: code) }
}

/// What the exchange stage needs of WeChat's API: one code's exchange, retried until it has a
/// result or its task is cancelled (``PhoneCodeExchanger``, or a stand-in in tests).
protocol CodeExchanging: Sendable {
    func exchange(code: String, appid: String, jobTimestamp: Int64?) async -> PhoneCodeExchanger.Result
    /// Whether `appid` has an app secret (only those are asked checksession).
    func hasSecret(for appid: String) -> Bool
    /// checksession for a job about to fail `failure` (bad_padding); see ``PhoneCodeExchanger``.
    func checkSession(appid: String, openid: String, sessionKey: String, failure: DecryptFailure) async -> PhoneCodeExchanger.Result
}

extension PhoneCodeExchanger: CodeExchanging {}

/// The exchange stage: code jobs' way from the lookup stage to the persist slots, beside decryption
/// (SPEC "Code jobs").
///
/// - its stage thread takes the code jobs of each poll, looks their codes up in the ledger in one
///   round trip (a code found there was exchanged before: the job is complete without calling
///   WeChat), and hands each remaining code to the exchanges, at most `concurrency` at a time: it
///   takes a slot lease first (it waits for one, never the pipeline). A code already in flight is
///   not exchanged again: the job waits for that exchange's result.
/// - the exchanges run in one task group that the stage owns, fed by a stream that never blocks
///   its writer, one child task per code; each retries its transient answers until it has a
///   result. When the worker abandons its work, the group is cancelled: waits and retries end at
///   once, and the jobs stay unfinished. The lease travels with the exchanged job and is released
///   once its outcome is durable (by whoever completes the batch), so that at most `concurrency`
///   codes are ever spent without their outcome stored: the crash gap SPEC names is that large at
///   most, even while PostgreSQL is down.
/// - its collector stage takes whatever results have arrived, deals them into one batch per lane
///   with their ledger rows, and hands them to the persist slots, which write members, failures and
///   ledger rows in one transaction and dead-letter as for encrypted jobs.
/// Between submissions, the stage thread deletes ledger rows older than the retention, in small
/// batches. A permanent error in either stage goes to the worker's `onError` (exit 1).
///
/// The ledger's connection is made on the stage's thread and never leaves it.
final class ExchangeStage: Sendable {
    struct Settings: Sendable {
        var concurrency: Int
        var lanes: Int
        var ledgerRetention: TimeInterval
        /// Rows deleted per statement, and the pause between sweeps.
        var retentionBatch = 1000
        var retentionInterval: TimeInterval = 60
        /// Exchanged jobs are handed to the persist slots once this many have finished, or this long
        /// after the first of them did.
        var persistBatch = 1000
        var persistDelay: TimeInterval = 0.005
    }

    /// One poll's code jobs.
    struct Submission: Sendable {
        var jobs: [CodeJob]
        var fetchedAt: DispatchTime
        var fetchedDate: Date
    }

    /// A code on its way to its exchange, with the lease of its slot.
    private struct Exchange: Sendable {
        var job: CodeJob
        var key: String
        var lease: SlotLease
        var fetchedAt: DispatchTime
        var fetchedDate: Date
    }

    /// Jobs whose outcome is known, on their way to the collector, with the ledger row their
    /// exchange made.
    private struct Finished: Sendable {
        var jobs: [PendingJob]
        var exchange: CodeExchangeRecord?
        var fetchedAt: DispatchTime
        var fetchedDate: Date
    }

    private let settings: Settings
    private let exchanger: any CodeExchanging
    private let openLedger: @Sendable () throws -> any CodeLedger
    private let backoff: Backoff
    private let logger: Logger
    /// Requested when the worker abandons unfinished work: retries and waits end.
    private let abandon: StopRequest
    private let owns: @Sendable (TopicPartition) -> Bool
    private let deliver: @Sendable ([WorkBatch]) -> Void
    private let onPostgresRetry: @Sendable () -> Void

    private let submissions = BlockingQueue<Submission>()
    private let finished = BlockingQueue<Finished>()
    private let slots: SlotLimit
    private let exchanges: AsyncStream<Exchange>
    private let exchangesIn: AsyncStream<Exchange>.Continuation
    /// Followers of codes in flight, by ledger key: jobs that carry a code being exchanged now.
    private let followers = Mutex<[String: [PendingJob]]>([:])
    /// The stage thread and the collector, and the task running the exchanges, once started.
    private let running = Mutex<(stages: [Stage], exchanging: Task<Void, Never>?)>(([], nil))

    /// What the stage's thread keeps between submissions: the ledger, and when it was last swept.
    private final class LedgerSlot {
        let ledger: any CodeLedger
        var lastSweep = Date.distantPast
        init(_ ledger: any CodeLedger) { self.ledger = ledger }
    }

    init(
        settings: Settings, exchanger: any CodeExchanging, ledger: @escaping @Sendable () throws -> any CodeLedger, backoff: Backoff,
        logger: Logger,
        abandon: StopRequest, owns: @escaping @Sendable (TopicPartition) -> Bool,
        onPostgresRetry: @escaping @Sendable () -> Void, deliver: @escaping @Sendable ([WorkBatch]) -> Void
    ) {
        self.owns = owns
        self.settings = settings
        self.exchanger = exchanger
        openLedger = ledger
        self.backoff = backoff
        self.logger = logger
        self.abandon = abandon
        self.onPostgresRetry = onPostgresRetry
        self.deliver = deliver
        slots = SlotLimit(settings.concurrency)
        (exchanges, exchangesIn) = AsyncStream.makeStream(of: Exchange.self, bufferingPolicy: .unbounded)
    }

    /// Hands one poll's code jobs to the stage; never blocks.
    func submit(_ submission: Submission) {
        submissions.put(submission)
    }

    /// Starts the stage thread, the collector and the exchanges. A permanent error in either stage
    /// (a revoked grant on the ledger, a missing table) goes to `onError`, which stops the worker,
    /// as it does for every other stage.
    func start(onError: @escaping @Sendable (_ error: any Error, _ stage: String) -> Void) {
        let openSlot: @Sendable () throws -> LedgerSlot = { [openLedger] in LedgerSlot(try openLedger()) }
        let exchange = Stage("decryptd-exchange", take: submissions.take, abandon: abandon, onError: onError, resource: openSlot) {
            [self] submission, slot in
            try start(submission, slot.ledger)
            try sweepLedgerIfDue(slot)
        }
        // Results arrive one by one; a transaction per handful would cost PostgreSQL (which the
        // encrypted jobs' batches need) more than waiting a little for a batch's worth.
        let takeFinished: @Sendable () -> [Finished]? = { [finished, settings] in
            finished.takeAll(minimum: settings.persistBatch, within: settings.persistDelay)
        }
        let collector = Stage("decryptd-exchange-collect", take: takeFinished, abandon: abandon, onError: onError) { [self] all in
            collect(all)
        }
        let exchanging = Task { [self] in await runExchanges() }
        abandon.whenRequested { exchanging.cancel() }
        running.withLock { $0 = ([exchange, collector], exchanging) }
    }

    /// Stops taking work, waits for the exchanges under way (cancelled once the worker abandons
    /// its work, which it has when it calls this) and for both stages. A submission that comes
    /// later is never taken.
    func close() {
        let (stages, exchanging) = running.withLock { $0 }
        submissions.close()
        stages.first?.join()
        exchangesIn.finish()
        if let exchanging {
            // A blocking wait for the task, from the worker's own thread (never a pool thread).
            let ended = DispatchSemaphore(value: 0)
            Task {
                await exchanging.value
                ended.signal()
            }
            ended.wait()
        }
        finished.close()
        stages.last?.join()
    }

    // MARK: - Exchanging

    private func start(_ submission: Submission, _ ledger: any CodeLedger) throws {
        // A session check is keyed by its user: that user's other jobs in flight share its answer.
        let keys = submission.jobs.map { job in
            job.check == nil ? ledger.ledgerKey(for: job.code) : "checksession|\(job.appid.utf8.count):\(job.appid)\(job.user.openid)"
        }
        let codeKeys = zip(submission.jobs, keys).filter { $0.0.check == nil }.map(\.1)
        let known =
            codeKeys.isEmpty
            ? [:]
            : try backoff.run("exchange ledger lookup", logger: logger, stop: abandon, onRetry: onPostgresRetry) {
                try ledger.exchangedCodes(Array(Set(codeKeys)))
            }
        // Codes exchanged before are complete at once; the others are exchanged in order.
        var done: [PendingJob] = []
        var pending: [(job: CodeJob, key: String)] = []
        for (job, key) in zip(submission.jobs, keys) {
            if job.check == nil, let entry = known[key] {
                var settled = job.job
                settled.outcome = JobOutcome(ledgerEntry: entry)
                done.append(settled)
            } else {
                pending.append((job, key))
            }
        }
        if !done.isEmpty {
            finished.put(Finished(jobs: done, exchange: nil, fetchedAt: submission.fetchedAt, fetchedDate: submission.fetchedDate))
        }
        for (job, key) in pending {
            // A job of a partition taken away meanwhile (a rebalance) is left to its new owner, which
            // would otherwise exchange the same code beside this worker.
            guard owns(TopicPartition(job.job.message.topic, job.job.message.partition)) else { continue }
            guard lead(key, job.job) else { continue }  // the code is in flight: the job follows that exchange
            // A free slot first: at most `concurrency` exchanges in flight, or awaiting durability.
            var lease: SlotLease?
            while lease == nil {
                if abandon.isRequested { return }
                lease = slots.lease(within: 0.1)
            }
            exchangesIn.yield(
                Exchange(job: job, key: key, lease: lease!, fetchedAt: submission.fetchedAt, fetchedDate: submission.fetchedDate))
        }
    }

    /// One child task per code, in a group that lives as long as the stream; cancelling the task
    /// that runs it cancels every exchange under way.
    private func runExchanges() async {
        await withDiscardingTaskGroup { group in
            for await exchange in exchanges {
                group.addTask { [self] in
                    let job = exchange.job
                    let result: PhoneCodeExchanger.Result
                    if let check = job.check {
                        result = await exchanger.checkSession(
                            appid: job.appid, openid: job.user.openid, sessionKey: check.sessionKey, failure: check.failure)
                    } else {
                        result = await exchanger.exchange(code: job.code, appid: job.appid, jobTimestamp: job.job.message.timestamp)
                    }
                    finish(exchange, result: result)
                }
            }
        }
    }

    /// Makes the job the leader of its code's exchange (true), or a follower of the one in flight.
    private func lead(_ key: String, _ job: PendingJob) -> Bool {
        followers.withLock { followers in
            if followers[key] != nil {
                followers[key]!.append(job)
                return false
            }
            followers[key] = []
            return true
        }
    }

    private func finish(_ exchange: Exchange, result: PhoneCodeExchanger.Result) {
        let following = followers.withLock { $0.removeValue(forKey: exchange.key) ?? [] }
        let outcome: JobOutcome
        switch result {
        case .stopped:
            exchange.lease.release()
            return  // unfinished: not committed, redelivered
        case .phone(let payload): outcome = .success(payload)
        case .failure(let failure): outcome = .failure(failure)
        }
        var jobs = [exchange.job.job] + following
        for index in jobs.indices { jobs[index].outcome = outcome }
        jobs[0].lease = exchange.lease
        // A code WeChat never saw (no secret for the appid) is not spent: nothing to record; a
        // session check spends nothing either.
        var record: CodeExchangeRecord?
        if exchange.job.check == nil, outcome.failureValue?.reason != .exchangeNotConfigured {
            let failure = outcome.failureValue
            record = CodeExchangeRecord(
                codeDigest: exchange.key, user: exchange.job.user, outcome: failure?.reason.rawValue ?? "ok", detail: failure?.detail ?? "")
        }
        finished.put(Finished(jobs: jobs, exchange: record, fetchedAt: exchange.fetchedAt, fetchedDate: exchange.fetchedDate))
    }

    private func collect(_ all: [Finished]) {
        let earliest = all.min { $0.fetchedAt < $1.fetchedAt }!
        let batches = WorkBatch.byLane(
            all.flatMap(\.jobs), exchanges: all.compactMap(\.exchange), lanes: settings.lanes,
            fetchedAt: earliest.fetchedAt, fetchedDate: earliest.fetchedDate
        )
        deliver(batches)
    }

    // MARK: - Ledger retention

    /// Deletes expired ledger rows, at most `retentionInterval` apart. A retriable error (the
    /// server away) is left for the next sweep; any other (a revoked DELETE) is permanent.
    private func sweepLedgerIfDue(_ slot: LedgerSlot) throws {
        guard Date().timeIntervalSince(slot.lastSweep) >= settings.retentionInterval else { return }
        slot.lastSweep = Date()
        var deleted = 0
        do {
            while !abandon.isRequested {
                let count = try slot.ledger.deleteExchanges(olderThan: settings.ledgerRetention, limit: settings.retentionBatch)
                deleted += count
                if count < settings.retentionBatch { break }
            }
        } catch {
            guard error.isRetriable else { throw error }
            logger.warning("could not delete old exchange ledger rows; trying again later", metadata: [LogKey.error: "\(error)"])
        }
        if deleted > 0 { logger.info("deleted old exchange ledger rows", metadata: [LogKey.rows: "\(deleted)"]) }
    }
}

extension JobOutcome {
    /// The outcome the ledger recorded for a code exchanged before: a success is stored already.
    init(ledgerEntry entry: DecryptdDatabase.ExchangedCode) {
        if entry.outcome == "ok" {
            self = .alreadyStored
        } else {
            self = .failure(DecryptFailure(FailureReason(rawValue: entry.outcome) ?? .wechatError, entry.detail))
        }
    }
}
