import DecryptdWorker
import Logging
import Metrics
import Prometheus
import Synchronization

/// The logging and metrics backends. Only the executable bootstraps them, and only once.
enum Bootstrap {
    private static let done = Atomic(false)
    static let registry = PrometheusCollectorRegistry()

    /// A logger at `level` (the `--log-level` flag), else at `DECRYPTD_LOG_LEVEL`, else at
    /// `defaultLevel`: info for the worker, warning for the commands that end in a summary.
    static func logging(level: String?, defaultLevel: String = "info") throws -> Logger {
        let name = (level ?? Environment.value("DECRYPTD_LOG_LEVEL") ?? defaultLevel).lowercased()
        guard let parsed = Logger.Level(rawValue: name) else {
            throw CommandError.usage("bad log level \(name): use trace, debug, info, notice, warning, error or critical")
        }
        if done.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged {
            LoggingSystem.bootstrap { label in
                var handler = StreamLogHandler.standardError(label: label)
                handler.logLevel = parsed
                return handler
            }
            MetricsSystem.bootstrap(DescribedMetricsFactory(registry: registry, help: WorkerMetrics.help))
        }
        var logger = Logger(label: "decryptd")
        logger.logLevel = parsed
        return logger
    }
}
