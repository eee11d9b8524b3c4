import Foundation
import NIOConcurrencyHelpers

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
        var waiting: [CheckedContinuation<Void, Never>] = []
        var slowedAt = Date.distantPast
    }

    static let slowDownSpacing: TimeInterval = 0.2

    private let maximum: Int
    private let paces = NIOLockedValueBox<[String: Pace]>([:])

    init(maximum: Int) {
        self.maximum = max(1, maximum)
    }

    /// Waits until a call for `appid` may go out; pair with ``release(_:_:)``.
    func acquire(_ appid: String) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let now = paces.withLockedValue { paces -> Bool in
                var pace = paces[appid] ?? Pace(limit: maximum)
                defer { paces[appid] = pace }
                if pace.inUse < pace.limit {
                    pace.inUse += 1
                    return true
                }
                pace.waiting.append(continuation)
                return false
            }
            if now { continuation.resume() }
        }
    }

    /// A call for `appid` ended with `outcome`.
    func release(_ appid: String, _ outcome: Outcome, now: Date = Date()) {
        let resumed = paces.withLockedValue { paces -> [CheckedContinuation<Void, Never>] in
            guard var pace = paces[appid] else { return [] }
            defer { paces[appid] = pace }
            pace.inUse -= 1
            switch outcome {
            case .rateLimited where now.timeIntervalSince(pace.slowedAt) >= Self.slowDownSpacing:
                pace.limit = max(1, pace.limit / 2)
                pace.slowedAt = now
            case .succeeded:
                pace.limit = min(maximum, pace.limit + 1)
            default: break
            }
            var resumed: [CheckedContinuation<Void, Never>] = []
            while pace.inUse < pace.limit, !pace.waiting.isEmpty {
                pace.inUse += 1
                resumed.append(pace.waiting.removeFirst())
            }
            return resumed
        }
        for continuation in resumed { continuation.resume() }
    }

    /// The calls `appid` may have in flight now.
    func limit(_ appid: String) -> Int {
        paces.withLockedValue { $0[appid]?.limit ?? maximum }
    }
}
