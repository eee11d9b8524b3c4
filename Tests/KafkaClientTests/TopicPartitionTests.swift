import KafkaClient
import Testing

@Suite("Topic partitions")
struct TopicPartitionTests {
    @Test("a log line's partitions: one entry per topic, runs folded, in order, duplicates once")
    func summary() {
        let jobs = (0..<96).reversed().map { TopicPartition("big.jobs", Int32($0)) }
        #expect(TopicPartition.summary(of: jobs) == "big.jobs[0-95]")

        let mixed = [3, 0, 7, 2, 4, 9, 4].map { TopicPartition("jobs", $0) } + [TopicPartition("dlq", 1)]
        #expect(TopicPartition.summary(of: mixed) == "dlq[1],jobs[0,2-4,7,9]")

        #expect(TopicPartition.summary(of: [TopicPartition("t", 5)]) == "t[5]")
        #expect(TopicPartition.summary(of: []) == "")
    }
}
