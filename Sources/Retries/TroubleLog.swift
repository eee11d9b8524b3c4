public import Foundation
import Locks
import LogKeys
public import Logging

/// Says when some work starts failing transiently and when it has recovered, once each, never once
/// per attempt, and counts the retries in between: the one place that logs trouble, for the
/// blocking stages' retries and the async exchanges alike.
///
/// A recovery is logged once the work has succeeded with no failure for `calm` seconds: 0 for one
/// retrying call (it recovered when it succeeded), longer for work shared by many concurrent calls
/// (code exchanges), where a success between two failures is no recovery yet.
public final class TroubleLog: Sendable {
    private struct State {
        var troubled = false
        var retries = 0
        var lastFailure = ContinuousClock.now
    }

    private let what: String
    private let calm: Duration
    private let logger: Logger
    private let state = Mutex(State())

    /// `what` names the work in the log lines ("outcome write", "code exchanges").
    public init(_ what: String, logger: Logger, calm: TimeInterval = 0) {
        self.what = what
        self.calm = .seconds(calm)
        self.logger = logger
    }

    /// A transient failure, to be retried: a warning if it is the first since the last recovery.
    public func failed(_ why: String) {
        let first = state.withLock { state in
            defer { (state.troubled, state.retries, state.lastFailure) = (true, state.retries + 1, .now) }
            return !state.troubled
        }
        if first { logger.warning("\(what) failed; retrying with backoff until it recovers", metadata: [LogKey.error: "\(why)"]) }
    }

    /// The work succeeded: a notice with the retries counted, if it was in trouble and has been calm
    /// for `calm`.
    public func succeeded() {
        let retries = state.withLock { state -> Int? in
            guard state.troubled, ContinuousClock.now - state.lastFailure >= calm else { return nil }
            defer { (state.troubled, state.retries) = (false, 0) }
            return state.retries
        }
        if let retries { logger.notice("\(what) recovered", metadata: [LogKey.retries: "\(retries)"]) }
    }
}
