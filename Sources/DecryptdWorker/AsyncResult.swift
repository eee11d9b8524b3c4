import Dispatch
import Foundation

/// The outcome of work started on another thread, to wait for later.
final class PendingResult: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)
    private var error: (any Error)?

    fileprivate func finish(_ error: (any Error)?) {
        self.error = error
        done.signal()
    }

    /// Waits for the work; rethrows its error.
    func wait() throws {
        done.wait()
        if let error { throw error }
    }
}

extension DispatchQueue {
    /// Runs `work` on this queue now; `wait()` on the result blocks until it finished.
    func asyncResult(_ work: @escaping @Sendable () throws -> Void) -> PendingResult {
        let result = PendingResult()
        async {
            do {
                try work()
                result.finish(nil)
            } catch {
                result.finish(error)
            }
        }
        return result
    }
}
