import CoreMetrics
import DeadLetterFormat
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

    // Waiting for a session key, and outcome records.
    /// `decryptd_parked_jobs{reason}`: jobs waiting in `parked_jobs` now (every worker of the group
    /// reports the table's count, refreshed every few seconds).
    let parkedNow: [FailureReason: Gauge]
    /// `decryptd_parked_oldest_age_seconds`: how long the oldest waiting job has waited.
    let parkedOldestAge = Gauge(label: "decryptd_parked_oldest_age_seconds")
    /// `decryptd_parked_healed_total`: waiting jobs a newer key decrypted (member row durable).
    let healed = Counter(label: "decryptd_parked_healed_total")
    /// `decryptd_parked_wait_seconds`: how long healed jobs waited.
    let healedWait = Timer(label: "decryptd_parked_wait_seconds", preferredDisplayUnit: .seconds)
    /// `decryptd_parked_expired_total{reason}`: waiting jobs that failed at their deadline (or by
    /// `parked --expire`), or failed a retry for a reason that does not park.
    let expired: [FailureReason: Counter]
    /// `decryptd_outcome_records_total{status}`: outcome records acknowledged by the broker.
    let announced: [OutcomeRecord.Status: Counter]

    /// Creates every series at 0 for its known label values (outcomes, repair kinds, components,
    /// and for the exchange the configured `appids`), so that each exists from the start.
    public init(appids: [String] = []) {
        exchange = ExchangeMetrics(appids: appids)
        var jobs = ["ok": Counter(label: "decryptd_jobs_total", dimensions: [("outcome", "ok")])]
        for reason in FailureReason.allCases {
            jobs[reason.rawValue] = Counter(label: "decryptd_jobs_total", dimensions: [("outcome", reason.rawValue)])
        }
        jobs["parked"] = Counter(label: "decryptd_jobs_total", dimensions: [("outcome", "parked")])
        self.jobs = jobs
        parkedNow = Dictionary(
            uniqueKeysWithValues: WorkerConfiguration.parkableReasons.map {
                ($0, Gauge(label: "decryptd_parked_jobs", dimensions: [("reason", $0.rawValue)]))
            })
        expired = Dictionary(
            uniqueKeysWithValues: FailureReason.allCases.map {
                ($0, Counter(label: "decryptd_parked_expired_total", dimensions: [("reason", $0.rawValue)]))
            })
        announced = Dictionary(
            uniqueKeysWithValues: OutcomeRecord.Status.allCases.map {
                ($0, Counter(label: "decryptd_outcome_records_total", dimensions: [("status", $0.rawValue)]))
            })
        repairs = Base64Repairs.named.map { ($0.0, Counter(label: "decryptd_base64_repairs_total", dimensions: [("kind", $0.1)])) }
    }

    /// Each metric's HELP text, by name (the exchange's included). swift-metrics has no place for
    /// one; the executable's metrics factory hands them to Prometheus.
    public static let help: [String: String] = [
        "decryptd_jobs_total":
            "Jobs whose first outcome is durable, by outcome: ok, parked (waiting for a newer session key) or a failure code.",
        "decryptd_parked_jobs": "Jobs waiting in parked_jobs for a newer session key, by the reason they failed with.",
        "decryptd_parked_oldest_age_seconds": "Seconds the oldest job in parked_jobs has waited (0 when none waits).",
        "decryptd_parked_healed_total": "Waiting jobs that a newer session key decrypted (member row durable).",
        "decryptd_parked_wait_seconds": "Seconds healed jobs waited in parked_jobs.",
        "decryptd_parked_expired_total":
            "Waiting jobs that ended failed (their deadline, parked --expire, or a retry that failed for good), by reason.",
        "decryptd_outcome_records_total": "Outcome records acknowledged by the broker, by status.",
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
