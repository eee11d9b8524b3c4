internal import CRDKafka
public import Logging

/// Asks a cluster for its topics, with a bounded wait: start-up checks that the brokers are
/// reachable (with the given security settings) and that the topics exist.
public enum KafkaClusterProbe {
    /// Partition counts by topic name. Throws when no broker answered within `timeout` seconds.
    public static func topics(
        bootstrapServers: String, properties: [String: String], timeout: Double, logger: Logger
    ) throws(KafkaError) -> [String: Int] {
        var settings = KafkaPropertyScope.forProducer(properties)
        settings["bootstrap.servers"] = bootstrapServers
        let handle = try RDKafkaHandle(RD_KAFKA_PRODUCER, properties: settings, context: RDKafkaCallbackContext(logger: logger))
        var metadata: UnsafePointer<rd_kafka_metadata>?
        let status = rd_kafka_metadata(handle.pointer, 1, nil, &metadata, Int32(timeout * 1000))
        guard status == RD_KAFKA_RESP_ERR_NO_ERROR, let metadata else {
            throw KafkaError(status, message: "no broker answered at \(bootstrapServers) within \(Int(timeout)) s")
        }
        defer { rd_kafka_metadata_destroy(metadata) }
        var topics: [String: Int] = [:]
        for index in 0..<Int(metadata.pointee.topic_cnt) {
            let topic = metadata.pointee.topics[index]
            guard topic.err == RD_KAFKA_RESP_ERR_NO_ERROR else { continue }
            topics[String(cString: topic.topic)] = Int(topic.partition_cnt)
        }
        return topics
    }
}
