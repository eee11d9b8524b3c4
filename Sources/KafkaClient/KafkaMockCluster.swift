internal import CRDKafka
public import Logging

/// An embedded Kafka-protocol cluster: librdkafka's mock cluster (`rdkafka_mock.h`), a real broker
/// over TCP on loopback with topics, consumer groups, offsets, headers, and fault injection.
/// It keeps only about 5 MB per partition: spread large loads over partitions.
///
/// `@unchecked Sendable`: nothing in it changes after `init`, and the mock cluster's functions
/// take its own lock (they are librdkafka's test API, called from test threads).
public final class KafkaMockCluster: @unchecked Sendable {
    /// Kafka API keys for ``pushRequestErrors(_:_:)``.
    public enum APIKey: Int16, Sendable {
        case produce = 0
        case fetch = 1
        case listOffsets = 2
        case metadata = 3
        case offsetCommit = 8
        case offsetFetch = 9
        case findCoordinator = 10
        case joinGroup = 11
        case heartbeat = 12
        case syncGroup = 14
        case initProducerId = 22
    }

    /// The mock needs a client instance to live in; this handle owns it.
    private let owner: RDKafkaHandle
    private let cluster: OpaquePointer
    public let brokerCount: Int32

    public init(brokers: Int32 = 1, logger: Logger = Logger(label: "decryptd.kafka.mock")) throws(KafkaError) {
        // The owner never connects anywhere: mute its "no bootstrap.servers" notice.
        owner = try RDKafkaHandle(RD_KAFKA_PRODUCER, properties: ["log_level": "3"], context: RDKafkaCallbackContext(logger: logger))
        guard let cluster = rd_kafka_mock_cluster_new(owner.pointer, Int32(brokers)) else {
            throw KafkaError.configuration("could not start the mock cluster")
        }
        self.cluster = cluster
        self.brokerCount = brokers
    }

    deinit {
        rd_kafka_mock_cluster_destroy(cluster)  // before the owning handle is destroyed
    }

    /// `host:port,...` for `bootstrap.servers`.
    public var bootstrapServers: String { String(cString: rd_kafka_mock_cluster_bootstraps(cluster)) }

    public func createTopic(_ name: String, partitions: Int32, replicationFactor: Int32 = 1) throws(KafkaError) {
        let status = rd_kafka_mock_topic_create(cluster, name, partitions, replicationFactor)
        guard status == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(status) }
    }

    /// Takes a broker down (connections refused/closed) or back up. Broker ids start at 1.
    public func setBroker(_ id: Int32, up: Bool) throws(KafkaError) {
        let status = up ? rd_kafka_mock_broker_set_up(cluster, id) : rd_kafka_mock_broker_set_down(cluster, id)
        guard status == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(status) }
    }

    /// Makes every metadata answer about `topic` carry this error code (0 clears it); the topic
    /// is created if it does not exist, but answers as if it did not (say, 3: unknown topic).
    public func setTopicError(_ topic: String, _ code: Int32) {
        rd_kafka_mock_topic_set_error(cluster, topic, rd_kafka_resp_err_t(rawValue: code))
    }

    /// Makes the next requests of one API fail with these error codes, in order.
    public func pushRequestErrors(_ api: APIKey, _ errors: [Int32]) {
        var codes = errors.map { rd_kafka_resp_err_t(rawValue: $0) }
        rd_kafka_mock_push_request_errors_array(cluster, api.rawValue, codes.count, &codes)
    }

    public func clearRequestErrors(_ api: APIKey) {
        rd_kafka_mock_clear_request_errors(cluster, api.rawValue)
    }
}
