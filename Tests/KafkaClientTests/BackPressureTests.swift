import DecryptdTestSupport
import Foundation
import Testing

@testable import KafkaClient

/// The consumer's in-flight limit and the producer's non-blocking send, against the embedded broker.
@Suite("Back-pressure and asynchronous acknowledgements", .serialized, .ownThread(minutes: 3))
struct BackPressureTests {
    @Test("at the limit nothing more is handed out; only a stall longer than pauseAfter pauses; finishing work resumes")
    func inFlightLimit() throws {
        let cluster = try cluster(holding: 3000, in: "jobs", partitions: 4)

        var configuration = consumerConfiguration(cluster, group: "g", topic: "jobs")
        configuration.maxInFlight = 500
        configuration.pauseAfter = 1
        let consumer = try KafkaConsumer(configuration: configuration, logger: testLogger)
        var delivered: [KafkaMessageID] = []
        func poll(for seconds: TimeInterval) throws {
            let deadline = Date(timeIntervalSinceNow: seconds)
            while Date() < deadline { delivered += try consumer.poll(maxMessages: 100, timeout: 0.05).map(\.id) }
        }

        // Nothing is completed: deliveries stop at the limit (plus at most one poll's worth).
        try waitUntil(timeout: 30) {
            delivered += try consumer.poll(maxMessages: 100, timeout: 0.05).map(\.id)
            return consumer.inFlight >= 500
        }
        try poll(for: 0.3)
        #expect(delivered.count < 600)
        #expect(consumer.inFlight == delivered.count)
        #expect(!consumer.isFetchPaused, "a short stall only holds deliveries back")
        try poll(for: 1.2)
        #expect(consumer.isFetchPaused, "a stall longer than pauseAfter pauses the partitions")
        #expect(delivered.count < 600)

        // Finishing the work resumes fetching; everything arrives, once.
        while Set(delivered).count < 3000 {
            consumer.complete(delivered.suffix(consumer.inFlight))
            let before = delivered.count
            try poll(for: 0.1)
            #expect(delivered.count - before <= 600)
            if delivered.count == before, consumer.isDrained { break }
        }
        #expect(!consumer.isFetchPaused)
        #expect(delivered.count == 3000)
        #expect(Set(delivered).count == 3000)
        consumer.close()
    }

    @Test("a consumer dropped without close leaves the group uncommitted; the next member gets everything again")
    func dropWithoutClose() throws {
        let cluster = try cluster(holding: 200, in: "jobs", partitions: 2)

        var configuration = consumerConfiguration(cluster, group: "g", topic: "jobs")
        configuration.commitInterval = .infinity
        do {
            let first = try KafkaConsumer(configuration: configuration, logger: testLogger)
            var seen = 0
            try waitUntil(timeout: 30) {
                let batch = try first.poll(maxMessages: 50, timeout: 0.05)
                first.complete(batch.map(\.id))
                seen += batch.count
                return seen >= 100
            }
        }  // deinit: leaves the group from inside librdkafka's rebalance callback

        let runner = try ConsumerRunner(consumerConfiguration(cluster, group: "g", topic: "jobs"))
        runner.start(stopWhenDrained: true)
        try runner.waitUntilFinished(timeout: 60)
        #expect(Set(runner.processed.all).count == 200)
    }

    @Test("send with a completion reports every record, in order, once; an empty send completes at once")
    func asynchronousSend() throws {
        let cluster = try KafkaMockCluster(brokers: 1)
        try cluster.createTopic("letters", partitions: 3)
        try cluster.createTopic("other", partitions: 1)
        let producer = try startedProducer(cluster)
        let done = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var results: [[Result<KafkaMessageID, KafkaError>]] = []
        let lock = NSLock()
        for chunk in 0..<5 {
            producer.send(records("letters", count: 40, from: chunk * 40)) { batch in
                lock.lock()
                results.append(batch)
                lock.unlock()
                done.signal()
            }
        }
        producer.send([]) { batch in
            #expect(batch.isEmpty)
            done.signal()
        }
        for _ in 0..<6 { #expect(done.wait(timeout: .now() + 30) == .success) }
        #expect(done.wait(timeout: .now() + 0.5) == .timedOut, "each completion runs once")
        lock.lock()
        let all = results
        lock.unlock()
        #expect(all.count == 5, "the empty send reports nothing to collect")
        let ids = all.flatMap { $0 }.compactMap { try? $0.get() }
        #expect(ids.count == 200)
        #expect(Set(ids).count == 200)
        // Per partition the offsets follow the order of the records in each send.
        for batch in all where !batch.isEmpty {
            let byPartition = Dictionary(grouping: batch.compactMap { try? $0.get() }, by: \.partition)
            for offsets in byPartition.values.map({ $0.map(\.offset) }) { #expect(offsets == offsets.sorted()) }
        }
        producer.close()
    }
}
