import DecryptdStore
import Dispatch
import Locks
import PhoneDecryption
import WeChatAPI

/// checksession for jobs about to fail `bad_padding` at their parking deadline (SPEC "Telling stale
/// keys apart"), from the parked-jobs stage's own thread: at most `concurrency` calls at once, one
/// per user (a user's answer serves all their jobs of the round). Blocks until every call has
/// answered or timed out (each is bounded by the exchange timeout). A check given up because the
/// worker stops leaves the job's failure as it was.
enum SessionChecks {
    static func blocking(
        _ checks: [ParkedJobs.SessionCheck], exchanger: any CodeExchanging, concurrency: Int
    ) -> [DecryptFailure] {
        var firstOfUser: [UserKey: Int] = [:]
        for (index, check) in checks.enumerated() where exchanger.hasSecret(for: check.user.appid) && firstOfUser[check.user] == nil {
            firstOfUser[check.user] = index
        }
        let asked = Array(firstOfUser.values).sorted()
        let answers = Mutex<[Int: PhoneCodeExchanger.Result]>([:])
        let done = DispatchSemaphore(value: 0)
        Task {
            await withTaskGroup(of: Void.self) { group in
                var next = 0
                func add() {
                    guard next < asked.count else { return }
                    let index = asked[next]
                    next += 1
                    let check = checks[index]
                    group.addTask {
                        let result = await exchanger.checkSession(
                            appid: check.user.appid, openid: check.user.openid, sessionKey: check.newestKey, failure: check.failure)
                        answers.withLock { $0[index] = result }
                    }
                }
                for _ in 0..<max(1, concurrency) { add() }
                for await _ in group { add() }
            }
            done.signal()
        }
        done.wait()
        let results = answers.withLock { $0 }
        return checks.map { check in
            guard let first = firstOfUser[check.user], case .failure(let refined)? = results[first] else {
                return check.failure
            }
            // The user's answer, after this job's own detail (its keys, its wait).
            let asked = checks[first].failure.detail
            let note = refined.detail.hasPrefix(asked) ? String(refined.detail.dropFirst(asked.count)) : ""
            return DecryptFailure(refined.reason, check.failure.detail + note)
        }
    }
}
