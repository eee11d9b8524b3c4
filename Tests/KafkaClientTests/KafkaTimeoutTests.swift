import Testing

@testable import KafkaClient

@Suite("librdkafka network timeouts")
struct KafkaTimeoutTests {
    /// librdkafka's 60 s default let requests hang on a connection that had stopped answering
    /// past a graceful stop's 30 s (chaos trial 2 of seed 245874): both clients notice in 10 s.
    @Test("consumer and producer notice a connection that stopped answering within 10 s, unless the caller says otherwise")
    func socketTimeouts() throws {
        var consumer = KafkaConsumer.Configuration(bootstrapServers: "b:9092", groupID: "g", topics: ["t"])
        let consumerProperties = try consumer.dictionary()
        #expect(consumerProperties["socket.timeout.ms"] == "10000")
        #expect(consumerProperties["socket.connection.setup.timeout.ms"] == "10000")
        var producer = KafkaProducer.Configuration(bootstrapServers: "b:9092")
        #expect(producer.dictionary()["socket.timeout.ms"] == "10000")
        #expect(producer.dictionary()["socket.connection.setup.timeout.ms"] == "10000")

        consumer.properties = ["socket.timeout.ms": "30000"]
        producer.properties = ["socket.timeout.ms": "30000"]
        #expect(try consumer.dictionary()["socket.timeout.ms"] == "30000")
        #expect(producer.dictionary()["socket.timeout.ms"] == "30000")
    }
}
