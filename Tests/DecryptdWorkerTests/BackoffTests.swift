import DecryptdWorker
import Foundation
import Logging
import Testing

@Suite("Backoff for transient errors")
struct BackoffTests {
    struct Transient: Error {}
    struct Permanent: Error {}

    /// Keeps every message logged through it, with its level.
    final class RecordingLogHandler: LogHandler, @unchecked Sendable {
        private let lock = NSLock()
        private var recorded: [(Logger.Level, String)] = []
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            lock.withLock { recorded.append((event.level, "\(event.message)")) }
        }

        var messages: [(level: Logger.Level, text: String)] { lock.withLock { recorded } }
    }

    @Test("delays double from the initial one to the cap, each drawn from the upper half (jitter)")
    func delays() {
        let backoff = Backoff(initialDelay: 0.1, maximumDelay: 5)
        for (attempt, ceiling) in [(1, 0.1), (2, 0.2), (3, 0.4), (6, 3.2), (7, 5.0), (40, 5.0), (Int.max, 5.0)] {
            let delays = (0..<200).map { _ in backoff.delay(attempt: attempt) }
            #expect(delays.allSatisfy { $0 >= ceiling / 2 && $0 <= ceiling }, "attempt \(attempt)")
            #expect(Set(delays).count > 100, "attempt \(attempt): jittered, not fixed")
        }
    }

    @Test("transient errors are retried until the work succeeds, logged once when trouble starts and once when it ends")
    func retriesUntilSuccess() throws {
        let handler = RecordingLogHandler()
        let logger = Logger(label: "test") { _ in handler }
        var calls = 0, retries = 0
        let result = try Backoff(initialDelay: 0.001, maximumDelay: 0.004).run(
            "outcome write", logger: logger, isTransient: { $0 is Transient }, shouldStop: { false }, onRetry: { retries += 1 }
        ) {
            calls += 1
            if calls < 6 { throw Transient() }
            return "done"
        }
        #expect(result == "done" && calls == 6 && retries == 5)
        #expect(handler.messages.map(\.level) == [.warning, .notice], "\(handler.messages)")
        #expect(handler.messages.first?.text == "outcome write failed; retrying with backoff until it recovers")
        #expect(handler.messages.last?.text == "outcome write recovered")
    }

    @Test("a permanent error is rethrown at once; work that succeeds first time logs nothing")
    func permanentAndQuiet() throws {
        let handler = RecordingLogHandler()
        let logger = Logger(label: "test") { _ in handler }
        var calls = 0
        #expect(throws: Permanent.self) {
            try Backoff(initialDelay: 0.001).run("write", logger: logger, isTransient: { $0 is Transient }, shouldStop: { false }) {
                calls += 1
                throw Permanent()
            }
        }
        #expect(calls == 1)
        #expect(try Backoff().run("write", logger: logger, isTransient: { _ in true }, shouldStop: { false }) { 7 } == 7)
        #expect(handler.messages.isEmpty)
    }

    @Test("when told to stop, it gives up with the last error instead of retrying on")
    func givesUp() {
        let handler = RecordingLogHandler()
        var calls = 0
        do {
            _ = try Backoff(initialDelay: 0.001).run("write", logger: Logger(label: "test") { _ in handler }, isTransient: { $0 is Transient },
                                                     shouldStop: { calls >= 3 }) { () throws -> Int in
                calls += 1
                throw Transient()
            }
            Issue.record("it returned")
        } catch let error as Backoff.GaveUp {
            #expect(error.lastError is Transient)
            #expect("\(error)" == "stopped while retrying: \(Transient())", "one readable line for the exit message")
        } catch {
            Issue.record("unexpected \(error)")
        }
        #expect(calls == 3)
        #expect(handler.messages.map(\.level) == [.warning], "trouble logged once, and no recovery")
    }
}
