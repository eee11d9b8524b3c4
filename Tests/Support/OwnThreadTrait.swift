import Foundation
public import Testing

/// Runs each test of a suite on a thread of its own, one per core at a time (at least two), and
/// records an issue when one runs longer than `limit` once it has started.
///
/// For tests that block: on a broker, PostgreSQL, a child process or a clock. A synchronous test
/// holds its thread until it returns, and Swift's cooperative pool has one thread per core; two
/// end-to-end tests there stopped every other test for minutes on a 2-core machine. Worse,
/// `.timeLimit` counts from before a test gets a thread, so a suite whose tests take seconds
/// failed its 2-minute limit without having run. Here the pool stays free for the quick tests,
/// the blocking ones run at most one per core (as before, so that the timing they check does not
/// suffer), and `limit` counts only a test's own run.
///
/// A test that overruns cannot be stopped (nothing can interrupt a blocked thread); the issue
/// names it, and the run ends when it does.
public struct OwnThreadTrait: SuiteTrait, TestTrait, TestScoping {
    public var limit: Duration

    public var isRecursive: Bool { true }

    /// Each test case is scoped, never the suite as a whole.
    public func scopeProvider(for test: Test, testCase: Test.Case?) -> Self? {
        testCase == nil ? nil : self
    }

    public func provideScope(
        for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void
    ) async throws {
        await Self.lanes.enter()
        defer { Self.lanes.leave() }
        // An unstructured task inherits the test's task-locals, so the issue names the test.
        let watchdog = Task {
            try await Task.sleep(for: limit)
            Issue.record("still running after \(limit), its limit (not counting the wait for a free lane)")
        }
        defer { watchdog.cancel() }
        try await withTaskExecutorPreference(ThreadPerJobExecutor.shared) {
            try await function()
        }
    }

    private static let lanes = Lanes(count: max(2, ProcessInfo.processInfo.activeProcessorCount))
}

extension Trait where Self == OwnThreadTrait {
    /// See ``OwnThreadTrait``; `minutes` is its limit.
    public static func ownThread(minutes: Int) -> Self { OwnThreadTrait(limit: .seconds(60 * minutes)) }
}

/// A counting semaphore whose waiters hold no thread while they wait.
private final class Lanes: @unchecked Sendable {
    private let lock = NSLock()
    private var free: Int
    private var waiting: [CheckedContinuation<Void, Never>] = []

    init(count: Int) { free = count }

    func enter() async {
        await withCheckedContinuation { continuation in
            let admitted: Bool = lock.withLock {
                guard free > 0 else {
                    waiting.append(continuation)
                    return false
                }
                free -= 1
                return true
            }
            if admitted { continuation.resume() }
        }
    }

    func leave() {
        let next: CheckedContinuation<Void, Never>? = lock.withLock {
            if waiting.isEmpty {
                free += 1
                return nil
            }
            return waiting.removeFirst()
        }
        next?.resume()
    }
}

/// Runs every job it is given on a new thread: a blocking test holds that thread, not one of the
/// cooperative pool's.
private final class ThreadPerJobExecutor: TaskExecutor {
    static let shared = ThreadPerJobExecutor()

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        let executor = asUnownedTaskExecutor()
        Thread {
            Thread.current.name = "test lane"  // set before start, Linux's Foundation drops it
            job.runSynchronously(on: executor)
        }.start()
    }
}
