import Locks

/// A payload handed to whichever of a fixed number of independent parts finishes last. A part
/// that never arrives (it failed) means nobody gets the payload.
final class Rendezvous<Payload: Sendable>: Sendable {
    private let state: Mutex<(remaining: Int, payload: Payload?)>

    init(parts: Int, payload: Payload) {
        precondition(parts > 0)
        state = Mutex((parts, payload))
    }

    /// The payload for the last part to arrive (the rendezvous then lets go of it), `nil` for the others.
    func arrive() -> Payload? {
        state.withLock { state in
            precondition(state.remaining > 0, "more arrivals than parts")
            state.remaining -= 1
            guard state.remaining == 0 else { return nil }
            defer { state.payload = nil }
            return state.payload
        }
    }
}
