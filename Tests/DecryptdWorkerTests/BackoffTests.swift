import DecryptdTestSupport
import DecryptdWorker
import Dispatch
import Foundation
import Logging
import Retries
import Testing

@Suite("Backoff for retriable errors")
struct BackoffTests {
    struct Transient: RetriableError { var isRetriable: Bool { true } }
    /// Says it is not retriable; `NotRetriable` does not say at all: neither is retried.
    struct Permanent: RetriableError { var isRetriable: Bool { false } }
    struct NotRetriable: Error {}

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
        var calls = 0
        var retries = 0
        let countRetry = { retries += 1 }
        let result = try Backoff(initialDelay: 0.001, maximumDelay: 0.004).run(
            "outcome write", logger: logger, stop: StopRequest(), onRetry: countRetry
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

    /// Work shared by many concurrent calls (code exchanges): a success between two failures is
    /// no recovery yet; the recovery comes once it has been calm that long, with every retry counted.
    @Test("a trouble log with a calm period: one warning for many failures, one recovery once calm, with the retries counted")
    func troubleLogCalm() throws {
        let handler = RecordingLogHandler()
        let trouble = TroubleLog("code exchanges", logger: Logger(label: "test") { _ in handler }, calm: 0.2)
        trouble.failed("busy")
        trouble.failed("busy")
        trouble.succeeded()
        trouble.failed("busy")
        trouble.succeeded()
        #expect(handler.messages.map(\.level) == [.warning], "not calm yet: \(handler.messages)")
        Thread.sleep(forTimeInterval: 0.25)
        trouble.succeeded()
        trouble.succeeded()
        #expect(handler.messages.map(\.level) == [.warning, .notice], "\(handler.messages)")
        #expect(handler.messages.last?.text == "code exchanges recovered")
        #expect(handler.messages.last?.metadata["retries"]?.description == "3")
    }

    @Test("a permanent error is rethrown at once; work that succeeds first time logs nothing")
    func permanentAndQuiet() throws {
        let handler = RecordingLogHandler()
        let logger = Logger(label: "test") { _ in handler }
        var calls = 0
        #expect(throws: Permanent.self) {
            try Backoff(initialDelay: 0.001).run("write", logger: logger, stop: StopRequest()) {
                calls += 1
                throw Permanent()
            }
        }
        #expect(calls == 1)
        #expect(throws: NotRetriable.self) {
            try Backoff(initialDelay: 0.001).run("write", logger: logger, stop: StopRequest()) {
                calls += 1
                throw NotRetriable()
            }
        }
        #expect(calls == 2)
        #expect(try Backoff().run("write", logger: logger, stop: StopRequest()) { 7 } == 7)
        #expect(handler.messages.isEmpty)
    }

    @Test("when told to stop, it gives up with the last error instead of retrying on")
    func givesUp() {
        let handler = RecordingLogHandler()
        var calls = 0
        do {
            let stop = StopRequest()
            _ = try Backoff(initialDelay: 0.001).run("write", logger: Logger(label: "test") { _ in handler }, stop: stop) {
                () throws -> Int in
                calls += 1
                if calls >= 3 { stop.request() }
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

    @Test("a stop requested during a long delay ends the wait then, not at the delay's end")
    func stopInterruptsTheDelay() throws {
        let stop = StopRequest()
        let started = Date()
        DispatchQueue.global().asyncAfter(deadline: .now() + 0.2) { stop.request() }
        var calls = 0
        #expect(throws: Backoff.GaveUp.self) {
            // Each delay is 30 to 60 s: only the stop can end this within the test.
            try Backoff(initialDelay: 60, maximumDelay: 60).run("write", logger: Logger(label: "test"), stop: stop) { () throws -> Int in
                calls += 1
                throw Transient()
            }
        }
        #expect(calls == 1, "no retry after the stop")
        #expect(Date().timeIntervalSince(started) < 20, "the 30 s or longer delay was cut short")
    }

    @Test("a stop request wakes a waiter at once and stays requested")
    func stopRequestWakes() {
        let stop = StopRequest()
        #expect(!stop.wait(seconds: 0.01), "nothing requested: the wait runs out")
        DispatchQueue.global().asyncAfter(deadline: .now() + 0.1) { stop.request() }
        #expect(stop.wait(seconds: 60))
        #expect(stop.isRequested && stop.wait(seconds: 60), "a later wait returns at once")
    }
}
