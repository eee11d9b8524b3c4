import Foundation

/// A payload handed to whichever of a fixed number of independent parts finishes last. A part
/// that never arrives (it failed) means nobody gets the payload.
final class Rendezvous<Payload>: @unchecked Sendable {
    private let lock = NSLock()
    private var remaining: Int
    private var payload: Payload?

    init(parts: Int, payload: Payload) {
        precondition(parts > 0)
        remaining = parts
        self.payload = payload
    }

    /// The payload for the last part to arrive (the rendezvous then lets go of it), `nil` for the others.
    func arrive() -> Payload? {
        lock.lock()
        defer { lock.unlock() }
        precondition(remaining > 0, "more arrivals than parts")
        remaining -= 1
        guard remaining == 0 else { return nil }
        defer { payload = nil }
        return payload
    }
}
