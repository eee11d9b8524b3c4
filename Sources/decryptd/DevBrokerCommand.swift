import ArgumentParser
import Dispatch
import Foundation
import KafkaClient
import Logging

/// `decryptd dev-broker`: an embedded Kafka-protocol cluster for local runs and tests.
struct DevBrokerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dev-broker",
        abstract: "Run an embedded Kafka broker (librdkafka's mock cluster) until SIGINT or SIGTERM.",
        discussion: """
            Prints the bootstrap address alone on the first line of stdout, for scripts (read that line; \
            the process keeps running). The mock keeps about 5 MB per partition: give large loads more partitions. \
            It is a real Kafka protocol server on loopback, with consumer groups and headers, but keeps \
            everything in memory and is gone when it stops.
            """
    )

    @Option(parsing: .unconditional, help: "Number of brokers. Env: DECRYPTD_DEV_BROKERS. Default: 1.")
    var brokers: Int32?

    @Option(
        name: .customLong("topic"),
        help: ArgumentHelp(
            "A topic to create, NAME or NAME:PARTITIONS (repeatable). Env: DECRYPTD_DEV_TOPICS, comma-separated. Default: wechat.phone.jobs:8, wechat.phone.dlq:2.",
            valueName: "name[:partitions]"
        ))
    var topics: [String] = []

    /// The brokers and topics to start, from the flags or the environment.
    func plan() throws -> (brokers: Int32, topics: [(name: String, partitions: Int32)]) {
        let count = try brokers.map(Int.init) ?? Environment.integer("DECRYPTD_DEV_BROKERS") ?? 1
        guard (1...16).contains(count) else { throw CommandError.usage("--brokers must be 1 to 16") }
        var specs = topics.isEmpty ? Environment.list("DECRYPTD_DEV_TOPICS") : topics
        if specs.isEmpty { specs = ["wechat.phone.jobs:8", "wechat.phone.dlq:2"] }
        return (Int32(count), try specs.map(Self.parse))
    }

    static func parse(_ spec: String) throws -> (name: String, partitions: Int32) {
        let parts = spec.split(separator: ":", omittingEmptySubsequences: false)
        guard let name = parts.first, !name.isEmpty, parts.count <= 2 else {
            throw CommandError.usage("bad --topic \(spec): use NAME or NAME:PARTITIONS")
        }
        guard parts.count == 2 else { return (String(name), 1) }
        guard let count = Int32(parts[1]), (1...1000).contains(count) else {
            throw CommandError.usage("bad --topic \(spec): partitions must be 1 to 1000")
        }
        return (String(name), count)
    }

    func run() async throws {
        let plan = try plan()
        let cluster: KafkaMockCluster
        do {
            cluster = try KafkaMockCluster(brokers: plan.brokers)
            for topic in plan.topics {
                try cluster.createTopic(topic.name, partitions: topic.partitions)
            }
        } catch {
            throw CommandError.failure("could not start the embedded broker", cause: error)
        }
        let topicList = plan.topics.map { "\($0.name):\($0.partitions)" }.joined(separator: ", ")
        FileHandle.standardOutput.write(Data((cluster.bootstrapServers + "\n").utf8))
        FileHandle.standardError.write(
            Data("dev-broker: \(plan.brokers) broker(s) at \(cluster.bootstrapServers), topics \(topicList); Ctrl-C stops it\n".utf8))
        try await Lifecycle.serveUntilSignalled(logger: Logger(label: "dev-broker")) { withExtendedLifetime(cluster) {} }
        FileHandle.standardError.write(Data("dev-broker: stopped\n".utf8))
    }
}
