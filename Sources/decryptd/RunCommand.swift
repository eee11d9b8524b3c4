import ArgumentParser
import DecryptdWorker
import Foundation
import Logging
import MetricsEndpoint
import PhoneDecryption
import ServiceLifecycle
import LogKeys

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
        SHA-256) in phone_code_exchanges, in the same transaction as the member row. SIGTERM/SIGINT: stop fetching, finish in-flight work, commit, exit 0 \
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

    @Option(help: "Consumer group. Env: DECRYPTD_GROUP. Default: decryptd.")
    var group: String?

    @Option(parsing: .unconditional, help: "Decryption threads. Env: DECRYPTD_CONCURRENCY. Default: active cores.")
    var concurrency: Int?

    @Option(name: .customLong("batch-size"), parsing: .unconditional, help: "Jobs per batch. Env: DECRYPTD_BATCH_SIZE. Default: 1000.")
    var batchSize: Int?

    @Option(name: .customLong("max-in-flight"), parsing: .unconditional, help: "Unfinished jobs at which no more are taken (bounds memory). Env: DECRYPTD_MAX_IN_FLIGHT. Default: 40000.")
    var maxInFlight: Int?

    @Option(name: .customLong("database-connections"), parsing: .unconditional, help: "PostgreSQL connections, half for lookups and half for writes (batches run in parallel; a user's jobs always go to the same writer). Env: DECRYPTD_DATABASE_CONNECTIONS. Default: 8.")
    var databaseConnections: Int?

    @Option(name: .customLong("metrics-port"), parsing: .unconditional, help: "Serve Prometheus text at /metrics, and /healthz, /readyz. Env: DECRYPTD_METRICS_PORT. Default: off.")
    var metricsPort: Int?

    @Option(name: .customLong("progress-interval"), parsing: .unconditional, help: "Seconds between progress log lines (0: none). Env: DECRYPTD_PROGRESS_INTERVAL. Default: 10.")
    var progressInterval: Double?

    @Option(name: .customLong("shutdown-timeout"), parsing: .unconditional, help: "Seconds a graceful stop may take. Env: DECRYPTD_SHUTDOWN_TIMEOUT. Default: 30.")
    var shutdownTimeout: Double?

    @Option(name: .customLong("startup-timeout"), parsing: .unconditional, help: "Seconds to wait for the brokers and the database at start-up (a connect_timeout in the database URL wins). Env: DECRYPTD_STARTUP_TIMEOUT. Default: 10.")
    var startupTimeout: Double?

    /// How long start-up waits for the brokers and the database when `--startup-timeout` is not given (or is unusable).
    static let defaultStartupTimeout: Double = 10

    /// The longest any of the durations above may be: a day. (They end up as librdkafka's and
    /// poll(2)'s 32-bit millisecond timeouts; inf, nan and 1e9 used to crash start-up.)
    static let longestDuration: Double = 86_400

    /// Whether `seconds` is a usable duration: more than 0 (or 0 itself, where that means "none")
    /// and at most ``longestDuration``; false for nan.
    static func isDuration(_ seconds: Double, zeroMeansNone: Bool = false) -> Bool {
        (zeroMeansNone ? seconds >= 0 : seconds > 0) && seconds <= longestDuration
    }

    @Flag(name: .customLong("exit-at-end"), help: "Batch mode: stop once every assigned partition is drained. Env: DECRYPTD_EXIT_AT_END=1.")
    var exitAtEnd = false

    func run() async throws {
        let logger = try Bootstrap.logging(level: connection.logLevel)
        let startupSignals = StartupSignals(logger: logger)
        var settings: [String] = []
        var configuration = try connection.configuration(problems: &settings)
        try decryption.apply(to: &configuration)
        try wechat.apply(to: &configuration, problems: &settings)
        configuration.group = group ?? Environment.value("DECRYPTD_GROUP") ?? configuration.group
        configuration.concurrency = try concurrency ?? Environment.integer("DECRYPTD_CONCURRENCY") ?? configuration.concurrency
        configuration.batchSize = try batchSize ?? Environment.integer("DECRYPTD_BATCH_SIZE") ?? configuration.batchSize
        configuration.maxInFlight = try maxInFlight ?? Environment.integer("DECRYPTD_MAX_IN_FLIGHT") ?? configuration.maxInFlight
        configuration.databaseConnections = try databaseConnections ?? Environment.integer("DECRYPTD_DATABASE_CONNECTIONS") ?? configuration.databaseConnections
        configuration.progressInterval = try progressInterval ?? Environment.number("DECRYPTD_PROGRESS_INTERVAL") ?? configuration.progressInterval
        configuration.shutdownTimeout = try shutdownTimeout ?? Environment.number("DECRYPTD_SHUTDOWN_TIMEOUT") ?? configuration.shutdownTimeout
        configuration.exitAtEnd = try exitAtEnd || Environment.flag("DECRYPTD_EXIT_AT_END")
        let port = try metricsPort ?? Environment.integer("DECRYPTD_METRICS_PORT")
        let startupTimeout = try startupTimeout ?? Environment.number("DECRYPTD_STARTUP_TIMEOUT") ?? Self.defaultStartupTimeout
        let startupTimeoutIsUsable = Self.isDuration(startupTimeout)
        if !startupTimeoutIsUsable {
            settings.append("--startup-timeout must be more than 0 and at most \(Int(Self.longestDuration)) seconds")
        }
        if configuration.group.isEmpty { settings.append("--group must not be empty") }
        if configuration.maxInFlight < configuration.batchSize { settings.append("--max-in-flight must be at least --batch-size") }
        if let port, !(0...65535).contains(port) { settings.append("--metrics-port must be 0 to 65535") }
        if !(2...64).contains(configuration.databaseConnections) { settings.append("--database-connections must be 2 to 64") }
        if !Self.isDuration(configuration.progressInterval, zeroMeansNone: true) {
            settings.append("--progress-interval must be 0 (none) or up to \(Int(Self.longestDuration)) seconds")
        }
        if !Self.isDuration(configuration.shutdownTimeout) {
            settings.append("--shutdown-timeout must be more than 0 and at most \(Int(Self.longestDuration)) seconds")
        }
        logger.debug("checking the brokers and the database", metadata: [
            LogKey.brokers: "\(configuration.brokers)", LogKey.jobsTopic: "\(configuration.jobsTopic)", LogKey.group: "\(configuration.group)",
        ])
        let problems = Preflight.problems(
            configuration, topics: [configuration.jobsTopic], produced: [configuration.deadLetterTopic], settings: settings,
            timeout: startupTimeoutIsUsable ? startupTimeout : Self.defaultStartupTimeout,
            logger: logger
        )
        guard problems.isEmpty else { throw UsageError(lines: problems) }
        let unconfigured = configuration.appids.filter { configuration.appSecrets.secret(for: $0) == nil }
        if !unconfigured.isEmpty {
            logger.warning("no app secret for these appids: their code jobs fail with exchange_not_configured (set WECHAT_APP_SECRETS or --app-secrets-file)", metadata: [
                LogKey.appids: "\(unconfigured.joined(separator: ","))",
            ])
        }

        let worker: Worker
        do {
            worker = try Worker(configuration: configuration, logger: logger)
        } catch {
            throw UsageError("\(error)")
        }
        var services: [any Service] = [WorkerService(worker: worker, startupSignals: startupSignals)]
        if let port {
            let server = HTTPEndpointServer(port: port) { path in
                switch path {
                case "/metrics":
                    return .init(status: 200, contentType: "text/plain; version=0.0.4; charset=utf-8", body: Bootstrap.registry.emitToString())
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
                throw UsageError("\(error)")
            }
            services.append(EndpointService(server: server))
        }
        let group = ServiceGroup(configuration: .init(
            services: services.map { .init(service: $0, successTerminationBehavior: .gracefullyShutdownGroup) },
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger
        ))
        try await group.run()
        guard let summary = WorkerService.lastSummary.value else { return }
        print(SummaryTable.render(summary))
        if summary.abandoned > 0 {
            throw RuntimeFailure("\(summary.abandoned) jobs were unfinished at shutdown; they were not committed and will be redelivered")
        }
    }
}

/// Runs the worker on a dedicated thread as a service; a graceful shutdown asks it to stop.
struct WorkerService: Service {
    let worker: Worker
    /// Handed over here: the group's signal handlers are installed before any service runs.
    let startupSignals: StartupSignals
    static let lastSummary = SummaryBox()

    func run() async throws {
        try await withGracefulShutdownHandler {
            startupSignals.handOver()
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let thread = Thread {
                    do {
                        Self.lastSummary.value = try worker.run()
                        continuation.resume()
                    } catch {
                        continuation.resume(throwing: RuntimeFailure("worker stopped: \(error)"))
                    }
                }
                thread.name = "decryptd-consumer"
                thread.start()
            }
        } onGracefulShutdown: {
            worker.stop()
        }
    }
}

/// Serves /metrics until the group shuts down.
struct EndpointService: Service {
    let server: HTTPEndpointServer

    func run() async throws {
        try? await gracefulShutdown()
        server.stop()
    }
}

final class SummaryBox: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: WorkerSummary?
    var value: WorkerSummary? {
        get { lock.lock(); defer { lock.unlock() }; return stored }
        set { lock.lock(); stored = newValue; lock.unlock() }
    }
}

/// The end-of-run summary, for people: jobs by outcome with shares.
enum SummaryTable {
    static func render(_ summary: WorkerSummary) -> String {
        var lines = ["decryptd run: \(summary.total) jobs, \(Int(summary.perSecond)) jobs/s over \(String(format: "%.1f", summary.processingElapsed)) s of processing (\(String(format: "%.1f", summary.elapsed)) s in all), peak RSS \(summary.peakResidentBytes >> 20) MB\(summary.drained ? ", all partitions drained" : "")"]
        if !summary.kinds.isEmpty {
            let kinds = JobKind.allCases.compactMap { kind in
                summary.kinds[kind].map { "\($0.jobs) \(kind.rawValue) jobs durable \(String(format: "%.2f", $0.lastDurable)) s after the first fetch" }
            }
            lines.append("  " + kinds.joined(separator: "; "))
        }
        for (outcome, count) in summary.outcomes.sorted(by: { ($0.value, $1.key) > ($1.value, $0.key) }) {
            let share = summary.total > 0 ? Double(count) / Double(summary.total) * 100 : 0
            lines.append("  " + outcome.padding(toLength: 24, withPad: " ", startingAt: 0) + String(count).leftPadded(8) + String(format: "%7.1f%%", share))
        }
        return lines.joined(separator: "\n")
    }
}

extension String {
    func leftPadded(_ width: Int) -> String { count >= width ? self : String(repeating: " ", count: width - count) + self }
}
