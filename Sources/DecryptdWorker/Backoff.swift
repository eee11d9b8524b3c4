public import Foundation
import LogKeys
public import Logging

/// Capped exponential backoff with full jitter, for retriable errors (PostgreSQL down, a
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

    /// Runs `body` until it succeeds, retrying the errors that are ``RetriableError``s and say
    /// so; any other error is rethrown at once. Throws `GaveUp` once `stop` is requested (graceful
    /// shutdown past its deadline, or another stage failed): a delay under way ends then, not at
    /// its end. `onRetry` is called once per retry (metrics).
    public func run<R>(
        _ what: String,
        logger: Logger,
        stop: StopRequest,
        onRetry: () -> Void = {},
        _ body: () throws -> R
    ) throws -> R {
        var attempt = 0
        while true {
            do {
                let result = try body()
                if attempt > 0 { logger.notice("\(what) recovered", metadata: [LogKey.retries: "\(attempt)"]) }
                return result
            } catch {
                guard error.isRetriable else { throw error }
                attempt += 1
                if attempt == 1 {
                    logger.warning("\(what) failed; retrying with backoff until it recovers", metadata: [LogKey.error: "\(error)"])
                }
                guard !stop.isRequested else { throw GaveUp(lastError: error) }
                onRetry()
                // The wait is the point of a backoff; a stop ends it early.
                if stop.wait(seconds: delay(attempt: attempt)) { throw GaveUp(lastError: error) }
            }
        }
    }
}
