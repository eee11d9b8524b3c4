internal import CRDKafka
public import Retries

/// A librdkafka failure: its error code and name, a message, and whether retrying can help.
public struct KafkaError: RetriableError, Sendable, CustomStringConvertible, CustomDebugStringConvertible {
    /// librdkafka's `rd_kafka_resp_err_t` value (negative: local errors; positive: broker errors).
    public var code: Int32
    /// librdkafka's symbolic name, e.g. `_MSG_TIMED_OUT`.
    public var name: String
    public var message: String
    /// Whether the same operation may succeed later (broker down, timeouts, leader changes).
    public var isRetriable: Bool
    /// A fatal error: the client instance is unusable and must be recreated.
    public var isFatal: Bool

    public init(code: Int32, name: String, message: String, isRetriable: Bool, isFatal: Bool = false) {
        self.code = code
        self.name = name
        self.message = message
        self.isRetriable = isRetriable
        self.isFatal = isFatal
    }

    init(_ error: rd_kafka_resp_err_t, message: String? = nil, fatal: Bool = false) {
        self.init(
            code: error.rawValue,
            name: String(cString: rd_kafka_err2name(error)),
            message: message ?? String(cString: rd_kafka_err2str(error)),
            isRetriable: !fatal && Self.retriable.contains(error.rawValue),
            isFatal: fatal
        )
    }

    /// The record (or its batch) is over the client's `message.max.bytes` or the topic's limit:
    /// sending the same bytes again cannot succeed.
    public var isTooLarge: Bool {
        code == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE.rawValue || code == RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE.rawValue
    }

    /// Configuration problems found before any connection.
    static func configuration(_ message: String) -> KafkaError {
        KafkaError(code: RD_KAFKA_RESP_ERR__INVALID_ARG.rawValue, name: "_INVALID_ARG", message: message, isRetriable: false)
    }

    /// Transport and availability errors: local timeouts, brokers down, leadership moving,
    /// coordinator loading, replicas short. Anything else (authorization, message too large,
    /// invalid configuration) will not get better by retrying.
    private static let retriable: Set<Int32> = Set(
        [
            RD_KAFKA_RESP_ERR__MSG_TIMED_OUT, RD_KAFKA_RESP_ERR__TRANSPORT, RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN,
            RD_KAFKA_RESP_ERR__TIMED_OUT, RD_KAFKA_RESP_ERR__QUEUE_FULL, RD_KAFKA_RESP_ERR__RESOLVE,
            RD_KAFKA_RESP_ERR__TIMED_OUT_QUEUE, RD_KAFKA_RESP_ERR__WAIT_COORD, RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION,
            RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE, RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
            RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT, RD_KAFKA_RESP_ERR_NETWORK_EXCEPTION,
            RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS, RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE,
            RD_KAFKA_RESP_ERR_NOT_COORDINATOR, RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
            RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND, RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART,
            RD_KAFKA_RESP_ERR_KAFKA_STORAGE_ERROR, RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS,
            RD_KAFKA_RESP_ERR_UNSTABLE_OFFSET_COMMIT, RD_KAFKA_RESP_ERR_FENCED_LEADER_EPOCH,
            RD_KAFKA_RESP_ERR_UNKNOWN_LEADER_EPOCH, RD_KAFKA_RESP_ERR_OFFSET_NOT_AVAILABLE,
        ].map(\.rawValue))

    public var description: String { "kafka \(name): \(message)" }

    /// Every field, for a developer's eyes (logs at debug level, test failures).
    public var debugDescription: String {
        "KafkaError(code: \(code), name: \(name), retriable: \(isRetriable), fatal: \(isFatal), message: \(message))"
    }
}
