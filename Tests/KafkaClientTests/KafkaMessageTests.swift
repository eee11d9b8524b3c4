import KafkaClient
import Testing

@Suite("Kafka message")
struct KafkaMessageTests {
    let id = KafkaMessageID(topic: "t", partition: 3, offset: 42)

    @Test("key, value and headers come back as given, with null and empty parts kept apart")
    func packedParts() {
        let headers = [
            KafkaHeader("trace", "t-1"), KafkaHeader("empty", [] as [UInt8]), KafkaHeader("null", nil as [UInt8]?),
            KafkaHeader("trace", "t-2"),
        ]
        let message = KafkaMessage(id: id, key: Array("user".utf8), value: Array(#"{"a":1}"#.utf8), headers: headers, timestamp: 7)
        #expect(message.key == Array("user".utf8))
        #expect(message.value == Array(#"{"a":1}"#.utf8))
        #expect(message.headers == headers)
        #expect(message.timestamp == 7)
        #expect(message.withValue { $0.map(Array.init) } == Array(#"{"a":1}"#.utf8))

        let bare = KafkaMessage(id: id, key: nil, value: nil, headers: [], timestamp: nil)
        #expect(bare.key == nil && bare.value == nil && bare.headers.isEmpty)
        #expect(bare.withValue { $0 == nil })
        let empty = KafkaMessage(id: id, key: [], value: [], headers: [], timestamp: nil)
        #expect(empty.key == [] && empty.value == [])
        #expect(empty.withValue { $0?.count } == 0)
        #expect(bare != empty, "a null value is not an empty one")
    }

    @Test(
        "headers come back whichever of key and value is absent",
        arguments: [
            ([UInt8]?.none, [UInt8]?.none), (nil, Array("v".utf8)), (Array("k".utf8), nil), ([], []),
            (Array("key".utf8), Array("value".utf8)),
        ])
    func headersAfterAnyParts(key: [UInt8]?, value: [UInt8]?) {
        let headers = [
            KafkaHeader("", "no name"), KafkaHeader("é", [0, 255, 0xFF]), KafkaHeader("null", nil as [UInt8]?),
            KafkaHeader("", [] as [UInt8]),
        ]
        let message = KafkaMessage(id: id, key: key, value: value, headers: headers, timestamp: nil)
        #expect(message.key == key)
        #expect(message.value == value)
        #expect(message.headers == headers)
    }

    @Test("equal parts make equal messages; any part differing makes them differ")
    func equality() {
        func make(key: String? = "k", value: String = "v", header: String = "h") -> KafkaMessage {
            KafkaMessage(
                id: id, key: key.map { Array($0.utf8) }, value: Array(value.utf8), headers: [KafkaHeader("n", header)], timestamp: 1)
        }
        #expect(make() == make())
        #expect(Set([make(), make()]).count == 1)
        #expect(make() != make(key: nil))
        #expect(make() != make(key: "kv", value: ""))  // same bytes in one buffer, split differently
        #expect(make() != make(value: "w"))
        #expect(make() != make(header: "x"))
    }
}
