/// The metadata keys of decryptd's log lines, in one place, so that one fact is logged under one
/// name everywhere (log queries and alerts depend on them). Values never carry a session key, app
/// secret, access token, code, plaintext, phone number or encryptedData.
public enum LogKey {
    public static let abandoned = "abandoned"
    public static let appid = "appid"
    public static let appids = "appids"
    public static let batchSize = "batch_size"
    public static let brokers = "brokers"
    public static let concurrency = "concurrency"
    public static let drained = "drained"
    public static let error = "error"
    public static let expiresIn = "expires_in"
    public static let group = "group"
    public static let healed = "healed"
    public static let failed = "failed"
    public static let waiting = "waiting"
    public static let inFlight = "in_flight"
    public static let jobs = "jobs"
    public static let jobsPerS = "jobs_per_s"
    public static let jobsTopic = "jobs_topic"
    public static let lag = "lag"
    public static let oldestUnfinishedS = "oldest_unfinished_s"
    public static let omitted = "omitted"
    public static let partitions = "partitions"
    public static let peakRssMb = "peak_rss_mb"
    public static let port = "port"
    public static let recordsAtMost = "records_at_most"
    public static let retries = "retries"
    public static let rows = "rows"
    public static let seconds = "seconds"
    public static let signal = "signal"
    public static let source = "source"
    public static let stage = "stage"
    public static let topic = "topic"
    public static let unfinishedInFlight = "unfinished_in_flight"
    /// The outcome counts of a summary or progress line: `outcome.<outcome>`.
    public static func outcome(_ outcome: String) -> String { "outcome.\(outcome)" }
    /// librdkafka's facility of a forwarded librdkafka log line.
    public static let rdkafkaFacility = "rdkafka.facility"
}
