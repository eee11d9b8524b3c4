public import Foundation
public import Logging
import KafkaClient

/// What a run did, for the final log line and for `--exit-at-end` callers.
public struct WorkerSummary: Sendable {
    /// Jobs by outcome ("ok" or a failure code), counted when durable.
    public var outcomes: [String: Int]
    public var elapsed: TimeInterval
    /// Stopped because every partition was drained (batch mode).
    public var drained: Bool
    /// Jobs left unfinished at shutdown (uncommitted: they will be redelivered).
    public var abandoned: Int

    public var total: Int { outcomes.values.reduce(0, +) }
    public var perSecond: Double { elapsed > 0 ? Double(total) / elapsed : 0 }

    public var metadata: Logger.Metadata {
        var metadata: Logger.Metadata = [
            "jobs": "\(total)", "jobs_per_s": "\(Int(perSecond))", "seconds": "\(Int(elapsed))",
            "drained": "\(drained)", "abandoned": "\(abandoned)",
        ]
        for (outcome, count) in outcomes { metadata["outcome.\(outcome)"] = "\(count)" }
        return metadata
    }
}

/// Counts by outcome, shared by the persist stage (writer) and the reporters (readers).
final class WorkerStats: @unchecked Sendable {
    private let lock = NSLock()
    private var outcomes: [String: Int] = [:]

    func add(_ counts: [String: Int]) {
        lock.lock(); defer { lock.unlock() }
        for (outcome, count) in counts { outcomes[outcome, default: 0] += count }
    }

    var snapshot: [String: Int] { lock.lock(); defer { lock.unlock() }; return outcomes }

    func summary(since start: Date, drained: Bool, abandoned: Int) -> WorkerSummary {
        WorkerSummary(outcomes: snapshot, elapsed: Date().timeIntervalSince(start), drained: drained, abandoned: abandoned)
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

    func tick(inFlight: Int, lag: @autoclosure () -> [TopicPartition: Int64], metrics: WorkerMetrics) {
        let now = Date()
        guard now.timeIntervalSince(last) >= max(interval, 1) else { return }
        let lags = lag()
        for (partition, value) in lags { metrics.lag(topic: partition.topic, partition: partition.partition).record(value) }
        guard interval > 0 else { return }
        let outcomes = stats.snapshot
        let total = outcomes.values.reduce(0, +)
        let rate = Double(total - lastTotal) / now.timeIntervalSince(last)
        (last, lastTotal) = (now, total)
        var metadata: Logger.Metadata = [
            "jobs_per_s": "\(Int(rate))", "jobs": "\(total)", "in_flight": "\(inFlight)",
            "lag": "\(lags.values.reduce(0, +))",
        ]
        for (outcome, count) in outcomes.sorted(by: { $0.key < $1.key }) { metadata["outcome.\(outcome)"] = "\(count)" }
        logger.info("progress", metadata: metadata)
    }
}
