import ArgumentParser
import DecryptdWorker
import PhoneDecryption

/// `run`'s options for jobs that wait for their session key, and for outcome records (SPEC
/// "Waiting for a session key", "Outcome records").
struct ParkingOptions: ParsableArguments {
    @Option(
        name: .customLong("park-timeout"),
        help: ArgumentHelp(
            "How long a job that failed with one of --park-reasons waits in parked_jobs for a newer session key before it fails: seconds, or a number with s, m or h; 0 turns waiting off (such jobs fail at once). Allowed: 0 to 24h. Env: DECRYPTD_PARK_TIMEOUT. Default: 15m.",
            valueName: "duration"))
    var parkTimeout: String?

    @Option(
        name: .customLong("park-reasons"),
        help: ArgumentHelp(
            "The failure reasons that wait for a newer session key, comma-separated: only reasons a newer key can cure. Allowed: session_not_found, bad_padding. Env: DECRYPTD_PARK_REASONS. Default: session_not_found,bad_padding.",
            valueName: "reasons"))
    var parkReasons: String?

    @Option(
        name: .customLong("outcomes-topic"),
        help: ArgumentHelp(
            "Announce every job's outcome (ok, failed, parked) on this topic once it is durable, for the next step of a signup pipeline; never a phone number or key. Env: DECRYPTD_OUTCOMES_TOPIC. Default: none.",
            valueName: "topic"))
    var outcomesTopic: String?

    /// Sets these options in `configuration`; a bad value is named in `problems`.
    func apply(to configuration: inout WorkerConfiguration, problems: inout [String]) {
        if let text = parkTimeout ?? Environment.value("DECRYPTD_PARK_TIMEOUT") {
            if let seconds = WeChatOptions.duration(text), seconds <= Settings.longestDuration {
                configuration.parkTimeout = seconds
            } else {
                problems.append("--park-timeout \(text) must be a duration from 0 (off) to 24h (e.g. 15m, 90s, 0)")
            }
        }
        if let text = parkReasons ?? Environment.value("DECRYPTD_PARK_REASONS") {
            var reasons = Set<FailureReason>()
            for name in text.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) where !name.isEmpty {
                guard let reason = FailureReason(rawValue: name), WorkerConfiguration.parkableReasons.contains(reason) else {
                    problems.append("--park-reasons: \(name) is not a reason a newer session key can cure (session_not_found, bad_padding)")
                    continue
                }
                reasons.insert(reason)
            }
            configuration.parkReasons = reasons
        }
        if let topic = outcomesTopic ?? Environment.value("DECRYPTD_OUTCOMES_TOPIC") {
            if topic.isEmpty { problems.append("--outcomes-topic must not be empty") } else { configuration.outcomesTopic = topic }
        }
    }
}
