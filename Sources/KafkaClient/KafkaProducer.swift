internal import CRDKafka
import DedicatedThread
public import Foundation
import LogKeys
public import Logging

/// An idempotent producer whose sends return only when the broker acknowledged every record
/// (its delivery report), or failed.
///
/// `enable.idempotence=true` (so `acks=all`, ordered retries without duplicates). A record that cannot
/// be acknowledged within `message.timeout.ms` fails with `_MSG_TIMED_OUT` (retriable): never a
/// silent success. A dedicated thread serves delivery reports; ``start()`` starts it, ``close()``
/// flushes and stops it.
///
/// `@unchecked Sendable`: `rd_kafka_produce` is thread-safe (librdkafka), and the producer's own
/// mutable state (the poll thread, whether it is closed) is only touched under its `state` condition.
public final class KafkaProducer: @unchecked Sendable {
    public struct Configuration: Sendable {
        public var bootstrapServers: String
        /// How long librdkafka keeps trying to deliver one record. Default: 30 s.
        public var messageTimeout: TimeInterval = 30
        /// Any librdkafka property (SASL, SSL, tuning); wins over the defaults above.
        public var properties: [String: String] = [:]

        public init(bootstrapServers: String) {
            self.bootstrapServers = bootstrapServers
        }

        func dictionary() -> [String: String] {
            var result = [
                "bootstrap.servers": bootstrapServers,
                "enable.idempotence": "true",
                "message.timeout.ms": String(Int(messageTimeout * 1000)),
                "linger.ms": "5",
                "client.id": "decryptd",
                "socket.timeout.ms": KafkaTimeouts.socket,
                "socket.connection.setup.timeout.ms": KafkaTimeouts.connectionSetup,
                "reconnect.backoff.ms": "100",
                "reconnect.backoff.max.ms": "2000",
            ]
            result.merge(KafkaPropertyScope.forProducer(properties)) { _, caller in caller }
            return result
        }
    }

    private let handle: RDKafkaHandle
    private let logger: Logger
    private let state = NSCondition()
    private var running = false
    private var pollThread: DedicatedThread?

    public init(configuration: Configuration, logger: Logger) throws(KafkaError) {
        self.logger = logger
        let context = RDKafkaCallbackContext(logger: logger)
        handle = try RDKafkaHandle(RD_KAFKA_PRODUCER, properties: configuration.dictionary(), context: context) { conf in
            rd_kafka_conf_set_dr_msg_cb(conf) { _, message, _ in
                guard let message, let opaque = message.pointee._private else { return }
                // The ticket was retained when the record was handed to librdkafka; take it back.
                let ticket = Unmanaged<DeliveryTicket>.fromOpaque(opaque).takeRetainedValue()
                let error = message.pointee.err
                if error == RD_KAFKA_RESP_ERR_NO_ERROR {
                    ticket.resolve(
                        .success(
                            KafkaMessageID(
                                topic: String(cString: rd_kafka_topic_name(message.pointee.rkt)),
                                partition: message.pointee.partition, offset: message.pointee.offset
                            )))
                } else {
                    ticket.resolve(.failure(KafkaError(error)))
                }
            }
        }
    }

    deinit {
        close(timeout: 5)
    }

    /// Starts the thread that serves delivery reports.
    public func start() {
        state.withLock {
            guard !running else { return }
            running = true
            let handle = self.handle
            pollThread = DedicatedThread(name: "decryptd-producer-poll") { [weak self] in
                while self?.isRunning ?? false {
                    rd_kafka_poll(handle.pointer, 100)
                }
            }
        }
    }

    private var isRunning: Bool { state.withLock { running } }

    /// Learns `topic`'s partitions and their leaders now, waiting at most `timeout` seconds, so
    /// that the first records sent to it do not wait while the producer looks them up (every batch
    /// finished meanwhile would wait for them; docs/performance.md has the figure). Returns whether
    /// the brokers answered in time; the
    /// producer looks the topic up on its own anyway when they did not.
    @discardableResult
    public func prepare(topic: String, timeout: TimeInterval) -> Bool {
        guard let handleOfTopic = rd_kafka_topic_new(handle.pointer, topic, nil) else { return false }
        defer { rd_kafka_topic_destroy(handleOfTopic) }
        var metadata: UnsafePointer<rd_kafka_metadata>?
        let status = rd_kafka_metadata(handle.pointer, 0, handleOfTopic, &metadata, Int32(timeout * 1000))
        if let metadata { rd_kafka_metadata_destroy(metadata) }
        return status == RD_KAFKA_RESP_ERR_NO_ERROR
    }

    /// Produces every record and waits for all delivery reports. One result per record, in order:
    /// where the broker stored it, or why it could not.
    public func send(_ records: [KafkaRecord]) -> [Result<KafkaMessageID, KafkaError>] {
        let batch = DeliveryBatch(count: records.count, completion: nil)
        enqueue(records, into: batch)
        return batch.wait()
    }

    /// Produces every record without waiting; `completion` gets one result per record, in order,
    /// once every delivery report is in. It runs on the thread that serves delivery reports (or
    /// on the caller's, when nothing could be handed to librdkafka): keep it short.
    public func send(_ records: [KafkaRecord], completion: @escaping @Sendable ([Result<KafkaMessageID, KafkaError>]) -> Void) {
        let batch = DeliveryBatch(count: records.count, completion: completion)
        enqueue(records, into: batch)
    }

    private func enqueue(_ records: [KafkaRecord], into batch: DeliveryBatch) {
        precondition(isRunning, "call start() before send()")
        if let fatal = handle.context.fatalError {
            for index in records.indices { batch.resolve(index, .failure(fatal)) }
            return
        }
        for (index, record) in records.enumerated() {
            let ticket = DeliveryTicket(batch: batch, index: index)
            let opaque = Unmanaged.passRetained(ticket).toOpaque()
            let status = produce(record, opaque: opaque)
            if status != RD_KAFKA_RESP_ERR_NO_ERROR {
                // librdkafka did not take the record: no delivery report will come.
                Unmanaged<DeliveryTicket>.fromOpaque(opaque).release()
                batch.resolve(index, .failure(KafkaError(status)))
            }
        }
    }

    /// Produces one record and waits for its delivery report.
    public func send(_ record: KafkaRecord) -> Result<KafkaMessageID, KafkaError> {
        send([record])[0]
    }

    private func produce(_ record: KafkaRecord, opaque: UnsafeMutableRawPointer) -> rd_kafka_resp_err_t {
        var headers: OpaquePointer?
        if !record.headers.isEmpty {
            headers = rd_kafka_headers_new(record.headers.count)
            for header in record.headers {
                if let value = header.value {
                    value.withUnsafeBytes { _ = rd_kafka_header_add(headers, header.name, -1, $0.baseAddress, $0.count) }
                } else {
                    _ = rd_kafka_header_add(headers, header.name, -1, nil, 0)
                }
            }
        }
        let partition = record.partition ?? CRDKafka_partitionUnassigned()
        let status = withOptionalBytes(record.key) { key in
            withOptionalBytes(record.value) { value in
                CRDKafka_produce(
                    handle.pointer, record.topic, partition,
                    key.baseAddress, key.count, value.baseAddress, value.count, headers, record.timestamp ?? 0, opaque)
            }
        }
        // On success librdkafka owns the headers; on failure they are still ours.
        if status != RD_KAFKA_RESP_ERR_NO_ERROR, let headers { rd_kafka_headers_destroy(headers) }
        return status
    }

    /// Waits for outstanding deliveries, then stops the poll thread.
    public func close(timeout: TimeInterval = 30) {
        guard isRunning else { return }
        let status = rd_kafka_flush(handle.pointer, Int32(timeout * 1000))
        if status != RD_KAFKA_RESP_ERR_NO_ERROR {
            logger.warning("producer closed with undelivered records", metadata: [LogKey.error: "\(KafkaError(status))"])
        }
        let thread = state.withLock {
            running = false
            return pollThread
        }
        thread?.join()
    }
}

/// The results of one `send` call, filled in by delivery reports on the poll thread.
/// `@unchecked Sendable`: `results` and `remaining` are only touched under `condition`.
private final class DeliveryBatch: @unchecked Sendable {
    private let condition = NSCondition()
    private var results: [Result<KafkaMessageID, KafkaError>?]
    private var remaining: Int
    private let completion: (@Sendable ([Result<KafkaMessageID, KafkaError>]) -> Void)?

    init(count: Int, completion: (@Sendable ([Result<KafkaMessageID, KafkaError>]) -> Void)?) {
        results = Array(repeating: nil, count: count)
        remaining = count
        self.completion = completion
        if count == 0 { completion?([]) }
    }

    func resolve(_ index: Int, _ result: Result<KafkaMessageID, KafkaError>) {
        let finished: [Result<KafkaMessageID, KafkaError>]? = condition.withLock {
            guard results[index] == nil else { return nil }
            results[index] = result
            remaining -= 1
            guard remaining == 0 else { return nil }
            condition.broadcast()
            return completion == nil ? nil : results.map { $0! }
        }
        if let finished { completion?(finished) }
    }

    func wait() -> [Result<KafkaMessageID, KafkaError>] {
        condition.withLock {
            while remaining > 0 { condition.wait() }
            return results.map { $0! }
        }
    }
}

/// One record's slot in a batch; its retained pointer is the record's `msg_opaque`.
private final class DeliveryTicket {
    let batch: DeliveryBatch
    let index: Int
    init(batch: DeliveryBatch, index: Int) {
        self.batch = batch
        self.index = index
    }
    func resolve(_ result: Result<KafkaMessageID, KafkaError>) { batch.resolve(index, result) }
}

private func withOptionalBytes<R>(_ bytes: [UInt8]?, _ body: (UnsafeRawBufferPointer) -> R) -> R {
    guard let bytes else { return body(UnsafeRawBufferPointer(start: nil, count: 0)) }
    return bytes.withUnsafeBytes(body)
}
