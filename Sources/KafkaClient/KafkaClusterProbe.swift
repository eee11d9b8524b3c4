internal import CRDKafka
import Foundation
public import Logging

/// Asks a cluster for its topics, with a bounded wait: start-up checks that the brokers are
/// reachable (with the given security settings) and that the topics exist.
public enum KafkaClusterProbe {
    /// What the cluster holds.
    public struct Topics: Sendable {
        /// Partition counts by topic name, including the topics created on request.
        public var partitions: [String: Int] = [:]
        /// The topics asked for in `creating` that the brokers created.
        public var created: [String] = []
        /// Why a topic asked for in `creating` still does not exist: the brokers' answer.
        public var notCreated: [String: KafkaError] = [:]
    }

    /// The cluster's topics. Each topic in `creating` that is missing is asked for the way a
    /// producer's first record asks for it, so brokers that create topics on demand
    /// (`auto.create.topics.enable`) create it now. (librdkafka 2.0.2's producer asks for that
    /// whatever `allow.auto.create.topics` says; whether it happens is the brokers' setting.)
    /// Throws when no broker answered within `timeout` seconds, which bounds the whole probe.
    public static func topics(
        bootstrapServers: String, properties: [String: String], timeout: Double,
        creating: [String] = [], logger: Logger
    ) throws(KafkaError) -> Topics {
        let deadline = Date(timeIntervalSinceNow: timeout)
        var settings = KafkaPropertyScope.forProducer(properties)
        settings["bootstrap.servers"] = bootstrapServers
        let handle = try RDKafkaHandle(RD_KAFKA_PRODUCER, properties: settings, context: RDKafkaCallbackContext(logger: logger))
        var result = Topics()
        do {
            try metadata(handle, topic: nil, timeout: timeout) { topic in
                if topic.err == RD_KAFKA_RESP_ERR_NO_ERROR { result.partitions[String(cString: topic.topic)] = Int(topic.partition_cnt) }
            }
        } catch {
            throw KafkaError(
                code: error.code, name: error.name, message: "no broker answered at \(bootstrapServers) within \(Int(timeout)) s",
                isRetriable: error.isRetriable)
        }
        for name in creating where result.partitions[name] == nil {
            switch request(name, handle, until: deadline) {
            case .success(let count):
                result.partitions[name] = count
                result.created.append(name)
            case .failure(let error): result.notCreated[name] = error
            }
        }
        return result
    }

    /// Asks for one topic, allowing the brokers to create it, until it has partitions: a broker
    /// that is creating a topic answers "leader not available" for a moment first, one that does
    /// not create topics on demand "unknown topic" (which is final here, though retriable when
    /// producing).
    private static func request(_ name: String, _ handle: RDKafkaHandle, until deadline: Date) -> Result<Int, KafkaError> {
        var last = KafkaError(RD_KAFKA_RESP_ERR__TIMED_OUT, message: "the brokers did not create it in time")
        while deadline.timeIntervalSinceNow > 0 {
            var answer: rd_kafka_metadata_topic?
            do {
                try metadata(handle, topic: name, timeout: deadline.timeIntervalSinceNow) { answer = $0 }
            } catch {
                return .failure(error)
            }
            if let answer, answer.err == RD_KAFKA_RESP_ERR_NO_ERROR, answer.partition_cnt > 0 { return .success(Int(answer.partition_cnt)) }
            let error = answer.map { KafkaError($0.err) } ?? last
            guard error.isRetriable, error.code != RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART.rawValue else { return .failure(error) }
            last = error
            // Intentional: the brokers create the topic in the background; ask again in 0.1 s,
            // until the deadline (start-up only, nothing else waits on this thread).
            Thread.sleep(forTimeInterval: 0.1)
        }
        return .failure(last)
    }

    /// One metadata request, for every topic (`topic` nil) or for one, which the brokers may then
    /// create; `each` sees every topic of the answer while it is alive.
    private static func metadata(
        _ handle: RDKafkaHandle, topic: String?, timeout: Double, _ each: (rd_kafka_metadata_topic) -> Void
    ) throws(KafkaError) {
        let handleOfTopic = topic.flatMap { rd_kafka_topic_new(handle.pointer, $0, nil) }
        defer { if let handleOfTopic { rd_kafka_topic_destroy(handleOfTopic) } }
        if topic != nil, handleOfTopic == nil { throw KafkaError(rd_kafka_last_error()) }
        var metadata: UnsafePointer<rd_kafka_metadata>?
        let status = rd_kafka_metadata(handle.pointer, topic == nil ? 1 : 0, handleOfTopic, &metadata, Int32(max(0.001, timeout) * 1000))
        guard status == RD_KAFKA_RESP_ERR_NO_ERROR, let metadata else { throw KafkaError(status) }
        defer { rd_kafka_metadata_destroy(metadata) }
        for index in 0..<Int(metadata.pointee.topic_cnt) { each(metadata.pointee.topics[index]) }
    }
}
