import ArgumentParser
import DecryptdStore
import DecryptdWorker
import Foundation
import PhoneDecryption

/// `decryptd parked`: the jobs waiting in `parked_jobs` for their session key.
struct ParkedCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "parked",
        abstract: "Jobs waiting for their session key: count them (--list), or end their wait now (--expire).",
        discussion: """
            --list counts the jobs in parked_jobs by reason, with the oldest one's age. --expire fails the \
            jobs it selects now, exactly as at their deadline: failure row, dead letter (with \
            decrypt.parked.ms) and, with --outcomes-topic, an outcome record; --reason and --older-than \
            narrow it (a duration such as 90s, 10m or 2h). A job a worker is handling at that moment is \
            left to it. --expire takes the connection options of run (brokers, dead-letter topic, group, \
            appids) because it dead-letters.
            """
    )

    @OptionGroup var connection: ConnectionOptions

    @OptionGroup var decryption: DecryptionOptions

    /// With --expire, jobs about to fail bad_padding ask checksession as at their deadline; that
    /// needs the app secrets and WeChat's URL.
    @OptionGroup(title: "With --expire: WeChat's checksession, as at a deadline") var wechat: WeChatOptions

    @Flag(name: .customLong("list"), help: "Count the waiting jobs by reason, with the oldest one's age (the default).")
    var list = false

    @Flag(name: .customLong("expire"), help: "Fail the selected waiting jobs now, as at their deadline.")
    var expire = false

    @Option(name: .customLong("reason"), help: "With --expire: only jobs waiting with this reason (session_not_found or bad_padding).")
    var reason: String?

    @Option(
        name: .customLong("older-than"),
        help: ArgumentHelp("With --expire: only jobs that have waited at least this long. Default: 0.", valueName: "duration"))
    var olderThan: String?

    @Option(
        name: Settings.group.name,
        help: "The consumer group named in the dead letters (decrypt.consumer.group). Env: DECRYPTD_GROUP. Default: decryptd.")
    var group: String?

    @Option(
        name: .customLong("outcomes-topic"),
        help: ArgumentHelp(
            "With --expire: announce each expired job on this topic, as run does. Env: DECRYPTD_OUTCOMES_TOPIC. Default: none.",
            valueName: "topic"))
    var outcomesTopic: String?

    func run() throws {
        guard !(list && expire) else { throw CommandError.usage("give --list or --expire, not both") }
        if !expire {
            guard reason == nil, olderThan == nil else { throw CommandError.usage("--reason and --older-than go with --expire") }
            let database = DecryptdDatabase(connection: try connection.database.connectedConnection())
            let summary: ParkedSummary
            do {
                summary = try database.parkedSummary()
            } catch {
                throw CommandError.failure("parked --list failed", cause: error)
            }
            print(Self.render(summary))
            return
        }
        var problems: [String] = []
        var configuration = try connection.configuration(problems: &problems)
        try decryption.apply(to: &configuration, problems: &problems)
        try wechat.apply(to: &configuration, problems: &problems)
        configuration.group = try Settings.group.resolved(group, problems: &problems)
        if let topic = outcomesTopic ?? Environment.value("DECRYPTD_OUTCOMES_TOPIC") { configuration.outcomesTopic = topic }
        var selected: FailureReason?
        if let reason {
            if let parsed = FailureReason(rawValue: reason), WorkerConfiguration.parkableReasons.contains(parsed) {
                selected = parsed
            } else {
                problems.append("--reason \(reason) is not a reason jobs wait with (session_not_found, bad_padding)")
            }
        }
        var age = 0.0
        if let olderThan {
            if let seconds = WeChatOptions.duration(olderThan) {
                age = seconds
            } else {
                problems.append("bad --older-than \(olderThan): use e.g. 90s, 10m, 2h")
            }
        }
        let logger = try Bootstrap.logging(level: connection.logLevel, defaultLevel: "warning")
        let findings = Preflight.problems(
            configuration, topics: [], produced: [configuration.deadLetterTopic] + [configuration.outcomesTopic].compactMap { $0 },
            settings: problems, timeout: 10, logger: logger)
        guard findings.isEmpty else { throw CommandError.usage(lines: findings) }
        let ended: [FailureReason: Int]
        do {
            ended = try ParkedJobsExpiry.expire(configuration: configuration, reason: selected, olderThan: age, logger: logger)
        } catch {
            throw CommandError.failure("parked --expire failed", cause: error)
        }
        let total = ended.values.reduce(0, +)
        print(
            "decryptd parked --expire: \(total) jobs failed now"
                + (ended.isEmpty
                    ? ""
                    : " ("
                        + ended.sorted { $0.key.rawValue < $1.key.rawValue }.map { "\($0.value) \($0.key.rawValue)" }.joined(
                            separator: ", ") + ")"))
    }

    static func render(_ summary: ParkedSummary) -> String {
        var lines = ["reason".padding(toLength: 24, withPad: " ", startingAt: 0) + "waiting".leftPadded(10) + "oldest".leftPadded(12)]
        for row in summary.rows {
            lines.append(
                row.reason.padding(toLength: 24, withPad: " ", startingAt: 0) + String(row.count).leftPadded(10)
                    + age(row.oldestSeconds).leftPadded(12))
        }
        lines.append(
            "total".padding(toLength: 24, withPad: " ", startingAt: 0) + String(summary.total).leftPadded(10)
                + age(summary.oldestSeconds).leftPadded(12))
        return lines.joined(separator: "\n")
    }

    /// 42s, 7m 5s, 3h 2m.
    static func age(_ seconds: Double) -> String {
        let whole = Int(seconds.rounded(.down))
        if whole < 60 { return "\(whole)s" }
        if whole < 3600 { return "\(whole / 60)m \(whole % 60)s" }
        return "\(whole / 3600)h \(whole % 3600 / 60)m"
    }
}
