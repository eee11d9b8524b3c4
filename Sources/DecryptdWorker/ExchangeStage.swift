import DecryptdStore
import Dispatch
import Foundation
import KafkaClient
import LogKeys
import Logging
import OpenSSLDigest
import PhoneDecryption
import WeChatAPI

/// The exchange stage: code jobs' way from the lookup stage to the persist slots, beside decryption
/// (SPEC "Code jobs").
///
/// - its thread takes the code jobs of each poll, looks their codes up in the ledger in one round
///   trip on its own connection (a code found there was exchanged before: the job is complete without
///   calling WeChat), and starts one exchange per remaining code, at most `exchangeConcurrency` at a
///   time (it waits for a free slot, never the pipeline). A code already in flight is not exchanged
///   again: the job waits for that exchange's result.
/// - the exchanges run as tasks on the HTTP client's event loops; each retries its transient answers
///   with backoff until it has a result or the worker stops (then the job stays unfinished). A slot
///   is given back only once the job's outcome is durable (``release(_:)``), so that at most
///   `exchangeConcurrency` codes are ever spent without their outcome stored: the crash gap SPEC
///   names is that large at most, even while PostgreSQL is down.
/// - its collector thread takes whatever results have arrived, deals them into one batch per lane
///   with their ledger rows, and hands them to the persist slots, which write members, failures and
///   ledger rows in one transaction and dead-letter as for encrypted jobs.
/// Between batches, the thread deletes ledger rows older than the retention, in small batches.
final class ExchangeStage: @unchecked Sendable {
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
        var jobs: [PendingJob]
        var fetchedAt: DispatchTime
        var fetchedDate: Date
    }

    /// An exchanged job on its way to the collector, with the ledger row its exchange made.
    private struct Finished: Sendable {
        var jobs: [PendingJob]
        var exchange: CodeExchangeRecord?
        var fetchedAt: DispatchTime
        var fetchedDate: Date
    }

    private let settings: Settings
    private let exchanger: PhoneCodeExchanger
    private let database: DecryptdDatabase
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
    private let running = DispatchGroup()
    /// Followers of codes in flight, by digest: jobs that carry a code being exchanged right now.
    private let inFlight = NSLock()
    private var followers: [String: [PendingJob]] = [:]
    /// The exchange stage and the collector stage, once started.
    private var stages: [Stage] = []
    private var lastSweep = Date.distantPast

    init(
        settings: Settings, exchanger: PhoneCodeExchanger, database: DecryptdDatabase, backoff: Backoff, logger: Logger,
        abandon: StopRequest, owns: @escaping @Sendable (TopicPartition) -> Bool,
        onPostgresRetry: @escaping @Sendable () -> Void, deliver: @escaping @Sendable ([WorkBatch]) -> Void
    ) {
        self.owns = owns
        self.settings = settings
        self.exchanger = exchanger
        self.database = database
        self.backoff = backoff
        self.logger = logger
        self.abandon = abandon
        self.onPostgresRetry = onPostgresRetry
        self.deliver = deliver
        slots = SlotLimit(settings.concurrency)
    }

    /// Hands one poll's code jobs to the stage; never blocks.
    func submit(_ submission: Submission) {
        submissions.put(submission)
    }

    /// Starts the exchange stage and the collector stage. A permanent error in either (a revoked
    /// grant on the ledger, a missing table) goes to `onError`, which stops the worker, as it does
    /// for every other stage.
    func start(onError: @escaping @Sendable (_ error: any Error, _ stage: String) -> Void) {
        let exchange = Stage("decryptd-exchange", take: submissions.take, abandon: abandon, onError: onError) { [self] submission in
            try start(submission)
            try sweepLedgerIfDue()
        }
        // Results arrive one by one; a transaction per handful would cost PostgreSQL (which the
        // encrypted jobs' batches need) more than waiting a little for a batch's worth.
        let takeFinished: @Sendable () -> [Finished]? = { [finished, settings] in
            finished.takeAll(minimum: settings.persistBatch, within: settings.persistDelay)
        }
        let collector = Stage("decryptd-exchange-collect", take: takeFinished, abandon: abandon, onError: onError) { [self] all in
            collect(all)
        }
        stages = [exchange, collector]
    }

    /// Stops taking work, lets the exchanges under way end (they give up once the worker abandons
    /// its work), and waits for both threads. Call once the worker abandons what is unfinished; a
    /// submission that comes later is never taken.
    func close() {
        submissions.close()
        stages.first?.join()
        running.wait()
        finished.close()
        stages.last?.join()
    }

    // MARK: - Exchanging

    private func start(_ submission: Submission) throws {
        var jobs = submission.jobs
        let digests = jobs.map { SHA256Digest.hex($0.code!) }
        let known = try backoff.run("exchange ledger lookup", logger: logger, stop: abandon, onRetry: onPostgresRetry) {
            try database.exchangedCodes(Array(Set(digests)))
        }
        // Codes exchanged before are complete at once; the others are exchanged in order.
        var done: [PendingJob] = []
        var pending: [(job: PendingJob, digest: String)] = []
        for index in jobs.indices {
            if let entry = known[digests[index]] {
                jobs[index].settle(from: entry)
                done.append(jobs[index])
            } else {
                pending.append((jobs[index], digests[index]))
            }
        }
        if !done.isEmpty {
            finished.put(Finished(jobs: done, exchange: nil, fetchedAt: submission.fetchedAt, fetchedDate: submission.fetchedDate))
        }
        for (job, digest) in pending {
            // A job of a partition taken away meanwhile (a rebalance) is left to its new owner, which
            // would otherwise exchange the same code beside this worker.
            guard owns(TopicPartition(job.message.topic, job.message.partition)) else { continue }
            guard lead(digest, job) else { continue }  // the code is in flight: the job follows that exchange
            // A free slot first: at most `concurrency` exchanges in flight.
            while !slots.acquire(within: 0.1) {
                if abandon.isRequested { return }
            }
            running.enter()
            Task { [self] in
                let result = await exchanger.exchange(
                    code: job.code!, appid: job.appid!, jobTimestamp: job.message.timestamp,
                    shouldStop: { [abandon] in abandon.isRequested }
                )
                finish(job, digest: digest, result: result, fetchedAt: submission.fetchedAt, fetchedDate: submission.fetchedDate)
                running.leave()
            }
        }
    }

    /// Makes the job the leader of its code's exchange (true), or a follower of the one in flight.
    private func lead(_ digest: String, _ job: PendingJob) -> Bool {
        inFlight.lock()
        defer { inFlight.unlock() }
        if followers[digest] != nil {
            followers[digest]!.append(job)
            return false
        }
        followers[digest] = []
        return true
    }

    private func finish(_ job: PendingJob, digest: String, result: PhoneCodeExchanger.Result, fetchedAt: DispatchTime, fetchedDate: Date) {
        inFlight.lock()
        let following = followers.removeValue(forKey: digest) ?? []
        inFlight.unlock()
        let outcome: Result<PhonePayload, DecryptFailure>
        switch result {
        case .stopped:
            slots.release()
            return  // unfinished: not committed, redelivered
        case .phone(let payload): outcome = .success(payload)
        case .failure(let failure): outcome = .failure(failure)
        }
        var jobs = [job] + following
        for index in jobs.indices { jobs[index].outcome = outcome }
        jobs[0].holdsExchangeSlot = true
        // A code WeChat never saw (no secret for the appid) is not spent: nothing to record.
        var exchange: CodeExchangeRecord?
        if case .failure(let failure) = outcome, failure.reason == .exchangeNotConfigured {
            exchange = nil
        } else {
            let failure = outcome.failureValue
            exchange = CodeExchangeRecord(
                codeDigest: digest, user: job.user!, outcome: failure?.reason.rawValue ?? "ok", detail: failure?.detail ?? ""
            )
        }
        finished.put(Finished(jobs: jobs, exchange: exchange, fetchedAt: fetchedAt, fetchedDate: fetchedDate))
    }

    private func collect(_ all: [Finished]) {
        let earliest = all.min { $0.fetchedAt < $1.fetchedAt }!
        let batches = WorkBatch.byLane(
            all.flatMap(\.jobs), exchanges: all.compactMap(\.exchange), lanes: settings.lanes,
            fetchedAt: earliest.fetchedAt, fetchedDate: earliest.fetchedDate
        )
        deliver(batches)
    }

    /// `count` exchanged jobs are durable: their slots are free for new exchanges.
    func release(_ count: Int) {
        slots.release(count)
    }

    // MARK: - Ledger retention

    /// Deletes expired ledger rows, at most `retentionInterval` apart. A retriable error (the
    /// server away) is left for the next sweep; any other (a revoked DELETE) is permanent.
    private func sweepLedgerIfDue() throws {
        guard Date().timeIntervalSince(lastSweep) >= settings.retentionInterval else { return }
        lastSweep = Date()
        var deleted = 0
        do {
            while !abandon.isRequested {
                let count = try database.deleteExchanges(olderThan: settings.ledgerRetention, limit: settings.retentionBatch)
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

extension PendingJob {
    /// The outcome the ledger recorded for this job's code, which was exchanged before.
    mutating func settle(from entry: DecryptdDatabase.ExchangedCode) {
        if entry.outcome == "ok" {
            alreadyStored = true
            outcome = .success(PhonePayload(phoneNumber: "", purePhoneNumber: "", countryCode: "", watermarkTimestamp: 0))
        } else {
            let reason = FailureReason(rawValue: entry.outcome) ?? .wechatError
            outcome = .failure(DecryptFailure(reason, entry.detail))
        }
    }
}

extension Result {
    var failureValue: Failure? {
        if case .failure(let failure) = self { return failure }
        return nil
    }
}
