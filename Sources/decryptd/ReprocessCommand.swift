import ArgumentParser
import DecryptdWorker
import Foundation
import Locks
import LogKeys
import PhoneDecryption

/// `decryptd reprocess`: replay the dead-letter topic after session keys were refreshed.
struct ReprocessCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reprocess",
        abstract: "Replay the dead-letter topic up to its end as of start, then print a summary.",
        discussion: """
            Typical use: the login service refreshed session keys, so bad_padding and session_not_found \
            jobs now succeed. Successes are upserted into members (a newer number already stored wins) and \
            their failure rows resolved; failures are dead-lettered again with decrypt.attempts + 1 and \
            their original decrypt.source.* headers. The group (default decryptd-reprocess) remembers how \
            far it got: a second run replays only what was dead-lettered since. Records that do not match \
            --reason are passed over (use a fresh --group to replay the whole topic again). Run one \
            reprocess per group at a time. A record that did not come from decryptd is replayed too: \
            without well-formed decrypt.source.* headers it is its own source, and without a known \
            decrypt.error.reason it counts as "unknown" (which no --reason selects). SIGTERM/SIGINT: \
            finish the batch under way, commit what was replayed, print the summary so far and exit 0; \
            the next run goes on from there (a batch that cannot finish because PostgreSQL or the \
            brokers are down is left uncommitted: exit 1).
            """
    )

    @OptionGroup var connection: ConnectionOptions

    @OptionGroup var decryption: DecryptionOptions

    @Option(name: Settings.reprocessGroup.name, help: Settings.reprocessGroup.help)
    var group: String?

    @Option(
        name: .customLong("reason"),
        help: "Only replay records with this reason code (repeatable). Env: DECRYPTD_REPROCESS_REASONS, comma-separated.")
    var reasons: [String] = []

    @Flag(name: .customLong("dry-run"), help: "Read, decrypt and count; write, produce and commit nothing. Env: DECRYPTD_DRY_RUN=1.")
    var dryRun = false

    @Option(name: Settings.maxAttempts.name, parsing: .unconditional, help: Settings.maxAttempts.help)
    var maxAttempts: Int?

    func run() async throws {
        let logger = try Bootstrap.logging(level: connection.logLevel, defaultLevel: "warning")
        let startupSignals = StartupSignals(logger: logger)
        var settings: [String] = []
        var configuration = try connection.configuration(problems: &settings)
        try decryption.apply(to: &configuration, problems: &settings)
        let reasons = reasons.isEmpty ? Environment.list("DECRYPTD_REPROCESS_REASONS") : reasons
        let dryRun = try dryRun || Environment.flag("DECRYPTD_DRY_RUN")
        settings += reasons.filter { !Self.knownReasons.contains($0) }.map {
            "unknown --reason \($0): use one of \(Self.knownReasons.sorted().joined(separator: ", "))"
        }
        let maxAttempts = try Settings.maxAttempts.resolved(maxAttempts, problems: &settings)
        let group = try Settings.reprocessGroup.resolved(group, problems: &settings)
        // The same probe that found the topic gives its partition count.
        let findings = Preflight.check(configuration, topics: [configuration.deadLetterTopic], settings: settings, logger: logger)
        guard findings.problems.isEmpty else { throw CommandError.usage(lines: findings.problems) }
        let partitions = findings.partitions[configuration.deadLetterTopic] ?? 0

        var options = Reprocessor.Options()
        options.group = group
        options.reasons = Set(reasons)
        options.dryRun = dryRun
        options.maxAttempts = maxAttempts
        let reprocessor: Reprocessor
        do {
            reprocessor = try Reprocessor(configuration: configuration, options: options, logger: logger)
        } catch {
            throw CommandError.failure("reprocess failed", cause: error)
        }
        // SIGTERM or SIGINT: the batch under way is finished and committed, and the summary so far printed.
        let summary = Mutex<Reprocessor.Summary?>(nil)
        let stop = reprocessor.stopRequest
        let service = BlockingWorkService(
            name: "decryptd-reprocess", startupSignals: startupSignals,
            work: {
                do { return try reprocessor.run(partitions: partitions) } catch {
                    throw CommandError.failure("reprocess failed", cause: error)
                }
            },
            requestStop: {
                logger.notice("stopping: finishing the batch under way")
                stop.request()
            }, done: { result in summary.withLock { $0 = result } })
        try await Lifecycle.run([service], logger: logger)
        guard let summary = summary.withLock({ $0 }) else { return }
        print(Self.render(summary))
    }

    static let knownReasons = Set(FailureReason.allCases.map(\.rawValue))

    static func render(_ summary: Reprocessor.Summary) -> String {
        var lines = [summary.dryRun ? "decryptd reprocess (dry run: nothing written, produced or committed)" : "decryptd reprocess"]
        func row(_ name: String, _ counts: Reprocessor.Counts) -> String {
            name.padding(toLength: 24, withPad: " ", startingAt: 0)
                + [counts.replayed, counts.recovered, counts.failedAgain, counts.skipped]
                .map { String($0).leftPadded(13) }.joined()
        }
        lines.append(
            "reason".padding(toLength: 24, withPad: " ", startingAt: 0)
                + ["replayed", "recovered", "failed again", "skipped"].map { $0.leftPadded(13) }.joined())
        for (reason, counts) in summary.byReason.sorted(by: { $0.key < $1.key }) { lines.append(row(reason, counts)) }
        lines.append(row("total", summary.total))
        if summary.stoppedEarly {
            lines.append(
                summary.dryRun
                    ? "stopped early by a signal, before the end of the topic"
                    : "stopped early by a signal, before the end of the topic: what was replayed is committed; run again to go on from there"
            )
        }
        return lines.joined(separator: "\n")
    }
}
