public import Foundation
public import Logging
import PostgresClient

/// Capped exponential backoff with full jitter, for transient errors (PostgreSQL down, a
/// dead-letter produce not acknowledged). Logs once when trouble starts and once when it ends,
/// never once per attempt.
public struct Backoff: Sendable {
    public var initialDelay: TimeInterval = 0.1
    public var maximumDelay: TimeInterval = 5

    public init(initialDelay: TimeInterval = 0.1, maximumDelay: TimeInterval = 5) {
        self.initialDelay = initialDelay
        self.maximumDelay = maximumDelay
    }

    /// The delay before retry number `attempt` (1-based): uniform in [d/2, d] with d doubling to the cap.
    public func delay(attempt: Int) -> TimeInterval {
        let capped = min(maximumDelay, initialDelay * pow(2, Double(min(attempt - 1, 30))))
        return Double.random(in: capped / 2...capped)
    }

    public struct GaveUp: Error, CustomStringConvertible {
        public var lastError: any Error
        public var description: String { "stopped while retrying: \(lastError)" }
    }

    /// Runs `body` until it succeeds, retrying errors `isTransient` accepts; any other error is
    /// rethrown at once. Throws `GaveUp` when `shouldStop` says to abandon (graceful shutdown past
    /// its deadline). `onRetry` is called once per retry (metrics).
    public func run<R>(
        _ what: String,
        logger: Logger,
        isTransient: (any Error) -> Bool,
        shouldStop: () -> Bool,
        onRetry: () -> Void = {},
        _ body: () throws -> R
    ) throws -> R {
        var attempt = 0
        while true {
            do {
                let result = try body()
                if attempt > 0 { logger.notice("\(what) recovered", metadata: ["retries": "\(attempt)"]) }
                return result
            } catch {
                guard isTransient(error) else { throw error }
                attempt += 1
                if attempt == 1 {
                    logger.warning("\(what) failed; retrying with backoff until it recovers", metadata: ["error": "\(error)"])
                }
                guard !shouldStop() else { throw GaveUp(lastError: error) }
                onRetry()
                Thread.sleep(forTimeInterval: delay(attempt: attempt))
            }
        }
    }
}

extension Backoff {
    /// ``run(_:logger:isTransient:shouldStop:onRetry:_:)`` for PostgreSQL work: the errors
    /// ``PostgresError/isTransient`` accepts are retried.
    func retryingPostgres<R>(
        _ what: String, logger: Logger, shouldStop: () -> Bool, onRetry: () -> Void = {}, _ body: () throws -> R
    ) throws -> R {
        try run(what, logger: logger, isTransient: { ($0 as? PostgresError)?.isTransient ?? false },
                shouldStop: shouldStop, onRetry: onRetry, body)
    }
}
