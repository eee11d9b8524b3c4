import ArgumentParser
import Dispatch
import Foundation
import KafkaClient
import Logging

/// `decryptd-bench consume`: how fast the consumer alone hands out a topic's messages (each batch
/// completed at once, no parsing): the ceiling the Kafka side puts on `decryptd run`.
struct ConsumeBenchmark: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "consume",
        abstract: "Messages/s of the consumer alone, reading a topic to its end in a fresh group (nothing is committed)."
    )

    @Option(help: "Bootstrap servers, host:port[,...].")
    var brokers: String

    @Option(help: "The topic to read.")
    var topic = "wechat.phone.jobs"

    @Option(help: "Messages per poll.")
    var batch = 1000

    @Option(name: .customLong("property"), help: "A librdkafka consumer property, key=value (repeatable).")
    var properties: [String] = []

    @Flag(help: "Print one JSON line instead of text.")
    var json = false

    func run() throws {
        var configuration = KafkaConsumer.Configuration(
            bootstrapServers: brokers, groupID: "decryptd-bench-\(UInt32.random(in: 0...UInt32.max))", topics: [topic]
        )
        configuration.commitInterval = .infinity
        for property in properties {
            guard let setting = KafkaPropertySetting.parse(property) else {
                throw ValidationError("--property takes key=value, got \(property)")
            }
            configuration.properties[setting.key] = setting.value
        }
        var logger = Logger(label: "decryptd-bench")
        logger.logLevel = configuration.properties["debug"] == nil ? .warning : .debug
        let consumer = try KafkaConsumer(configuration: configuration, logger: logger)
        var messages = 0
        var bytes = 0
        var first: DispatchTime?
        let deadline = Date(timeIntervalSinceNow: 300)
        while Date() < deadline {
            let batch = try consumer.poll(maxMessages: self.batch, timeout: 0.2)
            if !batch.isEmpty, first == nil { first = .now() }
            messages += batch.count
            bytes += batch.reduce(0) { $0 + ($1.value?.count ?? 0) }
            consumer.complete(batch.map(\.id))
            if first != nil, consumer.isDrained { break }
        }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - (first ?? .now()).uptimeNanoseconds) / 1e9
        let perSecond = Int(Double(messages) / max(seconds, 1e-9))
        if json {
            print(#"{"messages":\#(messages),"messages_per_s":\#(perSecond),"megabytes_per_s":\#(Double(bytes) / seconds / 1e6)}"#)
        } else {
            print(
                "consumed \(messages) messages in \(String(format: "%.2f", seconds)) s: \(perSecond) messages/s, \(String(format: "%.1f", Double(bytes) / seconds / 1e6)) MB/s"
            )
        }
    }
}
