internal import CRDKafka

/// A header as Kafka carries it: a name and an optional value.
public struct KafkaHeader: Sendable, Hashable {
    public var name: String
    public var value: [UInt8]?

    public init(_ name: String, _ value: [UInt8]?) {
        self.name = name
        self.value = value
    }

    public init(_ name: String, _ text: String) {
        self.init(name, Array(text.utf8))
    }
}

/// Identifies a consumed message: where to store its offset when its work is done.
public struct KafkaMessageID: Sendable, Hashable, CustomStringConvertible {
    public var topic: String
    public var partition: Int32
    public var offset: Int64

    public init(topic: String, partition: Int32, offset: Int64) {
        self.topic = topic
        self.partition = partition
        self.offset = offset
    }

    public var description: String { "\(topic)[\(partition)]@\(offset)" }
}

/// A consumed message, copied out of librdkafka's memory (nothing here points into C).
public struct KafkaMessage: Sendable, Hashable {
    public var id: KafkaMessageID
    public var key: [UInt8]?
    public var value: [UInt8]?
    public var headers: [KafkaHeader]
    /// Milliseconds since the epoch (create or log-append time), when the broker sent one.
    public var timestamp: Int64?

    public var topic: String { id.topic }
    public var partition: Int32 { id.partition }
    public var offset: Int64 { id.offset }

    public init(id: KafkaMessageID, key: [UInt8]?, value: [UInt8]?, headers: [KafkaHeader], timestamp: Int64?) {
        self.id = id
        self.key = key
        self.value = value
        self.headers = headers
        self.timestamp = timestamp
    }

    /// Copies a message out; the caller keeps ownership of `message` (and destroys it).
    init(copying message: UnsafePointer<rd_kafka_message_t>, topic: String) {
        let raw = message.pointee
        func bytes(_ pointer: UnsafeMutableRawPointer?, _ count: Int) -> [UInt8]? {
            guard let pointer else { return nil }
            return Array(UnsafeRawBufferPointer(start: pointer, count: count))
        }
        var headers: [KafkaHeader] = []
        var list: OpaquePointer?
        if rd_kafka_message_headers(message, &list) == RD_KAFKA_RESP_ERR_NO_ERROR, let list {
            var index = 0
            var name: UnsafePointer<CChar>?
            var value: UnsafeRawPointer?
            var size = 0
            while rd_kafka_header_get_all(list, index, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR {
                headers.append(KafkaHeader(
                    name.map { String(cString: $0) } ?? "",
                    value.map { Array(UnsafeRawBufferPointer(start: $0, count: size)) }
                ))
                index += 1
            }
        }
        var timestampType = RD_KAFKA_TIMESTAMP_NOT_AVAILABLE
        let timestamp = rd_kafka_message_timestamp(message, &timestampType)
        self.init(
            id: KafkaMessageID(topic: topic, partition: raw.partition, offset: raw.offset),
            key: bytes(raw.key, raw.key_len),
            value: bytes(raw.payload, raw.len),
            headers: headers,
            timestamp: timestampType == RD_KAFKA_TIMESTAMP_NOT_AVAILABLE ? nil : timestamp
        )
    }
}

/// A message to produce.
public struct KafkaRecord: Sendable, Hashable {
    public var topic: String
    /// `nil`: let the partitioner choose (by key).
    public var partition: Int32?
    public var key: [UInt8]?
    public var value: [UInt8]?
    public var headers: [KafkaHeader]

    public init(topic: String, partition: Int32? = nil, key: [UInt8]?, value: [UInt8]?, headers: [KafkaHeader] = []) {
        self.topic = topic
        self.partition = partition
        self.key = key
        self.value = value
        self.headers = headers
    }
}
