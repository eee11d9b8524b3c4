internal import CRDKafka

#if canImport(Glibc)
    import Glibc
#endif

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
///
/// Key, value and headers are packed into one buffer: a message costs one allocation instead of
/// one per part. ``withValue(_:)`` reads the value in place; ``key``, ``value`` and ``headers``
/// make copies, for the rare message that needs them (a dead letter).
public struct KafkaMessage: Sendable, Hashable {
    public var id: KafkaMessageID
    /// Milliseconds since the epoch (create or log-append time), when the broker sent one.
    public var timestamp: Int64?
    /// Key, value, then each header as a name length (4 bytes), a value length (4 bytes, -1 for
    /// no value), the name and the value.
    @usableFromInline let storage: [UInt8]
    private let keySpan: Span?
    @usableFromInline let valueSpan: Span?
    private let headerCount: Int32

    public var topic: String { id.topic }
    public var partition: Int32 { id.partition }
    public var offset: Int64 { id.offset }

    public var key: [UInt8]? { keySpan.map(bytes) }
    public var value: [UInt8]? { valueSpan.map(bytes) }
    public var headers: [KafkaHeader] {
        var headers: [KafkaHeader] = []
        headers.reserveCapacity(Int(headerCount))
        var position = Int(valueSpan.map { $0.start + $0.count } ?? keySpan.map { $0.start + $0.count } ?? 0)
        for _ in 0..<headerCount {
            let nameCount = Int(Packer.readLength(storage, at: position))
            let valueCount = Int(Packer.readLength(storage, at: position + 4))
            position += 8
            let name = String(decoding: storage[position..<position + nameCount], as: UTF8.self)
            position += nameCount
            let value = valueCount < 0 ? nil : Array(storage[position..<position + valueCount])
            position += max(valueCount, 0)
            headers.append(KafkaHeader(name, value))
        }
        return headers
    }

    /// Runs `body` on the value's bytes where they are (`nil`: the message has no value).
    /// Inlinable: it runs for every job, twice, and specialized it costs no generic dispatch.
    @inlinable
    public func withValue<R, Failure: Error>(_ body: (UnsafeBufferPointer<UInt8>?) throws(Failure) -> R) throws(Failure) -> R {
        guard let span = valueSpan else { return try body(nil) }
        return try storage.withUnsafeBufferPointer { buffer throws(Failure) in
            try body(UnsafeBufferPointer(rebasing: buffer[span.range]))
        }
    }

    public init(id: KafkaMessageID, key: [UInt8]?, value: [UInt8]?, headers: [KafkaHeader], timestamp: Int64?) {
        var packer = Packer(
            capacity: (key?.count ?? 0) + (value?.count ?? 0)
                + headers.reduce(0) { $0 + 8 + $1.name.utf8.count + ($1.value?.count ?? 0) })
        keySpan = key.map { packer.append($0) }
        valueSpan = value.map { packer.append($0) }
        for header in headers { packer.appendHeader(name: header.name.utf8, value: header.value) }
        headerCount = Int32(headers.count)
        storage = packer.bytes
        self.id = id
        self.timestamp = timestamp
    }

    /// Copies a message out; the caller keeps ownership of `message` (and destroys it).
    init(copying message: UnsafePointer<rd_kafka_message_t>, topic: String) {
        let raw = message.pointee
        var list: OpaquePointer?
        if rd_kafka_message_headers(message, &list) != RD_KAFKA_RESP_ERR_NO_ERROR { list = nil }
        // One pass over the headers (librdkafka's list, read in place), into room guessed for a
        // few small ones: headers larger than that cost one reallocation, a second pass over the
        // list to size them exactly cost every message more.
        var packer = Packer(capacity: raw.key_len + raw.len + (list == nil ? 0 : Self.headerRoom))
        keySpan = raw.key.map { packer.append(UnsafeRawBufferPointer(start: $0, count: raw.key_len)) }
        valueSpan = raw.payload.map { packer.append(UnsafeRawBufferPointer(start: $0, count: raw.len)) }
        headerCount = Int32(Self.forEachHeader(list) { name, value in packer.appendHeader(name: name, value: value) })
        storage = packer.bytes
        var timestampType = RD_KAFKA_TIMESTAMP_NOT_AVAILABLE
        let timestamp = rd_kafka_message_timestamp(message, &timestampType)
        id = KafkaMessageID(topic: topic, partition: raw.partition, offset: raw.offset)
        self.timestamp = timestampType == RD_KAFKA_TIMESTAMP_NOT_AVAILABLE ? nil : timestamp
    }

    /// Bytes reserved for headers when a message has any.
    private static let headerRoom = 128

    /// Calls `body` with each header's name (a header without one reads as "") and value; returns
    /// how many there were.
    private static func forEachHeader(_ list: OpaquePointer?, _ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer?) -> Void) -> Int {
        guard let list else { return 0 }
        var index = 0
        var name: UnsafePointer<CChar>?
        var value: UnsafeRawPointer?
        var valueSize = 0
        while rd_kafka_header_get_all(list, index, &name, &value, &valueSize) == RD_KAFKA_RESP_ERR_NO_ERROR {
            body(
                UnsafeRawBufferPointer(start: name, count: name.map { strlen($0) } ?? 0),
                value.map { UnsafeRawBufferPointer(start: $0, count: valueSize) })
            index += 1
        }
        return index
    }

    private func bytes(_ span: Span) -> [UInt8] { Array(storage[span.range]) }

    public static func == (lhs: KafkaMessage, rhs: KafkaMessage) -> Bool {
        lhs.id == rhs.id && lhs.timestamp == rhs.timestamp && lhs.key == rhs.key && lhs.value == rhs.value && lhs.headers == rhs.headers
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(id)
        hasher.combine(value)
    }

    /// Where one part lies in `storage`.
    @usableFromInline
    struct Span: Sendable {
        @usableFromInline var start: Int32
        @usableFromInline var count: Int32
        @inlinable var range: Range<Int> { Int(start)..<Int(start) + Int(count) }
    }

    private struct Packer {
        var bytes: [UInt8] = []

        init(capacity: Int) { bytes.reserveCapacity(capacity) }

        mutating func append(_ part: some Collection<UInt8>) -> Span {
            let start = bytes.count
            bytes.append(contentsOf: part)
            return Span(start: Int32(start), count: Int32(bytes.count - start))
        }

        mutating func appendHeader(name: some Collection<UInt8>, value: (some Collection<UInt8>)?) {
            appendLength(Int32(name.count))
            appendLength(value.map { Int32($0.count) } ?? -1)
            bytes.append(contentsOf: name)
            if let value { bytes.append(contentsOf: value) }
        }

        private mutating func appendLength(_ length: Int32) {
            withUnsafeBytes(of: length.littleEndian) { bytes.append(contentsOf: $0) }
        }

        static func readLength(_ bytes: [UInt8], at position: Int) -> Int32 {
            var length: Int32 = 0
            withUnsafeMutableBytes(of: &length) { $0.copyBytes(from: bytes[position..<position + 4]) }
            return Int32(littleEndian: length)
        }
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
    /// The creation time in ms since the epoch; `nil`: now.
    public var timestamp: Int64?

    public init(
        topic: String, partition: Int32? = nil, key: [UInt8]?, value: [UInt8]?, headers: [KafkaHeader] = [], timestamp: Int64? = nil
    ) {
        self.topic = topic
        self.partition = partition
        self.key = key
        self.value = value
        self.headers = headers
        self.timestamp = timestamp
    }
}
