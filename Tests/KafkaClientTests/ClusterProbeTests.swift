import DecryptdTestSupport
import Foundation
import Testing

@testable import KafkaClient

/// The start-up probe: which topics exist, and the produced ones a broker creates on demand.
@Suite("Cluster probe (embedded broker)", .ownThread(minutes: 2))
struct ClusterProbeTests {
    @Test("a missing topic asked for in `creating` is created by a broker that creates topics on demand; others are only looked at")
    func createsOnDemand() throws {
        let cluster = try KafkaMockCluster(brokers: 1)
        try cluster.createTopic("jobs", partitions: 3)
        let topics = try KafkaClusterProbe.topics(
            bootstrapServers: cluster.bootstrapServers, properties: [:], timeout: 10,
            creating: ["jobs", "dead.letters"], logger: testLogger
        )
        #expect(topics.partitions["jobs"] == 3)
        #expect(topics.created == ["dead.letters"], "an existing topic is not reported as created")
        #expect((topics.partitions["dead.letters"] ?? 0) > 0)
        #expect(topics.partitions["never.asked"] == nil)
        #expect(topics.notCreated.isEmpty)

        let again = try KafkaClusterProbe.topics(
            bootstrapServers: cluster.bootstrapServers, properties: [:], timeout: 10, logger: testLogger)
        #expect(again.partitions["dead.letters"] == topics.partitions["dead.letters"], "the topic stays")
    }

    @Test(
        "a topic the brokers do not create: reported at once with their answer, not as existing",
        arguments: [
            (Int32(3), "UNKNOWN_TOPIC_OR_PART"),  // auto.create.topics.enable=false
            (Int32(29), "TOPIC_AUTHORIZATION_FAILED"),
        ])
    func refusal(code: Int32, name: String) throws {
        let cluster = try KafkaMockCluster(brokers: 1)
        try cluster.createTopic("jobs", partitions: 3)
        cluster.setTopicError("dead.letters", code)
        let started = Date()
        let topics = try KafkaClusterProbe.topics(
            bootstrapServers: cluster.bootstrapServers, properties: [:], timeout: 20, creating: ["dead.letters"], logger: testLogger
        )
        #expect(topics.created.isEmpty)
        #expect(topics.partitions["dead.letters"] == nil)
        #expect(topics.notCreated["dead.letters"]?.name == name)
        #expect(topics.partitions["jobs"] == 3)
        #expect(Date().timeIntervalSince(started) < 15, "a refusal is final: no waiting out the timeout")
    }

    @Test("no broker answering: the probe throws within its timeout")
    func unreachable() throws {
        let started = Date()
        #expect(throws: KafkaError.self) {
            try KafkaClusterProbe.topics(bootstrapServers: "127.0.0.1:1", properties: [:], timeout: 1, creating: ["x"], logger: testLogger)
        }
        #expect(Date().timeIntervalSince(started) < 10)
    }
}
