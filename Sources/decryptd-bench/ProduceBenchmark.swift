import ArgumentParser
import Dispatch
import Foundation
import KafkaClient
import Locks
import Logging

/// `decryptd-bench produce`: acknowledged records/s and acknowledgement latency of the producer
/// as the worker uses it for dead letters (idempotent, each send waits for every report).
struct ProduceBenchmark: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "produce",
        abstract: "Acknowledged records/s and send latency of the idempotent producer."
    )

    @Option(help: "Bootstrap servers, host:port[,...].")
    var brokers: String

    @Option(help: "The topic to write to (it grows by --records records).")
    var topic = "wechat.phone.dlq"

    @Option(help: "Records in all.")
    var records = 20_000

    @Option(help: "Records per send.")
    var batch = 100

    @Option(help: "Milliseconds between sends that do not wait for each other; 0: each send waits for its acknowledgements.")
    var interval = 0.0

    @Option(help: "Bytes per record value.")
    var size = 600

    @Option(name: .customLong("kafka-property"), help: "A librdkafka property, key=value (repeatable).")
    var properties: [String] = []

    func run() throws {
        var configuration = KafkaProducer.Configuration(bootstrapServers: brokers)
        for property in properties {
            guard let equals = property.firstIndex(of: "=") else { throw ValidationError("bad --kafka-property \(property)") }
            configuration.properties[String(property[..<equals])] = String(property[property.index(after: equals)...])
        }
        var logger = Logger(label: "decryptd-bench")
        logger.logLevel = .warning
        let producer = try KafkaProducer(configuration: configuration, logger: logger)
        producer.start()
        defer { producer.close(timeout: 10) }
        _ = try producer.send(KafkaRecord(topic: topic, key: nil, value: [0])).get()  // connect first
        let value = [UInt8](repeating: UInt8(ascii: "x"), count: size)
        let latencies = Mutex<[Double]>([])
        let started = DispatchTime.now().uptimeNanoseconds
        let group = DispatchGroup()
        for start in stride(from: 0, to: records, by: batch) {
            let chunk = (start..<min(records, start + batch)).map { KafkaRecord(topic: topic, key: Array("k\($0)".utf8), value: value) }
            let t0 = DispatchTime.now().uptimeNanoseconds
            if interval > 0 {
                // Sends at a steady pace without waiting for each other, as the worker's dead letters go.
                group.enter()
                producer.send(chunk) { results in
                    precondition(results.allSatisfy { if case .success = $0 { true } else { false } }, "a record was not acknowledged")
                    let latency = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6
                    latencies.withLock { $0.append(latency) }
                    group.leave()
                }
                Thread.sleep(forTimeInterval: interval / 1000)  // intentional: paces the sends at the rate measured
            } else {
                for result in producer.send(chunk) { _ = try result.get() }
                let latency = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6
                latencies.withLock { $0.append(latency) }
            }
        }
        group.wait()
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
        let sorted = latencies.withLock { $0.sorted() }
        let median = sorted[sorted.count / 2]
        let p99 = sorted[min(sorted.count - 1, sorted.count * 99 / 100)]
        print(
            "produced \(records) records in sends of \(batch): \(Int(Double(records) / seconds)) records/s, send latency median \(String(format: "%.1f", median)) ms, p99 \(String(format: "%.1f", p99)) ms"
        )
    }
}
