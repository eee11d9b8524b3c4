public import Foundation
import KafkaClient
import Locks
import LogKeys
public import Logging
public import PhoneDecryption

/// What a run did, for the final log line and for `--exit-at-end` callers.
public struct WorkerSummary: Sendable {
    /// Jobs by outcome ("ok" or a failure code), counted when durable.
    public var outcomes: [String: Int]
    public var elapsed: TimeInterval
    /// Stopped because every partition was drained (batch mode).
    public var drained: Bool
    /// Jobs left unfinished at shutdown (uncommitted: they will be redelivered).
    public var abandoned: Int
    /// From the first job fetched to the last outcome made durable (excludes joining the group
    /// and waiting at the end): the figure throughput is measured over.
    public var processingElapsed: TimeInterval
    /// The process's peak resident set size (VmHWM), in bytes; 0 where unknown.
    public var peakResidentBytes: Int
    /// Per job kind: how many were made durable, and when the last of them was, in seconds after
    /// the first job was fetched (a slow exchange must not hold up the encrypted jobs).
    public var kinds: [JobKind: (jobs: Int, lastDurable: TimeInterval)] = [:]
    /// Jobs that waited for their session key and ended during this run (by any worker's parking
    /// stage: this one's): healed (a member row), or failed (at their deadline, or for good).
    public var healed = 0
    public var expired = 0

    public var total: Int { outcomes.values.reduce(0, +) }
    /// Jobs per second over the processing window.
    public var perSecond: Double { processingElapsed > 0 ? Double(total) / processingElapsed : 0 }

    public var metadata: Logger.Metadata {
        var metadata: Logger.Metadata = [
            LogKey.jobs: "\(total)", LogKey.jobsPerS: "\(Int(perSecond))", LogKey.seconds: "\(Int(elapsed))",
            LogKey.drained: "\(drained)", LogKey.abandoned: "\(abandoned)", LogKey.peakRssMb: "\(peakResidentBytes >> 20)",
        ]
        for (outcome, count) in outcomes { metadata[LogKey.outcome(outcome)] = "\(count)" }
        if healed > 0 || expired > 0 { (metadata[LogKey.healed], metadata[LogKey.failed]) = ("\(healed)", "\(expired)") }
        return metadata
    }
}

/// Counts by outcome, shared by the persist stage (writer) and the reporters (readers).
final class WorkerStats: Sendable {
    private struct State {
        var outcomes: [String: Int] = [:]
        var firstFetch: Date?
        var lastDurable: Date?
        var kinds: [JobKind: (jobs: Int, lastDurable: Date)] = [:]
        var retried: (postgres: Int, kafka: Int) = (0, 0)
        var healed = 0
        var expired = 0
    }

    private let state = Mutex(State())

    /// One more retry of a retriable PostgreSQL or Kafka error.
    func retriedPostgres() { state.withLock { $0.retried.postgres += 1 } }
    func retriedKafka() { state.withLock { $0.retried.kafka += 1 } }
    var retries: (postgres: Int, kafka: Int) { state.withLock { $0.retried } }

    /// Parked jobs this worker ended: healed, or failed.
    func ended(healed: Int, expired: Int) {
        state.withLock {
            $0.healed += healed
            $0.expired += expired
        }
    }

    func add(_ counts: [String: Int], kinds batchKinds: [JobKind: Int] = [:], fetchedAt: Date) {
        let now = Date()
        state.withLock { state in
            for (outcome, count) in counts { state.outcomes[outcome, default: 0] += count }
            state.firstFetch = min(state.firstFetch ?? fetchedAt, fetchedAt)
            state.lastDurable = now
            for (kind, count) in batchKinds { state.kinds[kind] = ((state.kinds[kind]?.jobs ?? 0) + count, now) }
        }
    }

    var snapshot: [String: Int] { state.withLock { $0.outcomes } }

    func summary(since start: Date, drained: Bool, abandoned: Int) -> WorkerSummary {
        let peak = Self.peakResidentBytes()
        return state.withLock { state in
            let window = state.firstFetch.flatMap { first in state.lastDurable.map { $0.timeIntervalSince(first) } } ?? 0
            var summary = WorkerSummary(
                outcomes: state.outcomes, elapsed: Date().timeIntervalSince(start), drained: drained, abandoned: abandoned,
                processingElapsed: window, peakResidentBytes: peak
            )
            (summary.healed, summary.expired) = (state.healed, state.expired)
            if let firstFetch = state.firstFetch {
                summary.kinds = state.kinds.mapValues { ($0.jobs, $0.lastDurable.timeIntervalSince(firstFetch)) }
            }
            return summary
        }
    }

    /// VmHWM from /proc/self/status (Linux); 0 elsewhere.
    static func peakResidentBytes() -> Int {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
            let kilobytes = Int(line.split(separator: " ").dropFirst().first ?? "")
        else { return 0 }
        return kilobytes * 1024
    }
}

/// A progress line at a steady interval on long runs: rate, outcomes, in-flight, lag. Never a
/// key, plaintext, phone number or payload (it only sees counts). Also refreshes lag gauges.
final class ProgressReporter {
    private let interval: TimeInterval
    private let stats: WorkerStats
    private let logger: Logger
    private var last = Date()
    private var lastTotal = 0

    init(interval: TimeInterval, stats: WorkerStats, logger: Logger) {
        self.interval = interval
        self.stats = stats
        self.logger = logger
    }

    /// Partitions whose oldest-unfinished age was last reported above 0 (reported 0 once they have none).
    private var aged: Set<TopicPartition> = []

    func tick(
        inFlight: Int, lag: @autoclosure () -> [TopicPartition: Int64], oldestUnfinished: @autoclosure () -> [TopicPartition: Int64],
        metrics: WorkerMetrics
    ) {
        let now = Date()
        guard now.timeIntervalSince(last) >= max(interval, 1) else { return }
        let lags = lag()
        for (partition, value) in lags { metrics.lag(topic: partition.topic, partition: partition.partition).record(value) }
        let oldest = oldestUnfinished()
        for partition in aged.union(lags.keys).union(oldest.keys) {
            let age = oldest[partition].map { max(0, now.timeIntervalSince1970 - Double($0) / 1000) } ?? 0
            metrics.oldestUnfinishedAge(topic: partition.topic, partition: partition.partition).record(age)
            if age > 0 { aged.insert(partition) } else { aged.remove(partition) }
        }
        guard interval > 0 else { return }
        let outcomes = stats.snapshot
        let total = outcomes.values.reduce(0, +)
        let rate = Double(total - lastTotal) / now.timeIntervalSince(last)
        (last, lastTotal) = (now, total)
        var metadata: Logger.Metadata = [
            LogKey.jobsPerS: "\(Int(rate))", LogKey.jobs: "\(total)", LogKey.inFlight: "\(inFlight)",
            LogKey.lag: "\(lags.values.reduce(0, +))",
            LogKey.oldestUnfinishedS: "\(Int(oldest.values.min().map { max(0, now.timeIntervalSince1970 - Double($0) / 1000) } ?? 0))",
        ]
        for (outcome, count) in outcomes.sorted(by: { $0.key < $1.key }) { metadata[LogKey.outcome(outcome)] = "\(count)" }
        logger.info("progress", metadata: metadata)
    }
}
