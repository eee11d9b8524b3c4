import Dispatch
import Foundation
import Logging

/// SIGTERM and SIGINT while `run` starts up. The start-up checks may wait up to `--startup-timeout`
/// for a broker or database that does not answer, and nothing has been taken from Kafka yet: the
/// process stops at once with exit 0, as a graceful stop would, instead of dying of the signal
/// (exit 143 or 130). Once the service group traps the same signals, ``handOver()`` leaves them to it.
final class StartupSignals: @unchecked Sendable {
    private let lock = NSLock()
    private var handedOver = false
    private var sources: [any DispatchSourceSignal] = []

    init(logger: Logger) {
        for signalNumber in [SIGINT, SIGTERM] {
            signal(signalNumber, SIG_IGN)  // the dispatch source sees it instead
            let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: .global())
            source.setEventHandler { [lock] in
                // Under the lock, so that handOver() cannot return while the process is exiting.
                lock.lock()
                defer { lock.unlock() }
                guard !self.handedOver else { return }
                logger.notice("stopped during start-up; nothing was taken from Kafka", metadata: ["signal": "\(signalNumber == SIGINT ? "SIGINT" : "SIGTERM")"])
                fflush(nil)
                _exit(0)  // not exit(): librdkafka's and libpq's threads of the start-up checks may still run
            }
            source.resume()
            sources.append(source)
        }
    }

    /// From here on the service group's own handlers stop the worker gracefully. Call it only once
    /// they are installed (a service's `run` is), so that no signal falls between the two.
    func handOver() {
        lock.withLock { handedOver = true }
        sources.forEach { $0.cancel() }
    }
}
