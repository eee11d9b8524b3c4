import Foundation
import LogKeys
import Logging

/// SIGTERM and SIGINT while `run` or `reprocess` starts up. The start-up checks may wait up to
/// `--startup-timeout` for a broker or database that does not answer, and nothing has been taken
/// from Kafka yet: the process stops at once with exit 0, as a graceful stop would, instead of dying
/// of the signal (exit 143 or 130). Once the command's own handling of the signals is in place
/// (`run`'s service group, `reprocess`'s stop request), ``handOver()`` leaves them to it.
/// `@unchecked Sendable`: `handedOver` and `signals` are only touched under `lock`.
final class StartupSignals: @unchecked Sendable {
    private let lock = NSLock()
    private var handedOver = false
    private var signals: TerminationSignals?

    init(logger: Logger) {
        signals = TerminationSignals { [lock] name in
            // Under the lock, so that handOver() cannot return while the process is exiting.
            lock.lock()
            defer { lock.unlock() }
            guard !self.handedOver else { return }
            logger.notice("stopped during start-up; nothing was taken from Kafka", metadata: [LogKey.signal: "\(name)"])
            fflush(nil)
            _exit(0)  // not exit(): librdkafka's and libpq's threads of the start-up checks may still run
        }
    }

    /// From here on the command's own handlers stop it gracefully. Call it only once they are
    /// installed (for `run`: once a service runs), so that no signal falls between the two.
    func handOver() {
        lock.withLock { handedOver = true }
        signals?.cancel()
    }
}
