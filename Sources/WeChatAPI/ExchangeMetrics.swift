import CoreMetrics
import Locks
import PhoneDecryption
import WeChatAPISecurity

/// The exchange's metrics (names are the Prometheus ones), created once per label set and cached.
/// No label ever carries a code, a token, a secret or a phone number: appids are the configured
/// ones, errcodes a fixed list.
public final class ExchangeMetrics: Sendable {
    /// `decryptd_exchanges_in_flight`: calls to the exchange endpoint awaiting their answer.
    private let inFlight = Gauge(label: "decryptd_exchanges_in_flight")
    private let calls = Mutex(0)
    /// `decryptd_exchange_duration_seconds`: one call to the exchange endpoint, answered or not.
    let duration = Timer(label: "decryptd_exchange_duration_seconds", preferredDisplayUnit: .seconds)
    private let counters = Mutex<[String: Counter]>([:])

    /// The errcodes SPEC and WeChat's documentation name; any other is counted as "other".
    static let knownErrcodes: Set<Int64> = [
        -1, 40001, 40013, 40014, 40029, 40125, 40164, 40226, 41001, 41002, 41004, 42001, 45009, 45011, 47001, 48001, 61024,
        40230, 40231, 40232, 40233, 40234, 40235, 40236, 40237, 40238, 40239, 40240, 87009,
    ]

    /// Each metric's HELP text, by name.
    public static let help: [String: String] = [
        "decryptd_exchanges_in_flight": "Calls to WeChat's code-exchange endpoint awaiting their answer.",
        "decryptd_exchange_duration_seconds": "Seconds one call to the code-exchange endpoint took, answered or not.",
        "decryptd_exchanges_total": "Code-exchange calls by outcome: ok, a failure code, or what made the call transient.",
        "decryptd_token_fetches_total": "Stable-token fetches by appid and result.",
        "decryptd_wechat_errcodes_total": "Non-zero errcodes WeChat answered, by errcode (unknown ones as other).",
        "decryptd_sealed_calls_total":
            "API security mode: answers to sealed calls by result (verified, verified_deprecated, gateway_error, rejected).",
        "decryptd_sealed_answers_rejected_total": "API security mode: answers refused (never used, retried), by the check they failed.",
        "decryptd_checksession_total":
            "checksession calls for jobs about to fail bad_padding, by result: stale, current, or why it could not tell.",
    ]

    /// Every result `decryptd_checksession_total` counts.
    static let checkSessionResults = ["stale", "current", "errcode", "no_answer", "http_error", "unreadable", "no_token", "not_configured"]

    /// Every result `decryptd_sealed_calls_total` counts.
    static let sealedResults = ["verified", "verified_deprecated", "gateway_error", "rejected"]

    /// Every outcome `decryptd_exchanges_total` counts: "ok", the failure codes an exchange ends
    /// with, and what makes a call transient.
    static let outcomes: [String] =
        ["ok"]
        + [FailureReason.appidMismatch, .invalidPhoneInfo, .codeInvalid, .codeExpired, .wechatError, .exchangeNotConfigured].map(\.rawValue)
        + ["busy", "rate_limited", "token_rejected", "http_error", "no_answer", "unreadable", "rejected_answer"]
    /// Every result `decryptd_token_fetches_total` counts.
    static let tokenResults = ["ok", "errcode", "no_answer", "http_error", "unreadable"]

    /// Creates every series a dashboard or an alert reads, at 0, before the first code job: a
    /// series that appears only at its first use is a gap in every rate() over it (Prometheus's
    /// advice: avoid missing metrics). `appids` are the configured ones (token fetches are per appid).
    public init(appids: [String] = []) {
        for outcome in Self.outcomes { _ = counter("decryptd_exchanges_total", [("outcome", outcome)]) }
        for appid in appids {
            for result in Self.tokenResults { _ = counter("decryptd_token_fetches_total", [("appid", appid), ("result", result)]) }
        }
        for errcode in Self.knownErrcodes.sorted() { _ = counter("decryptd_wechat_errcodes_total", [("errcode", String(errcode))]) }
        _ = counter("decryptd_wechat_errcodes_total", [("errcode", "other")])
        for result in Self.sealedResults { _ = counter("decryptd_sealed_calls_total", [("result", result)]) }
        for reason in AnswerRejection.allCases { _ = counter("decryptd_sealed_answers_rejected_total", [("reason", reason.rawValue)]) }
        for result in Self.checkSessionResults { _ = counter("decryptd_checksession_total", [("result", result)]) }
    }

    /// `decryptd_checksession_total{result}`.
    func checkSession(_ result: String) { counter("decryptd_checksession_total", [("result", result)]).increment() }

    /// `decryptd_sealed_calls_total{result}`.
    func sealed(_ result: String) { counter("decryptd_sealed_calls_total", [("result", result)]).increment() }

    /// `decryptd_sealed_answers_rejected_total{reason}`.
    func rejectedAnswer(_ reason: String) { counter("decryptd_sealed_answers_rejected_total", [("reason", reason)]).increment() }

    func callStarted() {
        inFlight.record(
            calls.withLock {
                $0 += 1
                return $0
            })
    }

    func callEnded() {
        inFlight.record(
            calls.withLock {
                $0 -= 1
                return $0
            })
    }

    /// `decryptd_exchanges_total{outcome}`: every call's outcome, "ok", a failure code, or what made
    /// it transient (busy, rate_limited, token_rejected, http_error, no_answer, unreadable).
    func exchange(_ outcome: String) { counter("decryptd_exchanges_total", [("outcome", outcome)]).increment() }

    /// `decryptd_token_fetches_total{appid,result}`: result ok, errcode, no_answer, http_error or unreadable.
    func tokenFetch(appid: String, result: String) {
        counter("decryptd_token_fetches_total", [("appid", appid), ("result", result)]).increment()
    }

    /// `decryptd_wechat_errcodes_total{errcode}`: non-zero errcodes WeChat answered, by either endpoint.
    func errcode(_ errcode: Int64) {
        counter("decryptd_wechat_errcodes_total", [("errcode", Self.knownErrcodes.contains(errcode) ? String(errcode) : "other")])
            .increment()
    }

    private func counter(_ label: String, _ dimensions: [(String, String)]) -> Counter {
        let key = label + dimensions.map { "|\($0.0)=\($0.1)" }.joined()
        return counters.withLock { counters in
            if let counter = counters[key] { return counter }
            let counter = Counter(label: label, dimensions: dimensions)
            counters[key] = counter
            return counter
        }
    }
}
