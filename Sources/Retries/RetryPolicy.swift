public import Foundation

/// The one retry delay of decryptd: capped exponential backoff with full jitter, for every
/// transient error (PostgreSQL away, a dead letter not acknowledged, WeChat busy). The blocking
/// stages wait it out on a condition (`Backoff` in DecryptdWorker), async code with `Task.sleep`
/// (`PhoneCodeExchanger`); both ask this for how long.
public struct RetryPolicy: Sendable, Hashable {
    /// Delays double from this. Default: 0.1 s.
    public var initialDelay: TimeInterval
    /// The longest delay. Default: 5 s.
    public var maximumDelay: TimeInterval

    public init(initialDelay: TimeInterval = 0.1, maximumDelay: TimeInterval = 5) {
        self.initialDelay = initialDelay
        self.maximumDelay = maximumDelay
    }

    /// The delay before retry number `attempt` (1-based): uniform in [d/2, d] with d doubling from
    /// ``initialDelay`` to ``maximumDelay``.
    public func delay(attempt: Int) -> TimeInterval {
        let capped = min(maximumDelay, initialDelay * pow(2, Double(min(max(attempt, 1) - 1, 30))))
        return Double.random(in: capped / 2...capped)
    }
}
