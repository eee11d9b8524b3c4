import DeadLetterFormat
import DecryptdStore
import Dispatch
import Foundation
public import KafkaClient
import Locks
import LogKeys
public import Logging
import PhoneDecryption
import WeChatAPI

/// The Kafka → PostgreSQL decryption worker, at least once.
///
/// Threads (all dedicated; nothing blocking runs on Swift's cooperative pool):
/// - the caller of ``run()``: only polls Kafka and hands on what a poll returned. It never waits
///   for the pipeline for long, so rebalances stay served; back-pressure is the consumer's
///   in-flight limit.
/// - parse-and-lookup slots: parse a poll's jobs, deal them into batches by lane (a hash of the
///   openid, one lane per persist slot), and fetch all their session keys in one round trip, each
///   slot on its own PostgreSQL connection.
/// - decrypt: the batch over a Dispatch pool of `concurrency` slots, one decryptor per slot.
/// - persist slots, one per lane: members and failures in one statement on the slot's
///   connection while the dead letters are produced without blocking; when both are durable
///   (and only then) the batch's offsets are marked done. A user's jobs are always written by the
///   same slot, so the slots' transactions never wait on each other's row locks.
/// - dead-letter retry (``DeadLetterSender``): records that were not acknowledged, with backoff.
/// - exchange (``ExchangeStage``): code jobs, which the lookup slots set apart, beside lookup and
///   decrypt: ledger lookup, WeChat's code exchange with bounded concurrency, then the same persist
///   slots. A slow exchange never holds up an encrypted job.
/// The stages overlap: batch N+1 is looked up and decrypted while batch N is written. That is
/// safe because every write is order-independent (watermark rule, idempotent failure rows,
/// out-of-order completion). Transient errors are retried in place with backoff; nothing is
/// dead-lettered or completed because of them.
public final class Worker: Sendable {
    public let configuration: WorkerConfiguration
    private let logger: Logger
    private let metrics: WorkerMetrics
    private let consumer: KafkaConsumer
    private let producer: KafkaProducer
    /// Each lookup and persist slot (and the exchange stage) makes a connection of its own on its
    /// own thread, to this database (see ``Stage``).
    private let openDatabase: @Sendable () throws -> DecryptdDatabase
    private let backoff: Backoff
    private let stats = WorkerStats()

    private let parseQueue = BlockingQueue<FetchedMessages>()
    private let decryptQueue = BlockingQueue<WorkBatch>()
    /// One per persist slot (lane); see ``WorkBatch/lane``.
    private let persistQueues: [BlockingQueue<PersistWork>]
    private let deadLetters: DeadLetterSender
    /// Code jobs' stage; its exchanger is shared with nobody.
    private let exchangeStage: ExchangeStage
    private let exchanger: PhoneCodeExchanger
    /// Jobs waiting for a newer session key (nil when parking is off).
    private let parkedJobs: ParkedJobsStage?
    /// Where the worker is in its life, and when the poll loop last ran.
    private let state = Mutex((lifecycle: WorkerLifecycle(), lastPoll: Date()))
    /// Requested when unfinished work is abandoned (a permanent error, or the shutdown timeout):
    /// stages drain their queues without working, and retries and backoff waits end at once.
    private let abandon = StopRequest()

    /// Creates the clients; connects nothing and starts no thread (``run()`` does).
    public init(configuration: WorkerConfiguration, logger: Logger, metrics: WorkerMetrics? = nil) throws {
        precondition(!configuration.appids.isEmpty, "validated by the caller")
        self.configuration = configuration
        self.logger = logger
        let metrics = metrics ?? WorkerMetrics(appids: configuration.appids)
        self.metrics = metrics
        backoff = Backoff(maximumDelay: configuration.maxRetryDelay)
        consumer = try KafkaConsumer(
            configuration: configuration.consumerConfiguration(group: configuration.group, topic: configuration.jobsTopic), logger: logger
        )
        producer = try KafkaProducer(configuration: configuration.producerConfiguration, logger: logger)
        let slots = max(1, configuration.databaseConnections / 2)
        // The URL is checked here, once; each stage connects with it on its own thread.
        let url = configuration.databaseURL
        _ = try DecryptdDatabase(url: url)
        openDatabase = { try DecryptdDatabase(url: url) }
        let persistQueues = (0..<slots).map { _ in BlockingQueue<PersistWork>() }
        self.persistQueues = persistQueues
        let transport = try HTTPClientTransport(baseURL: configuration.wechatAPIURL, connections: configuration.exchangeConcurrency)
        var exchangeConfiguration = PhoneCodeExchanger.Configuration()
        exchangeConfiguration.timeout = configuration.exchangeTimeout
        exchangeConfiguration.maximumRetryDelay = configuration.maxRetryDelay
        exchangeConfiguration.concurrency = configuration.exchangeConcurrency
        exchanger = PhoneCodeExchanger(
            transport: transport, credentials: configuration.appSecrets, configuration: exchangeConfiguration,
            metrics: metrics.exchange, apiSecurity: configuration.apiSecurity, logger: logger
        )
        exchangeStage = ExchangeStage(
            settings: .init(
                concurrency: configuration.exchangeConcurrency, lanes: slots, ledgerRetention: configuration.exchangeLedgerRetention),
            exchanger: exchanger, ledger: openDatabase, backoff: backoff, logger: logger,
            abandon: abandon, owns: { [consumer] in consumer.owns($0) },
            onPostgresRetry: { [metrics, stats] in
                metrics.postgresRetries.increment()
                stats.retriedPostgres()
            },
            deliver: { batches in for batch in batches { persistQueues[batch.lane].put(.write(batch)) } }
        )
        let deadLetters = DeadLetterSender(
            transport: producer, backoff: backoff, logger: logger, stop: abandon,
            onRetry: { [metrics, stats] in
                metrics.kafkaRetries.increment()
                stats.retriedKafka()
            }
        )
        self.deadLetters = deadLetters
        if configuration.parks {
            parkedJobs = ParkedJobsStage(
                settings: .init(
                    jobs: .init(
                        appids: configuration.appids, maxSessionKeys: configuration.maxSessionKeys, reasons: configuration.parkReasons,
                        deadLetterTopic: configuration.deadLetterTopic, group: configuration.group,
                        outcomesTopic: configuration.outcomesTopic,
                        checkSessions: { [exchanger, configuration] checks in
                            SessionChecks.blocking(checks, exchanger: exchanger, concurrency: configuration.exchangeConcurrency)
                        })
                ),
                openDatabase: openDatabase, backoff: backoff, logger: logger, metrics: metrics, abandon: abandon,
                send: { try deadLetters.sendAll($0) },
                onPostgresRetry: { [metrics, stats] in
                    metrics.postgresRetries.increment()
                    stats.retriedPostgres()
                },
                onEnded: { [stats] in stats.ended(healed: $0, expired: $1) })
        } else {
            parkedJobs = nil
        }
    }

    // MARK: - Control

    /// Asks for a graceful stop: no more fetching; in-flight work finishes (bounded by
    /// `shutdownTimeout`), offsets are committed, the group is left. Safe from any thread.
    public func stop() {
        state.withLock { $0.lifecycle.stopRequested() }
    }

    private var keepsPolling: Bool { state.withLock { $0.lifecycle.keepsPolling } }

    /// A stage met a permanent error: the worker stops, and unfinished work is abandoned (it is
    /// not committed, so it is redelivered).
    private func fail(_ error: any Error, stage: String) {
        let first = state.withLock { $0.lifecycle.failed(error) }
        // Once: the stages that fail after the first usually fail for the same reason.
        logger.log(
            level: first ? .critical : .debug, "permanent error: the worker stops; the batch is not committed",
            metadata: [LogKey.stage: "\(stage)", LogKey.error: "\(error)"])
        if first {
            abandon.request()
            consumer.interruptWaits()
        }
    }

    /// Liveness: the polling loop ran recently. Readiness: live, partitions assigned, not stopping.
    public var health: (live: Bool, ready: Bool) {
        let (recent, polling) = state.withLock { (Date().timeIntervalSince($0.lastPoll) < 60, $0.lifecycle.keepsPolling) }
        return (recent, recent && polling && !consumer.assignment.isEmpty)
    }

    /// Retries of retriable errors so far: PostgreSQL work, and dead letters not acknowledged.
    public var retries: (postgres: Int, kafka: Int) { stats.retries }

    /// The partitions this worker owns now.
    public var consumerAssignment: [TopicPartition] { consumer.assignment }

    /// Jobs fetched and not yet durable.
    public var consumerInFlight: Int { consumer.inFlight }

    /// Every assigned partition is at its end and every fetched job is durable.
    public var isDrained: Bool { consumer.isDrained }

    // MARK: - Running

    /// Runs until ``stop()``, until drained with `exitAtEnd`, or until a permanent error.
    /// Blocks the calling thread, which must be a dedicated one. Throws the permanent error.
    public func run() throws -> WorkerSummary {
        let started = Date()
        producer.start()
        // Before the first dead letter, not at it: learning the topic then held up the first
        // batches of every run (docs/performance.md).
        producer.prepare(topic: configuration.deadLetterTopic, timeout: 10)
        deadLetters.start(onError: { [unowned self] in fail($0, stage: $1) })
        exchangeStage.start(onError: { [unowned self] in fail($0, stage: $1) })
        parkedJobs?.start(onError: { [unowned self] in fail($0, stage: $1) })
        let stages = startStages()
        logger.info(
            "worker started",
            metadata: [
                LogKey.topic: "\(configuration.jobsTopic)", LogKey.group: "\(configuration.group)",
                LogKey.concurrency: "\(configuration.concurrency)", LogKey.batchSize: "\(configuration.batchSize)",
            ])
        state.withLock { $0.lifecycle.started() }
        let progress = ProgressReporter(interval: configuration.progressInterval, stats: stats, logger: logger)
        var drained = false
        do {
            while keepsPolling {
                // One poll fills about a batch per lane. Parsing is left to the parse-and-lookup slots.
                let messages = try consumer.poll(maxMessages: configuration.batchSize * persistQueues.count, timeout: 0.2)
                state.withLock { $0.lastPoll = Date() }
                if !messages.isEmpty { parseQueue.put(FetchedMessages(messages: messages)) }
                metrics.inFlight.record(consumer.inFlight)
                progress.tick(
                    inFlight: consumer.inFlight, lag: consumer.lag(), oldestUnfinished: consumer.oldestUnfinished, metrics: metrics)
                if configuration.exitAtEnd, consumer.isDrained {
                    drained = true
                    break
                }
            }
        } catch {
            fail(error, stage: "poll")
        }
        let abandoned = finish(stages)
        let summary = stats.summary(since: started, drained: drained, abandoned: abandoned)
        logger.info("worker stopped", metadata: summary.metadata)
        if let error = state.withLock({
            $0.lifecycle.finished()
            return $0.lifecycle.error
        }) {
            throw error
        }
        return summary
    }

    /// The pipeline, in the order a job goes through it: parse and look up (several slots: their
    /// cost is round-trip latency, not CPU), decrypt (one slot that fans out over the pool), persist
    /// and dead-letter (one slot per lane). The exchange stage and the dead-letter sender's retry
    /// thread are started beside them.
    private func startStages() -> [Stage] {
        persistQueues.indices.map { slot in
            Stage(
                "decryptd-parse-lookup-\(slot)", take: parseQueue.take, abandon: abandon, onError: fail, resource: openDatabase
            ) { [self] fetched, database in
                try parseAndLookUp(fetched, database)
            }
        } + [
            Stage("decryptd-decrypt", take: decryptQueue.take, abandon: abandon, onError: fail) { [self] batch in decrypt(&batch) }
        ]
            + persistQueues.indices.map { slot in
                Stage(
                    "decryptd-persist-\(slot)", take: persistQueues[slot].take, abandon: abandon, onError: fail, resource: openDatabase
                ) { [self] work, database in
                    switch work {
                    case .write(let batch): try persist(batch, database)
                    case .complete(let batch): complete(batch)
                    }
                }
            }
    }

    /// Lets in-flight work finish (bounded), then stops the stages, commits and leaves the group.
    private func finish(_ stages: [Stage]) -> Int {
        let abandoned = consumer.awaitCompletion(until: Date(timeIntervalSinceNow: configuration.shutdownTimeout))
        if abandoned > 0 {
            logger.warning(
                "stopping with unfinished jobs; they were not committed and will be redelivered", metadata: [LogKey.jobs: "\(abandoned)"])
        }
        abandon.request()
        parseQueue.close()
        exchangeStage.close()
        exchanger.close()
        decryptQueue.close()
        for queue in persistQueues { queue.close() }
        for stage in stages { stage.join() }
        parkedJobs?.close()
        deadLetters.close()
        consumer.close()
        // Dead letters still unacknowledged belong to abandoned batches, which are redelivered
        // and dead-lettered again: there is nothing to wait for then.
        producer.close(timeout: abandoned > 0 ? 1 : 10)
        return abandoned
    }

    // MARK: - Stages

    /// Parses what one poll returned, deals it into lane batches, and looks up the session keys
    /// of all of them in one round trip.
    private func parseAndLookUp(_ fetched: FetchedMessages, _ database: DecryptdDatabase) throws {
        var (batches, codeJobs) = WorkBatch.split(
            fetched, appids: configuration.appids, lanes: persistQueues.count, batchSize: configuration.batchSize)
        if !codeJobs.isEmpty {
            exchangeStage.submit(.init(jobs: codeJobs, fetchedAt: fetched.fetchedAt, fetchedDate: fetched.fetchedDate))
        }
        let users = WorkBatch.assignKeySlots(&batches)
        var keys: [[String]] = []
        var newest: [Int64?] = []
        if !users.isEmpty, configuration.parks {
            // A job that parks waits for a key newer than those it was tried with.
            let found = try retryingDatabaseWork("session lookup") {
                try database.sessionKeysWithNewest(forDistinct: users, limit: configuration.maxSessionKeys)
            }
            keys = found.map(\.keys)
            newest = found.map(\.newest)
        } else if !users.isEmpty {
            keys = try retryingDatabaseWork("session lookup") {
                try database.sessionKeys(forDistinct: users, limit: configuration.maxSessionKeys)
            }
        }
        for var batch in batches {
            batch.sessionKeys = keys
            batch.newestIssuedAt = newest
            decryptQueue.put(batch)
        }
    }

    private let decryptors = DecryptorPool()

    private func decrypt(_ batch: inout WorkBatch) {
        batch.decrypt(using: decryptors, concurrency: configuration.concurrency)
        if configuration.parks { batch.park(reasons: configuration.parkReasons) }
        // Jobs failing bad_padding now (not parked) ask checksession first, beside the batch.
        let checks = batch.takeSessionChecks { [exchanger] in exchanger.hasSecret(for: $0) }
        if !checks.isEmpty {
            exchangeStage.submit(.init(jobs: checks, fetchedAt: batch.fetchedAt, fetchedDate: batch.fetchedDate))
        }
        guard !batch.jobs.isEmpty else { return }
        persistQueues[batch.lane].put(.write(batch))
    }

    private func persist(_ batch: WorkBatch, _ database: DecryptdDatabase) throws {
        var outcome = BatchOutcome(
            fresh: batch.jobs,
            deadLetters: .init(topic: configuration.deadLetterTopic, group: configuration.group, failedAt: DeadLetter.rfc3339(Date())),
            parkTimeout: configuration.parkTimeout, outcomesTopic: configuration.outcomesTopic
        )
        outcome.rows.exchanges = batch.exchanges
        // The dead letters and the outcome statement are independent; both must be durable before
        // the offsets are completed. The produce does not block: whichever of the two finishes
        // last completes the batch, and the slot moves on to its next batch meanwhile. Outcome
        // records announce what is durable, so they are sent after the statement, as its part.
        let done = Rendezvous(parts: outcome.deadLetters.isEmpty ? 1 : 2, payload: batch)
        if !outcome.deadLetters.isEmpty {
            deadLetters.send(outcome.deadLetters) { [self] in deadLettersDone(done) }
        }
        _ = try retryingDatabaseWork("outcome write") { try database.write(outcome.rows) }
        if !outcome.rows.parked.isEmpty { parkedJobs?.recheck(outcome.rows.parked.lazy.map(\.user)) }
        if !outcome.announcements.isEmpty {
            let counts = OutcomeTally(batch.jobs).counts
            deadLetters.send(outcome.announcements) { [self] in
                for (name, count) in counts {
                    let status: OutcomeRecord.Status = name == "ok" ? .ok : name == "parked" ? .parked : .failed
                    metrics.announced[status]?.increment(by: count)
                }
                deadLettersDone(done)
            }
        } else if let batch = done.arrive() {
            complete(batch)
        }
    }

    /// Both the outcome and the dead letters of `batch` are durable: its offsets may be stored.
    private func complete(_ batch: WorkBatch) {
        consumer.complete(batch.jobs.withUnsafeBufferPointer { jobs in jobs.indices.map { jobs[$0].message.id } })
        batch.releaseLeases()
        record(batch)
    }

    /// When the dead letters are the last part of a batch to become durable, the batch goes back
    /// to its persist slot to be completed there, ahead of the slot's queued writes: the thread
    /// that serves delivery reports must stay free, and completing costs as much as a batch has
    /// jobs (offsets, metrics, freeing the batch).
    private func deadLettersDone(_ done: Rendezvous<WorkBatch>) {
        if let batch = done.arrive() { persistQueues[batch.lane].putFirst(.complete(batch)) }
    }

    /// PostgreSQL work, with backoff until it succeeds (its retries count as PostgreSQL's).
    private func retryingDatabaseWork<R>(_ what: String, _ body: () throws -> R) throws -> R {
        try backoff.run(
            what, logger: logger, stop: abandon,
            onRetry: {
                metrics.postgresRetries.increment()
                stats.retriedPostgres()
            }, body)
    }

    private func record(_ batch: WorkBatch) {
        let tally = OutcomeTally(batch.jobs)
        for (outcome, count) in tally.counts { metrics.jobs[outcome]?.increment(by: count) }
        if tally.fallbacks > 0 { metrics.fallbacks.increment(by: tally.fallbacks) }
        for (kind, count) in tally.repairs.enumerated() where count > 0 { metrics.repairs[kind].1.increment(by: count) }
        metrics.batchDuration.recordNanoseconds(Int64(DispatchTime.now().uptimeNanoseconds - batch.fetchedAt.uptimeNanoseconds))
        stats.add(tally.counts, kinds: tally.kinds, fetchedAt: batch.fetchedDate)
    }
}

/// What a persist slot does: write a batch's outcome, or complete a batch it wrote earlier whose
/// dead letters have since been acknowledged.
private enum PersistWork: Sendable {
    case write(WorkBatch)
    case complete(WorkBatch)
}
