import DeadLetterFormat
import DecryptdStore
import DecryptdTestSupport
import Foundation
import KafkaClient
import PhoneDecryption
import Testing

@testable import DecryptdWorker
@testable import SyntheticLoad

@Suite("Reprocess: a dead letter's source")
struct ReprocessSourceTests {
    @Test("reprocess takes a dead letter's source from its headers only when they are well formed")
    func reprocessSource() {
        func deadLetter(topic: String, partition: String = "7", offset: String = "42") -> KafkaMessage {
            KafkaMessage(
                id: KafkaMessageID(topic: "dlq", partition: 1, offset: 9), key: nil, value: Array("{}".utf8),
                headers: [
                    KafkaHeader(DeadLetter.sourceTopic, Array(topic.utf8)),
                    KafkaHeader(DeadLetter.sourcePartition, Array(partition.utf8)),
                    KafkaHeader(DeadLetter.sourceOffset, Array(offset.utf8)),
                ],
                timestamp: nil
            )
        }
        let original = DeadLetter.source(of: deadLetter(topic: "wechat.phone.jobs"))
        #expect((original.topic, original.partition, original.offset) == ("wechat.phone.jobs", 7, 42))
        for bad in [
            deadLetter(topic: "jobs\u{0}x"), deadLetter(topic: ""), deadLetter(topic: String(repeating: "t", count: 250)),
            deadLetter(topic: "jobs topic"), deadLetter(topic: "jobs", partition: "x"), deadLetter(topic: "jobs", offset: ""),
        ] {
            let source = DeadLetter.source(of: bad)
            #expect((source.topic, source.partition, source.offset) == ("dlq", 1, 9), "the record is its own source")
        }
    }
}
