import Foundation
import Locks

/// Slows one appid's exchanges when WeChat says its quota or frequency limit is reached (45009,
/// 45011), and lets them speed up again as calls succeed: each appid has a limit of calls in flight
/// that halves on such an answer (at most once per 0.2 s, so that the burst of calls that were in
/// flight together counts once; never below 1) and grows by one with each success, back up to the
/// exchange concurrency (additive increase, multiplicative decrease, as TCP paces itself). Other
/// appids are not affected. Calls over the limit wait for one of the appid's calls to end.
final class AppidPacer: Sendable {
    enum Outcome { case succeeded, rateLimited, other }

    private struct Pace {
        var limit: Int
        var inUse = 0
        /// Calls waiting for their turn, in order, by ticket.
        var waiting: [(ticket: UInt64, continuation: CheckedContinuation<Bool, Never>)] = []
        var slowedAt = Date.distantPast
    }

    static let slowDownSpacing: TimeInterval = 0.2

    private let maximum: Int
    private let paces = Mutex<(paces: [String: Pace], tickets: UInt64)>(([:], 0))

    init(maximum: Int) {
        self.maximum = max(1, maximum)
    }

    /// Waits until a call for `appid` may go out (true; pair it with ``release(_:_:)``), or until
    /// the task is cancelled (false: no turn was taken).
    func acquire(_ appid: String) async -> Bool {
        let ticket = paces.withLock { state in
            state.tickets += 1
            return state.tickets
        }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
                let now = paces.withLock { state -> Bool? in
                    var pace = state.paces[appid] ?? Pace(limit: maximum)
                    defer { state.paces[appid] = pace }
                    if Task.isCancelled { return false }
                    if pace.inUse < pace.limit {
                        pace.inUse += 1
                        return true
                    }
                    pace.waiting.append((ticket, continuation))
                    return nil
                }
                if let now { continuation.resume(returning: now) }
            }
        } onCancel: {
            let waiter = paces.withLock { state -> CheckedContinuation<Bool, Never>? in
                guard let index = state.paces[appid]?.waiting.firstIndex(where: { $0.ticket == ticket }) else { return nil }
                return state.paces[appid]?.waiting.remove(at: index).continuation
            }
            waiter?.resume(returning: false)
        }
    }

    /// A call for `appid` ended with `outcome`.
    func release(_ appid: String, _ outcome: Outcome, now: Date = Date()) {
        let resumed = paces.withLock { state -> [CheckedContinuation<Bool, Never>] in
            guard var pace = state.paces[appid] else { return [] }
            defer { state.paces[appid] = pace }
            pace.inUse -= 1
            switch outcome {
            case .rateLimited where now.timeIntervalSince(pace.slowedAt) >= Self.slowDownSpacing:
                pace.limit = max(1, pace.limit / 2)
                pace.slowedAt = now
            case .succeeded:
                pace.limit = min(maximum, pace.limit + 1)
            default: break
            }
            var resumed: [CheckedContinuation<Bool, Never>] = []
            while pace.inUse < pace.limit, !pace.waiting.isEmpty {
                pace.inUse += 1
                resumed.append(pace.waiting.removeFirst().continuation)
            }
            return resumed
        }
        for continuation in resumed { continuation.resume(returning: true) }
    }

    /// The calls `appid` may have in flight now.
    func limit(_ appid: String) -> Int {
        paces.withLock { $0.paces[appid]?.limit ?? maximum }
    }
}
