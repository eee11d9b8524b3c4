import DecryptdWorker
import Foundation

/// Every setting of `run` and `reprocess` (and the connection settings `loadgen` shares), in one
/// table: flag, environment variable, default, allowed values, help. The defaults are the
/// library's own (``WorkerConfiguration``, ``Reprocessor/Options``), never typed again here.
enum Settings {
    private static let worker = WorkerConfiguration(brokers: "", databaseURL: "", appids: [])
    private static let reprocessor = Reprocessor.Options()

    /// The longest any duration may be: a day. (They end up as librdkafka's and poll(2)'s 32-bit
    /// millisecond timeouts; inf, nan and 1e9 used to crash start-up.)
    static let longestDuration: Double = 86_400

    // MARK: - Topics and decryption (run, reprocess; the jobs topic also loadgen)

    static let jobsTopic = Setting<String>(
        flag: "jobs-topic", environment: "DECRYPTD_JOBS_TOPIC", defaultValue: worker.jobsTopic, rule: .nonEmpty, summary: "Input topic."
    )
    static let deadLetterTopic = Setting<String>(
        flag: "dlq-topic", environment: "DECRYPTD_DLQ_TOPIC", defaultValue: worker.deadLetterTopic, rule: .nonEmpty,
        summary: "Dead-letter topic."
    )
    static let maxSessionKeys = Setting<Int>(
        flag: "max-session-keys", environment: "DECRYPTD_MAX_SESSION_KEYS", defaultValue: worker.maxSessionKeys, rule: .range(1...50),
        summary: "Session keys tried per user, newest first."
    )
    static let concurrency = Setting<Int>(
        flag: "concurrency", environment: "DECRYPTD_CONCURRENCY", defaultValue: worker.concurrency, defaultText: "active cores",
        rule: .range(1...512), summary: "Decryption threads."
    )
    static let batchSize = Setting<Int>(
        flag: "batch-size", environment: "DECRYPTD_BATCH_SIZE", defaultValue: worker.batchSize, rule: .range(1...100_000),
        summary: "Jobs per batch."
    )

    // MARK: - run

    static let startupTimeout = Setting<Double>(
        flag: "startup-timeout", environment: "DECRYPTD_STARTUP_TIMEOUT", defaultValue: 10,
        rule: .seconds(longest: longestDuration, zeroMeansNone: false),
        summary: "Seconds to wait for the brokers and the database at start-up (a connect_timeout in the database URL wins)."
    )
    static let group = Setting<String>(
        flag: "group", environment: "DECRYPTD_GROUP", defaultValue: worker.group, rule: .nonEmpty, summary: "Consumer group."
    )
    static let maxInFlight = Setting<Int>(
        flag: "max-in-flight", environment: "DECRYPTD_MAX_IN_FLIGHT", defaultValue: worker.maxInFlight,
        summary: "Unfinished jobs at which no more are taken (bounds memory); at least --batch-size."
    )
    static let metricsPort = Setting<Int>(
        flag: "metrics-port", environment: "DECRYPTD_METRICS_PORT", defaultText: "off", rule: .range(0...65535),
        summary: "Serve Prometheus text at /metrics, and /healthz, /readyz."
    )
    static let databaseConnections = Setting<Int>(
        flag: "database-connections", environment: "DECRYPTD_DATABASE_CONNECTIONS", defaultValue: worker.databaseConnections,
        rule: .range(2...64),
        summary:
            "PostgreSQL connections, half for lookups and half for writes (batches run in parallel; a user's jobs always go to the same writer)."
    )
    static let progressInterval = Setting<Double>(
        flag: "progress-interval", environment: "DECRYPTD_PROGRESS_INTERVAL", defaultValue: worker.progressInterval,
        rule: .seconds(longest: longestDuration, zeroMeansNone: true), summary: "Seconds between progress log lines (0: none)."
    )
    static let shutdownTimeout = Setting<Double>(
        flag: "shutdown-timeout", environment: "DECRYPTD_SHUTDOWN_TIMEOUT", defaultValue: worker.shutdownTimeout,
        rule: .seconds(longest: longestDuration, zeroMeansNone: false), summary: "Seconds a graceful stop may take."
    )

    // MARK: - Code jobs (run)

    static let exchangeConcurrency = Setting<Int>(
        flag: "exchange-concurrency", environment: "DECRYPTD_EXCHANGE_CONCURRENCY", defaultValue: worker.exchangeConcurrency,
        rule: .range(1...4096), summary: "Code exchanges in flight at most."
    )
    static let exchangeTimeout = Setting<Double>(
        flag: "exchange-timeout", environment: "DECRYPTD_EXCHANGE_TIMEOUT", defaultValue: worker.exchangeTimeout,
        rule: .seconds(longest: 600, zeroMeansNone: false), summary: "Seconds one exchange call may take before it is retried."
    )

    // MARK: - reprocess

    static let reprocessGroup = Setting<String>(
        flag: "group", environment: "DECRYPTD_REPROCESS_GROUP", defaultValue: reprocessor.group, rule: .nonEmpty,
        summary: "Consumer group of the reprocessor."
    )
    static let maxAttempts = Setting<Int>(
        flag: "max-attempts", environment: "DECRYPTD_MAX_ATTEMPTS", defaultValue: reprocessor.maxAttempts, rule: .atLeast(1),
        summary: "Skip (and count) records already tried this many times."
    )
}
