import CoreMetrics
import PhoneDecryption
import WeChatAPI

/// The worker's metrics, created once (the labels are known up front) and reused on the hot path.
/// Names are the Prometheus ones; the executable bootstraps the metrics backend.
public final class WorkerMetrics: Sendable {
    /// `decryptd_jobs_total{outcome}`: "ok" or a failure code, counted when the outcome is durable.
    let jobs: [String: Counter]
    /// `decryptd_base64_repairs_total{kind}`.
    let repairs: [(Base64Repairs, Counter)]
    /// `decryptd_session_key_fallbacks_total`: a payload decrypted with an older key.
    let fallbacks = Counter(label: "decryptd_session_key_fallbacks_total")
    /// `decryptd_batch_duration_seconds`: from fetch to durable outcome.
    let batchDuration = Timer(label: "decryptd_batch_duration_seconds", preferredDisplayUnit: .seconds)
    /// `decryptd_in_flight_jobs`.
    let inFlight = Gauge(label: "decryptd_in_flight_jobs")
    /// `decryptd_transient_retries_total{component}`.
    let postgresRetries = Counter(label: "decryptd_transient_retries_total", dimensions: [("component", "postgres")])
    let kafkaRetries = Counter(label: "decryptd_transient_retries_total", dimensions: [("component", "kafka")])
    /// The code exchange's: `decryptd_exchanges_total`, `decryptd_exchange_duration_seconds`, ...
    let exchange: ExchangeMetrics

    /// Creates every series at 0 for its known label values (outcomes, repair kinds, components,
    /// and for the exchange the configured `appids`), so that each exists from the start.
    public init(appids: [String] = []) {
        exchange = ExchangeMetrics(appids: appids)
        var jobs = ["ok": Counter(label: "decryptd_jobs_total", dimensions: [("outcome", "ok")])]
        for reason in FailureReason.allCases {
            jobs[reason.rawValue] = Counter(label: "decryptd_jobs_total", dimensions: [("outcome", reason.rawValue)])
        }
        self.jobs = jobs
        repairs = Base64Repairs.named.map { ($0.0, Counter(label: "decryptd_base64_repairs_total", dimensions: [("kind", $0.1)])) }
    }

    /// Each metric's HELP text, by name (the exchange's included). swift-metrics has no place for
    /// one; the executable's metrics factory hands them to Prometheus.
    public static let help: [String: String] = [
        "decryptd_jobs_total": "Jobs whose outcome is durable, by outcome: ok or a failure code.",
        "decryptd_base64_repairs_total": "Payloads whose base64 was repaired before decryption, by kind of damage.",
        "decryptd_session_key_fallbacks_total": "Payloads decrypted with an older stored session key than the newest.",
        "decryptd_batch_duration_seconds": "Seconds from a batch's fetch to its durable outcome.",
        "decryptd_in_flight_jobs": "Jobs fetched and not yet durable.",
        "decryptd_transient_retries_total": "Retries after a transient error, by component (postgres, kafka).",
        "decryptd_partition_lag": "Messages between the committed offset and the end of each assigned partition.",
        "decryptd_oldest_unfinished_job_age_seconds": "Age of the oldest job taken and not yet durable, per partition (0 when none).",
    ].merging(ExchangeMetrics.help) { $1 }

    /// `decryptd_partition_lag{topic,partition}`; gauges are cached by the backend per label set.
    func lag(topic: String, partition: Int32) -> Gauge {
        Gauge(label: "decryptd_partition_lag", dimensions: [("topic", topic), ("partition", String(partition))])
    }

    /// `decryptd_oldest_unfinished_job_age_seconds{topic,partition}`: how long ago the oldest job
    /// taken and not yet durable was produced (0 when none is unfinished). Codes expire after 5
    /// minutes, so for code jobs this matters more than the lag in messages.
    func oldestUnfinishedAge(topic: String, partition: Int32) -> Gauge {
        Gauge(label: "decryptd_oldest_unfinished_job_age_seconds", dimensions: [("topic", topic), ("partition", String(partition))])
    }
}
