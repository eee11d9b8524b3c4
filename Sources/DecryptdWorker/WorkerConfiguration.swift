public import Foundation
public import KafkaClient
public import PhoneDecryption
public import WeChatAPI
public import WeChatAPISecurity

/// Everything `decryptd run` is told, already validated. Flags and environment variables map onto
/// it in the command-line layer; librdkafka and libpq settings are built from it in one place each.
public struct WorkerConfiguration: Sendable {
    /// `bootstrap.servers`.
    public var brokers: String
    /// Consumer group. Default: "decryptd".
    public var group = "decryptd"
    /// Default: "wechat.phone.jobs".
    public var jobsTopic = "wechat.phone.jobs"
    /// Default: "wechat.phone.dlq".
    public var deadLetterTopic = "wechat.phone.dlq"
    public var databaseURL: String
    /// Accepted appids; the first is the default for jobs that name none.
    public var appids: [String]
    /// Width of the decryption pool. Default: active cores.
    public var concurrency = ProcessInfo.processInfo.activeProcessorCount
    /// Jobs per batch (one lookup round trip, one outcome transaction). Default: 1000.
    public var batchSize = 1000
    /// Session keys tried per user, newest first. Default: 3.
    public var maxSessionKeys = 3
    /// Unfinished jobs at which no more are taken (see ``KafkaConsumer``'s back-pressure). Bounds
    /// memory. Default: 40,000.
    public var maxInFlight = 40_000
    /// PostgreSQL connections: half for session lookups, half for outcome writes (one lane of
    /// users each), each running batches in parallel. Default: 8.
    public var databaseConnections = 8
    /// Extra librdkafka properties (SASL, SSL, tuning), for consumer and producer alike.
    public var kafkaProperties: [String: String] = [:]
    /// Batch mode: stop once every assigned partition is drained. Default: false.
    public var exitAtEnd = false
    /// How long a graceful stop may take to finish in-flight work. Default: 30 s.
    public var shutdownTimeout: TimeInterval = 30
    /// Seconds between progress log lines; 0 turns them off. Default: 10.
    public var progressInterval: TimeInterval = 10
    /// Longest pause between retries of a transient error. Default: 5 s.
    public var maxRetryDelay: TimeInterval = 5

    // MARK: Code jobs

    /// WeChat's server API. Default: https://api.weixin.qq.com.
    public var wechatAPIURL = "https://api.weixin.qq.com"
    /// App secrets by appid; an appid without one fails its code jobs with `exchange_not_configured`.
    public var appSecrets = WeChatCredentials()
    /// API security mode keys by appid: those appids' exchanges are sealed. Default: none.
    public var apiSecurity: [String: APISecurityKeys] = [:]
    /// Said once at start-up when the key file is readable by others (it still loads).
    public var apiSecurityWarning: String?
    /// Code exchanges in flight at most. Default: 64.
    public var exchangeConcurrency = 64
    /// Each exchange call's limit. Default: 5 s.
    public var exchangeTimeout: TimeInterval = 5
    /// How long the exchange ledger keeps a code. Default: 7 days.
    public var exchangeLedgerRetention: TimeInterval = 7 * 86_400

    // MARK: Waiting for a session key, and outcome records

    /// How long a job that failed with one of ``parkReasons`` waits in `parked_jobs` for a newer
    /// session key before it fails; 0 turns parking off. Default: 15 minutes.
    public var parkTimeout: TimeInterval = 15 * 60
    /// The reasons that park a job (only those a newer key can cure). Default: `session_not_found`,
    /// `bad_padding`.
    public var parkReasons: Set<FailureReason> = Self.parkableReasons
    /// The reasons a newer session key can cure, and so the only ones that may park.
    public static let parkableReasons: Set<FailureReason> = [.sessionNotFound, .badPadding]
    /// Where every job's outcome is announced once durable (SPEC "Outcome records"); `nil`: nowhere.
    public var outcomesTopic: String?

    /// Whether jobs that fail for one of ``parkReasons`` wait for a newer key.
    public var parks: Bool { parkTimeout > 0 && !parkReasons.isEmpty }

    public init(brokers: String, databaseURL: String, appids: [String]) {
        self.brokers = brokers
        self.databaseURL = databaseURL
        self.appids = appids
    }
}

extension WorkerConfiguration {
    /// The consumer settings for `topic` in `group`, with this configuration's brokers and properties.
    public func consumerConfiguration(group: String, topic: String) -> KafkaConsumer.Configuration {
        var consumer = KafkaConsumer.Configuration(bootstrapServers: brokers, groupID: group, topics: [topic])
        consumer.maxInFlight = maxInFlight
        consumer.properties = kafkaProperties
        return consumer
    }

    /// The dead-letter producer's settings.
    public var producerConfiguration: KafkaProducer.Configuration {
        var producer = KafkaProducer.Configuration(bootstrapServers: brokers)
        producer.properties = kafkaProperties
        return producer
    }
}
