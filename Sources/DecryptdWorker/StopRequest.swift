import Foundation

/// A request to stop, made on one thread (a signal handler) and read by a loop on another.
/// `@unchecked Sendable`: its one Bool is only touched under its lock.
public final class StopRequest: @unchecked Sendable {
    private let lock = NSLock()
    private var requested = false

    public init() {}

    public func request() {
        lock.withLock { requested = true }
    }

    public var isRequested: Bool {
        lock.withLock { requested }
    }
}
