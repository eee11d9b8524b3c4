import DeadLetterFormat
import DecryptdStore
public import Foundation
import KafkaClient
import LogKeys
public import Logging
import PhoneDecryption

/// `decryptd reprocess`: replays the dead-letter topic from the reprocess group's position up to
/// its end as of start, with fresh session-key lookups. Successes are upserted (the newest-watermark
/// rule still holds) and resolve their failure row; failures are dead-lettered again with
/// `decrypt.attempts` + 1 and their original `decrypt.source.*` headers. Records produced while it
/// runs (including its own re-dead-letters) are left for the next run.
///
/// With `reasons`, other records are passed over: the group's position moves past them (replay them
/// later with a fresh group). Records at `maxAttempts` are skipped and counted. A dry run reads,
/// decrypts and counts, but writes, produces and commits nothing.
/// Runs on one thread (``run(partitions:)``, once); its ``stopRequest`` may be made from any other.
/// Its database connection is made by `run` on that thread and never leaves it.
public final class Reprocessor: Sendable {
    public struct Options: Sendable {
        public var group = "decryptd-reprocess"
        public var reasons: Set<String> = []
        public var dryRun = false
        public var maxAttempts = 5
        public init() {}
    }

    /// Per original reason: what happened to its records.
    public struct Counts: Sendable, Hashable {
        public var replayed = 0
        public var recovered = 0
        public var failedAgain = 0
        public var skipped = 0

        public init(replayed: Int = 0, recovered: Int = 0, failedAgain: Int = 0, skipped: Int = 0) {
            (self.replayed, self.recovered, self.failedAgain, self.skipped) = (replayed, recovered, failedAgain, skipped)
        }
    }

    public struct Summary: Sendable {
        public var byReason: [String: Counts] = [:]
        public var dryRun = false
        /// Stopped on request before the end: what was replayed is committed, the rest is left
        /// for the next run of the group.
        public var stoppedEarly = false
        public var total: Counts {
            byReason.values.reduce(into: Counts()) {
                $0.replayed += $1.replayed
                $0.recovered += $1.recovered
                $0.failedAgain += $1.failedAgain
                $0.skipped += $1.skipped
            }
        }
    }

    private let configuration: WorkerConfiguration
    private let options: Options
    private let logger: Logger
    private let consumer: KafkaConsumer
    private let producer: KafkaProducer
    private let databaseURL: String
    private let decryptors = DecryptorPool()
    private let backoff: Backoff
    private let deadLetters: DeadLetterSender
    /// Request it from any thread (a signal handler) to end ``run(partitions:timeout:)`` early.
    public let stopRequest = StopRequest()

    public init(configuration: WorkerConfiguration, options: Options, logger: Logger) throws {
        self.configuration = configuration
        self.options = options
        self.logger = logger
        backoff = Backoff(maximumDelay: configuration.maxRetryDelay)
        var consumerConfiguration = configuration.consumerConfiguration(group: options.group, topic: configuration.deadLetterTopic)
        consumerConfiguration.revokeDrainTimeout = 1  // only records past the end are ever left unfinished
        consumer = try KafkaConsumer(configuration: consumerConfiguration, logger: logger)
        producer = try KafkaProducer(configuration: configuration.producerConfiguration, logger: logger)
        _ = try DecryptdDatabase(url: configuration.databaseURL)  // the URL is checked here; run connects
        databaseURL = configuration.databaseURL
        deadLetters = DeadLetterSender(transport: producer, backoff: backoff, logger: logger, stop: stopRequest)
    }

    /// Runs to the end as of start. `partitions` is the dead-letter topic's partition count. Once
    /// ``stopRequest`` is made, the batch under way is finished (a transient error it meets is no longer
    /// retried, and the batch is then not committed), what was replayed is committed, and the run
    /// returns early.
    public func run(partitions: Int, timeout: TimeInterval = 600) throws -> Summary {
        let database = try DecryptdDatabase(url: databaseURL)
        producer.start()
        defer { producer.close(timeout: 10) }
        producer.prepare(topic: configuration.deadLetterTopic, timeout: 10)  // see Worker.run
        let ends = try consumer.highWatermarks(topic: configuration.deadLetterTopic, partitions: partitions, timeout: 10)
        logger.info("reprocessing up to the end as of now", metadata: [LogKey.recordsAtMost: "\(ends.values.reduce(0, +))"])
        var summary = Summary(dryRun: options.dryRun)
        var lastDelivered: [Int32: Int64] = [:]
        let deadline = Date(timeIntervalSinceNow: timeout)
        func finished() -> Bool {
            let assigned = consumer.assignment
            guard assigned.count == partitions else { return false }
            let atEnd = consumer.partitionsAtEnd
            return assigned.allSatisfy { partition in
                let end = ends[partition.partition] ?? 0
                return end == 0 || atEnd.contains(partition) || (lastDelivered[partition.partition] ?? -1) >= end - 1
            }
        }
        while !finished() {
            if stopRequest.isRequested {
                summary.stoppedEarly = true
                break
            }
            guard Date() < deadline else { throw ReprocessTimeout() }
            let messages = try consumer.poll(maxMessages: configuration.batchSize, timeout: 0.2)
            for message in messages { lastDelivered[message.partition] = max(lastDelivered[message.partition] ?? -1, message.offset) }
            // Records past the end as of start stay unfinished, so they are not committed.
            let replayable = messages.filter { $0.offset < (ends[$0.partition] ?? 0) }
            if !replayable.isEmpty { try replay(replayable, into: &summary, database) }
        }
        consumer.close()
        return summary
    }

    public struct ReprocessTimeout: Error, CustomStringConvertible {
        public var description: String { "reprocessing did not reach the end in time (another member of the group may hold partitions)" }
    }

    // MARK: - One batch

    private func replay(_ messages: [KafkaMessage], into summary: inout Summary, _ database: DecryptdDatabase) throws {
        var batch = WorkBatch()
        var origins: [BatchOutcome.Origin] = []
        var reasons: [String] = []
        var passedOver: [KafkaMessageID] = []
        for message in messages {
            // Anything but a known code (another tool's record, a damaged header) counts as
            // "unknown": the summary prints it, and no --reason filter can name it.
            let reason =
                DeadLetter.header(DeadLetter.reason, in: message.headers).flatMap(FailureReason.init(rawValue:))?.rawValue ?? "unknown"
            let attempt = Int(DeadLetter.header(DeadLetter.attempts, in: message.headers) ?? "") ?? 1
            if (!options.reasons.isEmpty && !options.reasons.contains(reason)) || attempt >= options.maxAttempts {
                summary.byReason[reason, default: Counts()].skipped += 1
                passedOver.append(message.id)
                continue
            }
            let job = PendingJob(message, appids: configuration.appids)
            // A code job's code has expired by now (and may be spent): it cannot be recovered (SPEC).
            if case .code = job.payload {
                summary.byReason[reason, default: Counts()].skipped += 1
                passedOver.append(message.id)
                continue
            }
            batch.jobs.append(job)
            origins.append(BatchOutcome.Origin(source: DeadLetter.source(of: message), attempts: attempt))
            reasons.append(reason)
        }
        var slots = UserSlots(capacity: batch.jobs.count)
        batch.assignKeySlots(&slots)
        let users = slots.users
        if !users.isEmpty {
            batch.sessionKeys = try backoff.run("session lookup", logger: logger, stop: stopRequest) {
                try database.sessionKeys(forDistinct: users, limit: configuration.maxSessionKeys)
            }
        }
        batch.decrypt(using: decryptors, concurrency: configuration.concurrency)

        for (index, job) in batch.jobs.enumerated() {
            var counts = summary.byReason[reasons[index], default: Counts()]
            counts.replayed += 1
            if case .failure = job.outcome! { counts.failedAgain += 1 } else { counts.recovered += 1 }
            summary.byReason[reasons[index]] = counts
        }
        guard !options.dryRun else { return }
        let outcome = BatchOutcome(
            replayed: batch.jobs, origins: origins,
            deadLetters: .init(topic: configuration.deadLetterTopic, group: options.group, failedAt: DeadLetter.rfc3339(Date()))
        )
        try deadLetters.sendAll(outcome.deadLetters)
        _ = try backoff.run("outcome write", logger: logger, stop: stopRequest) { try database.write(outcome.rows) }
        consumer.complete(batch.jobs.map(\.message.id) + passedOver)
    }
}
