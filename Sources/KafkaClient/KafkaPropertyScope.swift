internal import CRDKafka
import Foundation

/// `--kafka-property` settings apply to the consumer and the producer alike; librdkafka warns
/// (CONFWARN) when a client gets one that only the other kind uses. The well-known single-scope
/// properties are routed to the client that uses them; everything else goes to both.
enum KafkaPropertyScope {
    static let consumerOnly: Set<String> = [
        "session.timeout.ms", "heartbeat.interval.ms", "max.poll.interval.ms", "auto.offset.reset",
        "fetch.min.bytes", "fetch.max.bytes", "fetch.wait.max.ms", "fetch.message.max.bytes",
        "fetch.error.backoff.ms", "queued.min.messages", "queued.max.messages.kbytes", "isolation.level",
        "partition.assignment.strategy", "group.instance.id", "group.protocol.type", "check.crcs",
        "coordinator.query.interval.ms", "auto.commit.interval.ms", "max.partition.fetch.bytes",
    ]
    static let producerOnly: Set<String> = [
        "acks", "request.required.acks", "linger.ms", "queue.buffering.max.ms", "queue.buffering.max.messages",
        "queue.buffering.max.kbytes", "batch.num.messages", "batch.size", "compression.type", "compression.codec",
        "message.timeout.ms", "delivery.timeout.ms", "retries", "message.send.max.retries", "retry.backoff.ms",
        "enable.idempotence", "partitioner", "sticky.partitioning.linger.ms", "transactional.id",
    ]

    static func forConsumer(_ properties: [String: String]) -> [String: String] {
        properties.filter { !producerOnly.contains($0.key) }
    }

    static func forProducer(_ properties: [String: String]) -> [String: String] {
        properties.filter { !consumerOnly.contains($0.key) }
    }
}

/// A librdkafka property as a command line or the environment gives it: `key=value`.
public enum KafkaPropertySetting {
    /// The key (surrounding spaces trimmed) and the value as given (it may itself contain `=`);
    /// `nil` when there is no `=`, or nothing before it.
    public static func parse(_ text: String) -> (key: String, value: String)? {
        guard let equals = text.firstIndex(of: "="), equals != text.startIndex else { return nil }
        return (String(text[..<equals]).trimmingCharacters(in: .whitespaces), String(text[text.index(after: equals)...]))
    }

    /// What librdkafka finds wrong with the setting (no such property, a value it refuses), or `nil`
    /// when it takes it: checked at start-up, so a typo is a configuration error, not a failed run.
    public static func problem(key: String, value: String) -> String? {
        if let problem = KafkaConsumer.Configuration.managedProblem(key) { return problem }
        let conf = rd_kafka_conf_new()!
        defer { rd_kafka_conf_destroy(conf) }
        return RDKafkaConfig.set(conf, key, value)
    }
}
