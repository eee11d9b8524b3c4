import DeadLetterFormat
import Foundation
import KafkaClient
import Locks
import LogKeys
import Logging
import Retries

/// Where dead letters go: the producer, or a stand-in in tests.
protocol DeadLetterTransport: Sendable {
    /// Sends without waiting; `completion` gets one result per record, in order, once all are known.
    func send(_ records: [KafkaRecord], completion: @escaping @Sendable ([Result<KafkaMessageID, KafkaError>]) -> Void)
    /// Sends and waits for every result.
    func send(_ records: [KafkaRecord]) -> [Result<KafkaMessageID, KafkaError>]
}

extension KafkaProducer: DeadLetterTransport {}

/// Sends dead letters until each is acknowledged: the one place that sends, retries with backoff,
/// shrinks a record the topic refuses as too large (``DeadLetter/shrunk(_:)``) and says when a
/// batch's dead letters are all durable.
///
/// ``send(_:then:)`` does not block: the first attempt is asynchronous, records not acknowledged
/// go to a retry thread of the sender's own (started by ``start()``), which retries whatever has
/// queued up, together, as a ``Stage``. ``sendAll(_:)`` blocks (for `reprocess`). A permanent
/// failure on the retry stage goes to its `onError`, and `then` is never called for that batch, so
/// it is never committed.
final class DeadLetterSender: Sendable {
    private let transport: any DeadLetterTransport
    private let backoff: Backoff
    private let logger: Logger
    private let stop: StopRequest
    private let onRetry: @Sendable () -> Void
    private let retries = BlockingQueue<Retry>()
    private let retryStage = Mutex<Stage?>(nil)

    /// Records not acknowledged at the first attempt, and what to call once they are.
    private struct Retry: Sendable {
        var records: [KafkaRecord]
        var then: @Sendable () -> Void
    }

    init(
        transport: any DeadLetterTransport, backoff: Backoff, logger: Logger, stop: StopRequest,
        onRetry: @escaping @Sendable () -> Void = {}
    ) {
        self.transport = transport
        self.backoff = backoff
        self.logger = logger
        self.stop = stop
        self.onRetry = onRetry
    }

    /// Starts the retry stage (needed by ``send(_:then:)`` only); its permanent errors go to `onError`.
    func start(onError: @escaping @Sendable (_ error: any Error, _ stage: String) -> Void) {
        let take: @Sendable () -> [Retry]? = { [retries] in retries.takeAll() }
        let stage = Stage("decryptd-dead-letter-retry", take: take, abandon: stop, onError: onError) { [self] pending in
            try sendAll(pending.flatMap(\.records))
            for retry in pending { retry.then() }
        }
        retryStage.withLock { $0 = stage }
    }

    /// Stops the retry stage; what it still holds is abandoned (redelivered, dead-lettered again).
    func close() {
        retries.close()
        retryStage.withLock { $0 }?.join()
    }

    /// Sends `records` without waiting; calls `then` once all are acknowledged (at once for none).
    func send(_ records: [KafkaRecord], then: @escaping @Sendable () -> Void) {
        guard !records.isEmpty else { return then() }
        transport.send(records) { [self] results in
            let failed = zip(records, results).compactMap { record, result in
                if case .failure = result { return record } else { return nil }
            }
            if failed.isEmpty {
                then()
            } else {
                onRetry()
                retries.put(Retry(records: failed, then: then))
            }
        }
    }

    /// Sends `records` and waits until every one is acknowledged; retries only the records that
    /// failed retriably (the acknowledged ones are not sent twice). A record refused as too large
    /// is sent again at once without its value (then key, then original headers). Throws the
    /// first permanent error, or `Backoff.GaveUp` once a stop is requested.
    func sendAll(_ records: [KafkaRecord]) throws {
        var pending = records
        try backoff.run("dead-letter produce", logger: logger, stop: stop, onRetry: onRetry) {
            var firstError: KafkaError?
            while !pending.isEmpty {
                let results = transport.send(pending)
                var failed: [KafkaRecord] = []
                var shrunk = false
                firstError = nil
                for (record, result) in zip(pending, results) {
                    guard case .failure(let error) = result else { continue }
                    if error.isTooLarge, let smaller = DeadLetter.shrunk(record) {
                        logger.warning(
                            "dead letter too large for its topic: sending it without part of the original",
                            metadata: [
                                LogKey.omitted: "\(DeadLetter.header(DeadLetter.omitted, in: smaller.headers) ?? "")",
                                LogKey.source: "\(Self.source(of: record))",
                            ])
                        failed.append(smaller)
                        shrunk = true
                    } else {
                        failed.append(record)
                        if firstError == nil || !error.isRetriable { firstError = error }
                    }
                }
                pending = failed
                if !shrunk { break }
            }
            if let firstError { throw firstError }
        }
    }

    /// `topic/partition@offset` of a dead letter's original job, from its headers.
    private static func source(of record: KafkaRecord) -> String {
        let header = { (name: String) in DeadLetter.header(name, in: record.headers) ?? "" }
        return "\(header(DeadLetter.sourceTopic))/\(header(DeadLetter.sourcePartition))@\(header(DeadLetter.sourceOffset))"
    }
}
