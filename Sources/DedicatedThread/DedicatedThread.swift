public import Foundation

/// A named thread of its own, for work that blocks (librdkafka polls, libpq round trips, a
/// `poll(2)` loop), which must never run on Swift's cooperative pool; ``join()`` waits for its
/// body to return, so that an owner stops it without polling `isFinished` in a sleep loop.
///
/// `@unchecked Sendable`: its one flag is only touched under its condition's lock.
public final class DedicatedThread: @unchecked Sendable {
    public let name: String
    private let condition = NSCondition()
    private var finished = false

    /// Starts `body` on a new thread named `name` at once.
    public init(name: String, _ body: @escaping @Sendable () -> Void) {
        self.name = name
        let thread = Thread { [condition] in
            body()
            condition.withLock {
                self.finished = true
                condition.broadcast()
            }
        }
        thread.name = name
        thread.start()
    }

    /// Whether the body has returned.
    public var isFinished: Bool { condition.withLock { finished } }

    /// Waits until the body has returned.
    public func join() {
        condition.withLock {
            while !finished { condition.wait() }
        }
    }

    /// Waits until the body has returned or `deadline` has passed; whether it returned.
    @discardableResult
    public func join(until deadline: Date) -> Bool {
        condition.withLock {
            while !finished, condition.wait(until: deadline) {}
            return finished
        }
    }
}
