internal import CRDKafka

/// A partition of a topic.
public struct TopicPartition: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var topic: String
    public var partition: Int32

    public init(_ topic: String, _ partition: Int32) {
        self.topic = topic
        self.partition = partition
    }

    public var description: String { "\(topic)[\(partition)]" }

    public static func < (lhs: TopicPartition, rhs: TopicPartition) -> Bool {
        (lhs.topic, lhs.partition) < (rhs.topic, rhs.partition)
    }

    /// Partitions for a log line, one entry per topic with runs of partitions folded:
    /// `jobs[0-95]`, `jobs[0,2-4],dlq[1]`. A rebalance of 96 partitions stays one short line.
    public static func summary(of partitions: some Sequence<TopicPartition>) -> String {
        Dictionary(grouping: partitions, by: \.topic).sorted { $0.key < $1.key }.map { topic, partitions in
            let numbers = Set(partitions.map(\.partition)).sorted()
            var runs: [String] = []
            var start = 0
            while start < numbers.count {
                var end = start
                while end + 1 < numbers.count, numbers[end + 1] == numbers[end] + 1 { end += 1 }
                runs.append(end == start ? "\(numbers[start])" : "\(numbers[start])-\(numbers[end])")
                start = end + 1
            }
            return "\(topic)[\(runs.joined(separator: ","))]"
        }.joined(separator: ",")
    }
}

/// Owns an `rd_kafka_topic_partition_list_t` built from Swift values; destroys it in `deinit`.
final class RDKafkaTopicPartitionList {
    let pointer: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>

    /// A list of partitions, each with an offset (or `RD_KAFKA_OFFSET_INVALID` when `nil`).
    init(_ entries: [(TopicPartition, Int64?)]) {
        pointer = rd_kafka_topic_partition_list_new(Int32(max(entries.count, 1)))
        for (partition, offset) in entries {
            let element = rd_kafka_topic_partition_list_add(pointer, partition.topic, partition.partition)!
            element.pointee.offset = offset ?? Int64(RD_KAFKA_OFFSET_INVALID)
        }
    }

    deinit {
        rd_kafka_topic_partition_list_destroy(pointer)
    }

    /// Reads a list librdkafka lends us (it keeps ownership).
    static func partitions(of list: UnsafePointer<rd_kafka_topic_partition_list_t>) -> [TopicPartition] {
        (0..<Int(list.pointee.cnt)).map { index in
            let element = list.pointee.elems[index]
            return TopicPartition(String(cString: element.topic), element.partition)
        }
    }

    /// The entries with their offsets and per-partition errors, from a list librdkafka filled in.
    static func entries(of list: UnsafePointer<rd_kafka_topic_partition_list_t>) -> [(TopicPartition, Int64, rd_kafka_resp_err_t)] {
        (0..<Int(list.pointee.cnt)).map { index in
            let element = list.pointee.elems[index]
            return (TopicPartition(String(cString: element.topic), element.partition), element.offset, element.err)
        }
    }
}
