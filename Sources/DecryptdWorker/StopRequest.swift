public import Foundation

/// A request to stop, made on one thread (a signal handler, a failing stage) and read, or waited
/// for, on others: a backoff delay ends at once when it is made.
/// `@unchecked Sendable`: its state is only touched under its condition's lock.
public final class StopRequest: @unchecked Sendable {
    private let condition = NSCondition()
    private var requested = false
    private var actions: [@Sendable () -> Void] = []

    public init() {}

    public func request() {
        let actions = condition.withLock {
            requested = true
            condition.broadcast()
            defer { self.actions = [] }
            return self.actions
        }
        for action in actions { action() }
    }

    /// Calls `action` once, when a stop is requested (at once if one was): how async work that
    /// cannot wait on the condition (a task group) learns of it, by cancellation.
    public func whenRequested(_ action: @escaping @Sendable () -> Void) {
        let now = condition.withLock {
            if !requested { actions.append(action) }
            return requested
        }
        if now { action() }
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
