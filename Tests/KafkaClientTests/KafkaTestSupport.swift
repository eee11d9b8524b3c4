import DecryptdTestSupport
import Foundation
import Logging
import Testing

@testable import KafkaClient

let testLogger: Logger = {
    var logger = Logger(label: "decryptd.kafka.test")
    logger.logLevel = ProcessInfo.processInfo.environment["DECRYPTD_TEST_KAFKA_LOG"] == nil ? .critical : .debug
    return logger
}()

/// A thread-safe bag of what tests observed.
final class Observed: @unchecked Sendable {
    private let lock = NSLock()
    private var ids: [KafkaMessageID] = []
    private var messages: [KafkaMessageID: KafkaMessage] = [:]

    func record(_ message: KafkaMessage) {
        lock.lock()
        defer { lock.unlock() }
        ids.append(message.id)
        messages[message.id] = message
    }

    var all: [KafkaMessageID] {
        lock.lock()
        defer { lock.unlock() }
        return ids
    }
    func message(_ id: KafkaMessageID) -> KafkaMessage? {
        lock.lock()
        defer { lock.unlock() }
        return messages[id]
    }
}

/// Runs a consumer as the worker does: a dedicated polling thread, and a separate queue that
/// "processes" each batch and completes its messages out of order, a little later.
final class ConsumerRunner: @unchecked Sendable {
    let consumer: KafkaConsumer
    let processed = Observed()
    private let lock = NSLock()
    private var stopRequested = false
    private var finished = false
    private var skip: @Sendable (KafkaMessageID) -> Bool
    private let worker = DispatchQueue(label: "test.worker")
    private var thread: Thread?

    /// `skip` leaves chosen messages unfinished forever (to test what is committed).
    init(_ configuration: KafkaConsumer.Configuration, skip: @escaping @Sendable (KafkaMessageID) -> Bool = { _ in false }) throws {
        consumer = try KafkaConsumer(configuration: configuration, logger: testLogger)
        self.skip = skip
    }

    func start(stopWhenDrained: Bool = false) {
        let thread = Thread { [self] in
            while !shouldStop {
                guard let batch = try? consumer.poll(maxMessages: 200, timeout: 0.1) else { break }
                if !batch.isEmpty {
                    let consumer = self.consumer
                    let skip = self.skip
                    let processed = self.processed
                    worker.async {
                        usleep(UInt32.random(in: 0...2000))
                        for message in batch { processed.record(message) }
                        consumer.complete(batch.map(\.id).filter { !skip($0) }.shuffled())
                    }
                }
                if stopWhenDrained, consumer.isDrained { break }
            }
            worker.sync {}
            consumer.close()
            lock.lock()
            finished = true
            lock.unlock()
        }
        thread.name = "test-consumer"
        self.thread = thread
        thread.start()
    }

    private var shouldStop: Bool {
        lock.lock()
        defer { lock.unlock() }
        return stopRequested
    }
    var isFinished: Bool {
        lock.lock()
        defer { lock.unlock() }
        return finished
    }

    /// Asks the consumer to leave (close commits and revokes) and waits for it.
    func stop(timeout: TimeInterval = 60) throws {
        lock.lock()
        stopRequested = true
        lock.unlock()
        try waitUntil(timeout: timeout) { self.isFinished }
    }

    func waitUntilFinished(timeout: TimeInterval = 60) throws {
        try waitUntil(timeout: timeout) { self.isFinished }
    }
}

func consumerConfiguration(_ cluster: KafkaMockCluster, group: String, topic: String, strategy: String = "cooperative-sticky")
    -> KafkaConsumer.Configuration
{
    var configuration = KafkaConsumer.Configuration(bootstrapServers: cluster.bootstrapServers, groupID: group, topics: [topic])
    configuration.assignmentStrategy = strategy
    configuration.revokeDrainTimeout = 10
    configuration.commitInterval = 0.2
    configuration.properties = ["session.timeout.ms": "6000", "heartbeat.interval.ms": "300", "topic.metadata.refresh.interval.ms": "1000"]
    return configuration
}

func startedProducer(_ cluster: KafkaMockCluster, messageTimeout: TimeInterval = 30) throws -> KafkaProducer {
    var configuration = KafkaProducer.Configuration(bootstrapServers: cluster.bootstrapServers)
    configuration.messageTimeout = messageTimeout
    let producer = try KafkaProducer(configuration: configuration, logger: testLogger)
    producer.start()
    return producer
}

/// An embedded broker whose `topic` holds `count` acknowledged ``records(_:count:from:)``.
func cluster(holding count: Int, in topic: String, partitions: Int32) throws -> KafkaMockCluster {
    let cluster = try KafkaMockCluster(brokers: 1)
    try cluster.createTopic(topic, partitions: partitions)
    let producer = try startedProducer(cluster)
    defer { producer.close() }
    for result in producer.send(records(topic, count: count)) { _ = try result.get() }
    return cluster
}

func records(_ topic: String, count: Int, from start: Int = 0) -> [KafkaRecord] {
    (start..<start + count).map { index in
        KafkaRecord(
            topic: topic, key: Array("user-\(index % 97)".utf8), value: Array("job-\(index)".utf8),
            headers: [KafkaHeader("trace", "t-\(index)"), KafkaHeader("empty", nil as [UInt8]?)]
        )
    }
}

/// The value of every record, to compare what was consumed against what was produced.
func values(_ ids: [KafkaMessageID], _ observed: Observed) -> [String] {
    ids.compactMap { observed.message($0)?.value.map { String(decoding: $0, as: UTF8.self) } }
}
