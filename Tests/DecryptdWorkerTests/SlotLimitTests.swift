import Foundation
import Testing

@testable import DecryptdWorker

@Suite("SlotLimit")
struct SlotLimitTests {
    @Test("at most the limit at a time; a release frees a waiter; a wait with none free times out")
    func limits() throws {
        let slots = SlotLimit(2)
        #expect(slots.acquire(within: 0) && slots.acquire(within: 0))
        #expect(!slots.acquire(within: 0.05), "both taken")
        let freed = Date()
        DispatchQueue.global().asyncAfter(deadline: .now() + 0.1) { slots.release() }
        #expect(slots.acquire(within: 10), "a release wakes the waiter")
        #expect(Date().timeIntervalSince(freed) >= 0.09)
        slots.release(2)
        #expect(slots.available == 2)
    }

    /// DispatchSemaphore would trap here (SIGILL): exchanged jobs keep their slots when a
    /// permanent error stops the worker, and the stage is then released with them taken.
    @Test("dropped with slots still taken: deallocated, and the process goes on")
    func droppedWhileTaken() {
        var slots: SlotLimit? = SlotLimit(3)
        #expect(slots?.acquire(within: 0) == true)
        #expect(slots?.acquire(within: 0) == true)
        #expect(slots?.available == 1, "two of three taken")
        weak let dropped = slots
        slots = nil
        #expect(dropped == nil, "deallocated with two slots taken (a DispatchSemaphore would have trapped here)")
    }
}
