import DeadLetterFormat
import DecryptdStore
import DecryptdTestSupport
import Foundation
import KafkaClient
import PhoneDecryption
import Testing

@testable import DecryptdWorker
@testable import SyntheticLoad

@Suite("Dead-letter records")
struct DeadLetterTests {
    @Test("a dead letter too large for its topic loses the value, then the key, then the original headers, and says so")
    func shrunkDeadLetter() throws {
        let original = KafkaMessage(
            id: KafkaMessageID(topic: "jobs", partition: 3, offset: 9), key: Array("o1".utf8), value: Array("{}".utf8),
            headers: [KafkaHeader("trace", "t1"), KafkaHeader("decrypt.attempts", "7")], timestamp: 1
        )
        let letter = DeadLetter.record(
            for: original, failure: DecryptFailure(.malformedJob, "no openid"),
            source: .init(topic: "jobs", partition: 3, offset: 9, timestamp: 1), attempts: 1, topic: "dlq", group: "g"
        )
        #expect(DeadLetter.header(DeadLetter.omitted, in: letter.headers) == nil)
        let first = try #require(DeadLetter.shrunk(letter))
        #expect(first.value == nil && first.key == Array("o1".utf8))
        #expect(DeadLetter.header(DeadLetter.omitted, in: first.headers) == "value")
        #expect(DeadLetter.header("trace", in: first.headers) == "t1")
        let second = try #require(DeadLetter.shrunk(first))
        #expect(second.value == nil && second.key == nil && DeadLetter.header("trace", in: second.headers) == "t1")
        #expect(DeadLetter.header(DeadLetter.omitted, in: second.headers) == "value,key")
        let third = try #require(DeadLetter.shrunk(second))
        #expect(DeadLetter.header("trace", in: third.headers) == nil)
        #expect(DeadLetter.header(DeadLetter.omitted, in: third.headers) == "value,key,headers")
        #expect(third.headers.filter { $0.name == DeadLetter.omitted }.count == 1)
        for name in [
            DeadLetter.reason, DeadLetter.sourceTopic, DeadLetter.sourcePartition, DeadLetter.sourceOffset, DeadLetter.attempts,
            DeadLetter.consumerGroup,
        ] {
            #expect(DeadLetter.header(name, in: third.headers) == DeadLetter.header(name, in: letter.headers), "\(name) kept")
        }
        #expect(DeadLetter.shrunk(third) == nil, "nothing more to leave out")

        // Reprocessing the shrunk record dead-letters it again: still marked, marked once.
        let replayed = KafkaMessage(
            id: KafkaMessageID(topic: "dlq", partition: 0, offset: 4), key: first.key, value: first.value, headers: first.headers,
            timestamp: 2)
        let again = DeadLetter.record(
            for: replayed, failure: DecryptFailure(.malformedJob, "no openid"),
            source: .init(topic: "jobs", partition: 3, offset: 9, timestamp: 1), attempts: 2, topic: "dlq", group: "r"
        )
        #expect(again.headers.filter { $0.name == DeadLetter.omitted }.map(\.value) == [Array("value".utf8)])
        #expect(DeadLetter.header(DeadLetter.attempts, in: again.headers) == "2")
    }
}
