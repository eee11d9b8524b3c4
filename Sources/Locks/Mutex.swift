import Foundation

/// A value guarded by a lock: the one way decryptd guards shared state (docs/architecture.md).
///
/// Not Synchronization's `Mutex`: on Linux that one waits on a futex that ThreadSanitizer does not
/// see, so every access under it was reported as a data race (the sanitizer runs of the test
/// command). This one is a pthread mutex (`NSLock`), which ThreadSanitizer understands, with the
/// same `withLock` shape.
///
/// `@unchecked Sendable`: the value is only touched inside `withLock`, under the lock.
public final class Mutex<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value

    public init(_ value: Value) {
        self.value = value
    }

    /// Runs `body` with the value, under the lock.
    public func withLock<Result>(_ body: (inout Value) throws -> Result) rethrows -> Result {
        lock.lock()
        defer { lock.unlock() }
        return try body(&value)
    }
}
