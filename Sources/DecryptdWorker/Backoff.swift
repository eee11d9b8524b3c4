public import Foundation
public import Logging
public import Retries

/// Retries of retriable errors on the blocking stages (PostgreSQL down, a dead-letter produce not
/// acknowledged): ``RetryPolicy``'s delay, waited out on a ``StopRequest`` so that a stop ends it at
/// once, and a ``TroubleLog`` that says once when trouble starts and once when it ends.
public struct Backoff: Sendable {
    public var policy: RetryPolicy

    public init(initialDelay: TimeInterval = 0.1, maximumDelay: TimeInterval = 5) {
        policy = RetryPolicy(initialDelay: initialDelay, maximumDelay: maximumDelay)
    }

    /// The delay before retry number `attempt` (1-based): ``RetryPolicy/delay(attempt:)``.
    public func delay(attempt: Int) -> TimeInterval { policy.delay(attempt: attempt) }

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
        let trouble = TroubleLog(what, logger: logger)
        var attempt = 0
        while true {
            do {
                let result = try body()
                trouble.succeeded()
                return result
            } catch {
                guard error.isRetriable else { throw error }
                attempt += 1
                trouble.failed("\(error)")
                guard !stop.isRequested else { throw GaveUp(lastError: error) }
                onRetry()
                // The wait is the point of a backoff; a stop ends it early.
                if stop.wait(seconds: policy.delay(attempt: attempt)) { throw GaveUp(lastError: error) }
            }
        }
    }
}
