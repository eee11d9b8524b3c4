/// Where a ``Worker`` is in its life, and the only ways it moves on. A pure value: the worker
/// keeps it under its lock and acts on what it says.
///
///     starting ──run──▶ running ──stop──▶ draining ──finished──▶ stopped
///        │  └────stop────────────────────▲
///        └──────────── any stage's permanent error ──────────▶ failed (stays)
struct WorkerLifecycle {
    enum State {
        /// Created; ``Worker/run()`` has not started polling yet.
        case starting
        /// Polling and working.
        case running
        /// A stop was asked for: no more polling; in-flight work may finish.
        case draining
        /// Stopped after a stop or the end of the input.
        case stopped
        /// A permanent error stopped it; the first one is kept and ``Worker/run()`` throws it.
        case failed(any Error)
    }

    private(set) var state = State.starting

    /// ``Worker/run()`` begins polling. A stop asked for before that still holds.
    mutating func started() {
        if case .starting = state { state = .running }
    }

    /// A stop is asked for (any thread): polling ends, in-flight work may finish.
    mutating func stopRequested() {
        switch state {
        case .starting, .running: state = .draining
        case .draining, .stopped, .failed: break
        }
    }

    /// A stage met a permanent error. Returns whether it is the first (later ones are logged only).
    mutating func failed(_ error: any Error) -> Bool {
        if case .failed = state { return false }
        state = .failed(error)
        return true
    }

    /// Every stage has stopped.
    mutating func finished() {
        switch state {
        case .starting, .running, .draining: state = .stopped
        case .stopped, .failed: break
        }
    }

    /// Whether the polling loop goes on.
    var keepsPolling: Bool {
        if case .running = state { return true }
        if case .starting = state { return true }
        return false
    }

    /// The error that stopped the worker, if one did.
    var error: (any Error)? {
        if case .failed(let error) = state { return error }
        return nil
    }
}
