import Foundation

/// A FIFO handing work from one dedicated thread to another. `take` blocks until an item arrives
/// or the queue is closed and empty. Unbounded on purpose: the consumer's in-flight limit bounds it.
///
/// The concurrency idiom (docs/architecture.md): state is guarded by a `Mutex`, except where a
/// thread must wait for it to change, as here; then by an `NSCondition`, and the type is
/// `@unchecked Sendable` because its state is only touched under that condition's lock.
final class BlockingQueue<Element: Sendable>: @unchecked Sendable {
    private let condition = NSCondition()
    /// Taken slots are set to nil, so a taken item is uniquely owned by its taker (mutating it
    /// then needs no copy-on-write copy of what it holds).
    private var items: [Element?] = []
    private var head = 0
    private var closed = false

    func put(_ item: Element) {
        condition.lock()
        items.append(item)
        condition.signal()
        condition.unlock()
    }

    /// Queues `item` ahead of everything waiting.
    func putFirst(_ item: Element) {
        condition.lock()
        items.insert(item, at: head)
        condition.signal()
        condition.unlock()
    }

    func take() -> Element? {
        condition.lock()
        defer { condition.unlock() }
        while head == items.count, !closed { condition.wait() }
        guard head < items.count else { return nil }
        let item = items[head].take()
        head += 1
        if head > 64, head * 2 > items.count {
            items.removeFirst(head)
            head = 0
        }
        return item
    }

    /// Everything queued, waiting until there is something; `nil` once closed and empty.
    func takeAll() -> [Element]? {
        condition.lock()
        defer { condition.unlock() }
        while head == items.count, !closed { condition.wait() }
        guard head < items.count else { return nil }
        let all = items[head...].map { $0! }
        items.removeAll(keepingCapacity: true)
        head = 0
        return all
    }

    /// Everything queued once `minimum` items are (or `within` seconds have passed since the first
    /// arrived, or the queue is closed): batches of results that arrive one by one. `nil` once
    /// closed and empty.
    func takeAll(minimum: Int, within seconds: TimeInterval) -> [Element]? {
        condition.lock()
        defer { condition.unlock() }
        while head == items.count, !closed { condition.wait() }
        let deadline = Date(timeIntervalSinceNow: seconds)
        while items.count - head < minimum, !closed, condition.wait(until: deadline) {}
        guard head < items.count else { return nil }
        let all = items[head...].map { $0! }
        items.removeAll(keepingCapacity: true)
        head = 0
        return all
    }

    /// Lets `take` return `nil` once the remaining items are taken.
    func close() {
        condition.lock()
        closed = true
        condition.broadcast()
        condition.unlock()
    }
}
