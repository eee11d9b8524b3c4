import Foundation
import Logging
import ServiceLifecycle

/// How every long-running command stops: through swift-service-lifecycle's service group, on
/// SIGTERM or SIGINT (graceful shutdown), as `run` does.
enum Lifecycle {
    /// Runs `services` until the first of them returns, or a signal shuts the group down gracefully.
    static func run(_ services: [any Service], logger: Logger) async throws {
        let group = ServiceGroup(
            configuration: .init(
                services: services.map { .init(service: $0, successTerminationBehavior: .gracefullyShutdownGroup) },
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger
            ))
        try await group.run()
    }

    /// Serves until a signal, then calls `stop` (a server started before: dev-wechat, dev-broker).
    static func serveUntilSignalled(logger: Logger, stop: @escaping @Sendable () -> Void) async throws {
        try await run([StopOnShutdown(stop: stop)], logger: logger)
    }
}

/// Waits for the group's graceful shutdown, then stops what it was given (a server).
struct StopOnShutdown: Service {
    let stop: @Sendable () -> Void

    func run() async throws {
        try? await gracefulShutdown()
        stop()
    }
}

/// Runs blocking work on a dedicated thread as a service (never on Swift's cooperative pool); a
/// graceful shutdown asks it to stop, and it returns once the work has.
struct BlockingWorkService<Result: Sendable>: Service {
    let name: String
    /// Handed over once the group's own signal handlers are in place (they are before any service runs).
    let startupSignals: StartupSignals
    let work: @Sendable () throws -> Result
    let requestStop: @Sendable () -> Void
    let done: @Sendable (Result) -> Void

    func run() async throws {
        try await withGracefulShutdownHandler {
            startupSignals.handOver()
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let thread = Thread {
                    do {
                        done(try work())
                        continuation.resume()
                    } catch {
                        continuation.resume(throwing: error)
                    }
                }
                thread.name = name
                thread.start()
            }
        } onGracefulShutdown: {
            requestStop()
        }
    }
}
