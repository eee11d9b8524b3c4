import Foundation
import Synchronization

/// At most `limit` holders at a time: a counting semaphore that may be dropped with slots still
/// taken. `@unchecked Sendable`: its one counter is only touched under its condition's lock.
///
/// DispatchSemaphore traps (SIGILL, "semaphore object deallocated while in use") when it is
/// deallocated with a value below its initial one. Exchanged code jobs hold their slot until they
/// are durable, and after a permanent error they never are: the worker that stopped cleanly then
/// crashed as it released its exchange stage, and exited 132 instead of 1 (found by chaos.sh).
final class SlotLimit: @unchecked Sendable {
    private let condition = NSCondition()
    private var free: Int

    init(_ limit: Int) {
        precondition(limit > 0, "a slot limit of at least 1")
        free = limit
    }

    /// Takes a slot, waiting at most `timeout` seconds for one; false if none came free.
    func acquire(within timeout: TimeInterval) -> Bool {
        let deadline = Date(timeIntervalSinceNow: timeout)
        condition.lock()
        defer { condition.unlock() }
        while free == 0 {
            if !condition.wait(until: deadline) && free == 0 { return false }
        }
        free -= 1
        return true
    }

    /// Takes a slot as a lease, waiting at most `timeout` seconds; nil if none came free.
    func lease(within timeout: TimeInterval) -> SlotLease? {
        acquire(within: timeout) ? SlotLease(self) : nil
    }

    /// Gives back `count` slots.
    func release(_ count: Int = 1) {
        guard count > 0 else { return }
        condition.lock()
        free += count
        condition.broadcast()
        condition.unlock()
    }

    /// Slots free right now.
    var available: Int {
        condition.lock()
        defer { condition.unlock() }
        return free
    }
}

/// One slot of a ``SlotLimit``, carried with the work that took it until that work is done (as
/// postgres-nio's connection lease carries its own release): whoever finishes the work releases
/// it without knowing what it limits. Released at most once; a lease dropped unreleased keeps
/// its slot (work that never became durable, after a permanent error).
final class SlotLease: Sendable {
    private let limit: SlotLimit
    private let released = Atomic(false)

    fileprivate init(_ limit: SlotLimit) {
        self.limit = limit
    }

    func release() {
        guard !released.exchange(true, ordering: .acquiringAndReleasing) else { return }
        limit.release()
    }
}
