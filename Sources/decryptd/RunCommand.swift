import ArgumentParser
import DecryptdWorker
import Foundation
import Locks
import LogKeys
import Logging
import MetricsEndpoint
import PhoneDecryption
import ServiceLifecycle

/// `decryptd run`: the worker.
struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Consume jobs, decrypt, upsert members, dead-letter failures (at least once).",
        discussion: """
            A job's offset is committed only after its outcome is durable: the members upsert committed in \
            PostgreSQL, or the dead-letter record acknowledged and its failure row committed. Transient \
            errors (PostgreSQL down, a dead-letter produce not acknowledged, WeChat busy or rate-limited) are \
            retried with backoff and never dead-lettered. Code jobs ({"openid", "code"}) are exchanged with \
            WeChat's phone-number API beside decryption, each code once: exchanged codes are remembered (by \
            SHA-256) in phone_code_exchanges, in the same transaction as the member row. An encrypted job \
            whose session key is not stored yet (session_not_found, or bad_padding with only older keys) \
            waits in parked_jobs for up to --park-timeout and is retried as soon as a newer key is stored \
            (the login race); at its deadline it fails as it would have. SIGTERM/SIGINT: stop fetching, finish in-flight work, commit, exit 0 \
            (exit 1 if work could not finish within --shutdown-timeout; it is redelivered later). \
            Start-up problems (unreachable broker or database, a missing jobs topic, no appid, bad values) \
            exit 2 with one line each; a missing dead-letter topic is created where the brokers create \
            topics on demand. Memory is bounded by --max-in-flight: no more jobs are taken at that many \
            unfinished ones (and the partitions are paused if that lasts 2 s).
            """
    )

    @OptionGroup var connection: ConnectionOptions

    @OptionGroup var decryption: DecryptionOptions

    @OptionGroup(title: "Code jobs") var wechat: WeChatOptions

    @OptionGroup(title: "Waiting for a session key, and outcome records") var parking: ParkingOptions

    @Option(name: Settings.group.name, help: Settings.group.help)
    var group: String?

    @Option(name: Settings.concurrency.name, parsing: .unconditional, help: Settings.concurrency.help)
    var concurrency: Int?

    @Option(name: Settings.batchSize.name, parsing: .unconditional, help: Settings.batchSize.help)
    var batchSize: Int?

    @Option(name: Settings.maxInFlight.name, parsing: .unconditional, help: Settings.maxInFlight.help)
    var maxInFlight: Int?

    @Option(name: Settings.databaseConnections.name, parsing: .unconditional, help: Settings.databaseConnections.help)
    var databaseConnections: Int?

    @Option(name: Settings.metricsPort.name, parsing: .unconditional, help: Settings.metricsPort.help)
    var metricsPort: Int?

    @Option(name: Settings.progressInterval.name, parsing: .unconditional, help: Settings.progressInterval.help)
    var progressInterval: Double?

    @Option(name: Settings.shutdownTimeout.name, parsing: .unconditional, help: Settings.shutdownTimeout.help)
    var shutdownTimeout: Double?

    @Option(name: Settings.startupTimeout.name, parsing: .unconditional, help: Settings.startupTimeout.help)
    var startupTimeout: Double?

    @Flag(name: .customLong("exit-at-end"), help: "Batch mode: stop once every assigned partition is drained. Env: DECRYPTD_EXIT_AT_END=1.")
    var exitAtEnd = false

    func run() async throws {
        let logger = try Bootstrap.logging(level: connection.logLevel)
        let startupSignals = StartupSignals(logger: logger)
        var settings: [String] = []
        var configuration = try connection.configuration(problems: &settings)
        try decryption.apply(to: &configuration, problems: &settings)
        configuration.concurrency = try Settings.concurrency.resolved(concurrency, problems: &settings)
        configuration.batchSize = try Settings.batchSize.resolved(batchSize, problems: &settings)
        let startupTimeout = try Settings.startupTimeout.resolved(startupTimeout, problems: &settings)
        configuration.group = try Settings.group.resolved(group, problems: &settings)
        configuration.maxInFlight = try Settings.maxInFlight.resolved(maxInFlight, problems: &settings)
        if configuration.maxInFlight < configuration.batchSize { settings.append("--max-in-flight must be at least --batch-size") }
        let port = try Settings.metricsPort.resolve(metricsPort, problems: &settings)
        configuration.databaseConnections = try Settings.databaseConnections.resolved(databaseConnections, problems: &settings)
        configuration.progressInterval = try Settings.progressInterval.resolved(progressInterval, problems: &settings)
        configuration.shutdownTimeout = try Settings.shutdownTimeout.resolved(shutdownTimeout, problems: &settings)
        configuration.exitAtEnd = try exitAtEnd || Environment.flag("DECRYPTD_EXIT_AT_END")
        try wechat.apply(to: &configuration, problems: &settings)
        parking.apply(to: &configuration, problems: &settings)
        let startupTimeoutIsUsable = Settings.startupTimeout.problem(with: startupTimeout) == nil
        logger.debug(
            "checking the brokers and the database",
            metadata: [
                LogKey.brokers: "\(configuration.brokers)", LogKey.jobsTopic: "\(configuration.jobsTopic)",
                LogKey.group: "\(configuration.group)",
            ])
        let problems = Preflight.problems(
            configuration, topics: [configuration.jobsTopic],
            produced: [configuration.deadLetterTopic] + [configuration.outcomesTopic].compactMap { $0 },
            settings: settings,
            timeout: startupTimeoutIsUsable ? startupTimeout : Settings.startupTimeout.defaultValue!,
            logger: logger
        )
        guard problems.isEmpty else { throw CommandError.usage(lines: problems) }
        if let warning = configuration.apiSecurityWarning { logger.warning("\(warning)") }
        if !configuration.apiSecurity.isEmpty {
            logger.info(
                "API security mode: code exchanges of these appids are sealed and their answers verified",
                metadata: [LogKey.appids: "\(configuration.apiSecurity.keys.sorted().joined(separator: ","))"])
        }
        let unconfigured = configuration.appids.filter { configuration.appSecrets.secret(for: $0) == nil }
        if !unconfigured.isEmpty {
            logger.warning(
                "no app secret for these appids: their code jobs fail with exchange_not_configured (set WECHAT_APP_SECRETS or --app-secrets-file)",
                metadata: [
                    LogKey.appids: "\(unconfigured.joined(separator: ","))"
                ])
        }

        let worker: Worker
        do {
            worker = try Worker(configuration: configuration, logger: logger)
        } catch {
            throw CommandError.usage(cause: error)
        }
        let summary = SummaryBox()
        var services: [any Service] = [
            BlockingWorkService(
                name: "decryptd-consumer", startupSignals: startupSignals,
                work: {
                    do { return try worker.run() } catch { throw CommandError.failure("worker stopped", cause: error) }
                }, requestStop: { worker.stop() }, done: { summary.value = $0 })
        ]
        if let port {
            let server = HTTPEndpointServer(port: port) { path in
                switch path {
                case "/metrics":
                    return .init(
                        status: 200, contentType: "text/plain; version=0.0.4; charset=utf-8", body: Bootstrap.registry.emitToString())
                case "/healthz":
                    return worker.health.live ? .init(status: 200, body: "ok\n") : .init(status: 503, body: "stalled\n")
                case "/readyz":
                    return worker.health.ready ? .init(status: 200, body: "ready\n") : .init(status: 503, body: "not ready\n")
                default:
                    return .init(status: 404, body: "not found: try /metrics, /healthz or /readyz\n")
                }
            }
            do {
                let bound = try server.start()
                logger.info("serving metrics", metadata: [LogKey.port: "\(bound)"])
            } catch {
                throw CommandError.usage(cause: error)
            }
            services.append(StopOnShutdown(stop: { server.stop() }))
        }
        try await Lifecycle.run(services, logger: logger)
        guard let summary = summary.value else { return }
        print(SummaryTable.render(summary))
        if summary.abandoned > 0 {
            throw CommandError.failure(
                "\(summary.abandoned) jobs were unfinished at shutdown; they were not committed and will be redelivered")
        }
    }
}

/// The summary of the worker's run, handed from its thread to the command that prints it.
final class SummaryBox: Sendable {
    private let stored = Mutex<WorkerSummary?>(nil)
    var value: WorkerSummary? {
        get { stored.withLock { $0 } }
        set { stored.withLock { $0 = newValue } }
    }
}

/// The end-of-run summary, for people: jobs by outcome with shares.
enum SummaryTable {
    static func render(_ summary: WorkerSummary) -> String {
        var lines = [
            "decryptd run: \(summary.total) jobs, \(Int(summary.perSecond)) jobs/s over \(String(format: "%.1f", summary.processingElapsed)) s of processing (\(String(format: "%.1f", summary.elapsed)) s in all), peak RSS \(summary.peakResidentBytes >> 20) MB\(summary.drained ? ", all partitions drained" : "")"
        ]
        if !summary.kinds.isEmpty {
            let kinds = JobKind.allCases.compactMap { kind in
                summary.kinds[kind].map {
                    "\($0.jobs) \(kind.rawValue) jobs durable \(String(format: "%.2f", $0.lastDurable)) s after the first fetch"
                }
            }
            lines.append("  " + kinds.joined(separator: "; "))
        }
        if summary.healed > 0 || summary.expired > 0 {
            lines.append(
                "  of the jobs that waited for their session key: \(summary.healed) healed (member row), \(summary.expired) failed (deadline or for good)"
            )
        }
        for (outcome, count) in summary.outcomes.sorted(by: { ($0.value, $1.key) > ($1.value, $0.key) }) {
            let share = summary.total > 0 ? Double(count) / Double(summary.total) * 100 : 0
            lines.append(
                "  " + outcome.padding(toLength: 24, withPad: " ", startingAt: 0) + String(count).leftPadded(8)
                    + String(format: "%7.1f%%", share))
        }
        return lines.joined(separator: "\n")
    }
}

extension String {
    func leftPadded(_ width: Int) -> String { count >= width ? self : String(repeating: " ", count: width - count) + self }
}
