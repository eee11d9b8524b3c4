public import Foundation
public import KafkaClient
public import PhoneDecryption

/// Builds SPEC.md's dead-letter record: the original key, value and headers unchanged, plus the
/// `decrypt.*` headers. Headers named `decrypt.*` on the original are replaced, not repeated
/// (``omitted`` is carried over: what a replayed record lacks, its next dead letter lacks too).
public enum DeadLetter {
    public static let reason = "decrypt.error.reason"
    public static let detail = "decrypt.error.detail"
    public static let sourceTopic = "decrypt.source.topic"
    public static let sourcePartition = "decrypt.source.partition"
    public static let sourceOffset = "decrypt.source.offset"
    public static let sourceTimestamp = "decrypt.source.timestamp"
    public static let attempts = "decrypt.attempts"
    public static let failedAt = "decrypt.failed.at"
    public static let consumerGroup = "decrypt.consumer.group"
    /// How long a job waited in `parked_jobs` before it failed, in milliseconds (only on such jobs).
    public static let parkedMilliseconds = "decrypt.parked.ms"
    /// Set only on a record the topic refused as too large, which was then sent without the
    /// original parts it names (`value`, `value,key` or `value,key,headers`).
    public static let omitted = "decrypt.omitted"

    /// Where the job originally came from, and when.
    public struct Source: Sendable, Hashable {
        public var topic: String
        public var partition: Int32
        public var offset: Int64
        /// Milliseconds since the epoch; `nil` when the broker gave none (the header is left out).
        public var timestamp: Int64?

        public init(topic: String, partition: Int32, offset: Int64, timestamp: Int64?) {
            self.topic = topic
            self.partition = partition
            self.offset = offset
            self.timestamp = timestamp
        }
    }

    public static func record(
        for message: KafkaMessage, failure: DecryptFailure, source: Source, attempts: Int,
        topic: String, group: String, now: Date = Date()
    ) -> KafkaRecord {
        record(for: message, failure: failure, source: source, attempts: attempts, topic: topic, group: group, failedAt: rfc3339(now))
    }

    /// ``record(for:failure:source:attempts:topic:group:now:)`` with the failure time already
    /// formatted (``rfc3339(_:)``), for a batch of records that share it.
    public static func record(
        for message: KafkaMessage, failure: DecryptFailure, source: Source, attempts: Int,
        topic: String, group: String, failedAt: String
    ) -> KafkaRecord {
        var headers = message.headers.filter { !isAdded($0) }
        headers.append(KafkaHeader(Self.reason, failure.reason.rawValue))
        headers.append(KafkaHeader(Self.detail, failure.detail))
        headers.append(KafkaHeader(Self.sourceTopic, source.topic))
        headers.append(KafkaHeader(Self.sourcePartition, String(source.partition)))
        headers.append(KafkaHeader(Self.sourceOffset, String(source.offset)))
        if let timestamp = source.timestamp { headers.append(KafkaHeader(Self.sourceTimestamp, String(timestamp))) }
        headers.append(KafkaHeader(Self.attempts, String(attempts)))
        headers.append(KafkaHeader(Self.failedAt, failedAt))
        headers.append(KafkaHeader(Self.consumerGroup, group))
        // A replayed dead letter that had to leave parts out still lacks them.
        if let omitted = header(Self.omitted, in: message.headers) { headers.append(KafkaHeader(Self.omitted, omitted)) }
        return KafkaRecord(topic: topic, key: message.key, value: message.value, headers: headers)
    }

    /// The dead letter without the next original part, for a topic that refused it as too large:
    /// the value, then the key, then the original headers go, and ``omitted`` says which. `nil`
    /// when nothing is left to leave out. A job the dead-letter topic cannot hold whole is still
    /// dead-lettered (with its coordinates, reason and the failure row), rather than stopping
    /// the partition behind it for good.
    public static func shrunk(_ record: KafkaRecord) -> KafkaRecord? {
        var record = record
        let parts: String
        if record.value != nil {
            record.value = nil
            parts = "value"
        } else if record.key != nil {
            record.key = nil
            parts = "value,key"
        } else if record.headers.contains(where: { !isAdded($0) }) {
            record.headers.removeAll { !isAdded($0) }
            parts = "value,key,headers"
        } else {
            return nil
        }
        record.headers.removeAll { $0.name == omitted }
        record.headers.append(KafkaHeader(omitted, parts))
        return record
    }

    /// Whether a header is one of the `decrypt.*` ones a dead letter adds (not the job's own).
    private static func isAdded(_ header: KafkaHeader) -> Bool { header.name.hasPrefix("decrypt.") }

    /// `2026-11-21T18:07:41.123Z`.
    public static func rfc3339(_ date: Date) -> String {
        let milliseconds = Int64((date.timeIntervalSince1970 * 1000).rounded(.down))
        var time = time_t(milliseconds / 1000)
        var parts = tm()
        gmtime_r(&time, &parts)
        func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        let fraction = String(milliseconds % 1000)
        return
            "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday))T\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec))."
            + String(repeating: "0", count: 3 - fraction.count) + fraction + "Z"
    }

    /// The value of a header, as text.
    public static func header(_ name: String, in headers: [KafkaHeader]) -> String? {
        headers.last { $0.name == name }?.value.map { String(decoding: $0, as: UTF8.self) }
    }
}

extension DeadLetter {
    /// The original job's coordinates from the `decrypt.source.*` headers (a record without them,
    /// or whose topic header is not a legal Kafka topic name, is treated as its own source: the
    /// coordinates become a failure row's key, and a NUL or a megabyte there would stop every run).
    public static func source(of message: KafkaMessage) -> Source {
        let headers = message.headers
        guard let topic = header(sourceTopic, in: headers), isTopicName(topic),
            let partition = header(sourcePartition, in: headers).flatMap({ Int32($0) }),
            let offset = header(sourceOffset, in: headers).flatMap({ Int64($0) })
        else {
            return Source(
                topic: message.topic, partition: message.partition, offset: message.offset, timestamp: message.timestamp)
        }
        let timestamp = header(sourceTimestamp, in: headers).flatMap { Int64($0) }
        return Source(topic: topic, partition: partition, offset: offset, timestamp: timestamp)
    }

    /// Kafka's rule for topic names: 1 to 249 of `a-z A-Z 0-9 . _ -`.
    public static func isTopicName(_ name: String) -> Bool {
        (1...249).contains(name.utf8.count)
            && name.utf8.allSatisfy { byte in
                switch byte {
                case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                    UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "-"):
                    true
                default: false
                }
            }
    }
}
