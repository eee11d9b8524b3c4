public import Foundation

/// A request to stop, made on one thread (a signal handler, a failing stage) and read, or waited
/// for, on others: a backoff delay ends at once when it is made.
/// `@unchecked Sendable`: its one Bool is only touched under its condition's lock.
public final class StopRequest: @unchecked Sendable {
    private let condition = NSCondition()
    private var requested = false

    public init() {}

    public func request() {
        condition.withLock {
            requested = true
            condition.broadcast()
        }
    }

    public var isRequested: Bool {
        condition.withLock { requested }
    }

    /// Waits `seconds`, or less if a stop is requested meanwhile; whether one was.
    public func wait(seconds: TimeInterval) -> Bool {
        let deadline = Date(timeIntervalSinceNow: seconds)
        return condition.withLock {
            while !requested, condition.wait(until: deadline) {}
            return requested
        }
    }
}
