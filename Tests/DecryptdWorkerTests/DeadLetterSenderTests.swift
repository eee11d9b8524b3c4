import DeadLetterFormat
import Foundation
import KafkaClient
import Logging
import PhoneDecryption
import Testing

@testable import DecryptdWorker

@Suite("Dead-letter sender")
struct DeadLetterSenderTests {
    static let tooLarge = KafkaError(code: 10, name: "MSG_SIZE_TOO_LARGE", message: "too large", isRetriable: false)
    static let timedOut = KafkaError(code: -192, name: "_MSG_TIMED_OUT", message: "timed out", isRetriable: true)
    static let denied = KafkaError(code: 29, name: "TOPIC_AUTHORIZATION_FAILED", message: "denied", isRetriable: false)

    /// A transport whose answer for each attempt of each record the test decides; it keeps every
    /// record it was given, in order.
    final class ScriptedTransport: DeadLetterTransport, @unchecked Sendable {
        private let lock = NSLock()
        private var attempts: [String: Int] = [:]
        private(set) var sent: [KafkaRecord] = []
        /// The error for the `attempt`th (1-based) send of the record with this key; nil: acknowledged.
        let answer: @Sendable (_ record: KafkaRecord, _ attempt: Int) -> KafkaError?

        init(answer: @escaping @Sendable (_ record: KafkaRecord, _ attempt: Int) -> KafkaError?) { self.answer = answer }

        func send(_ records: [KafkaRecord]) -> [Result<KafkaMessageID, KafkaError>] {
            lock.withLock {
                records.enumerated().map { index, record in
                    sent.append(record)
                    let key = String(decoding: record.key ?? [], as: UTF8.self)
                    attempts[key, default: 0] += 1
                    if let error = answer(record, attempts[key]!) { return .failure(error) }
                    return .success(KafkaMessageID(topic: record.topic, partition: 0, offset: Int64(sent.count)))
                }
            }
        }

        func send(_ records: [KafkaRecord], completion: @escaping @Sendable ([Result<KafkaMessageID, KafkaError>]) -> Void) {
            let results = send(records)
            DispatchQueue.global().async { completion(results) }
        }

        var sentKeys: [String] { lock.withLock { sent.map { String(decoding: $0.key ?? [], as: UTF8.self) } } }
    }

    private func letter(_ key: String) -> KafkaRecord {
        let message = KafkaMessage(
            id: KafkaMessageID(topic: "jobs", partition: 1, offset: 3), key: Array(key.utf8), value: Array("{}".utf8), headers: [],
            timestamp: nil
        )
        return DeadLetter.record(
            for: message, failure: DecryptFailure(.malformedJob, "no openid"),
            source: .init(topic: "jobs", partition: 1, offset: 3, timestamp: nil), attempts: 1, topic: "dlq", group: "g"
        )
    }

    private func sender(_ transport: ScriptedTransport, stop: StopRequest = StopRequest()) -> DeadLetterSender {
        DeadLetterSender(
            transport: transport, backoff: Backoff(initialDelay: 0.001, maximumDelay: 0.002), logger: Logger(label: "test"), stop: stop)
    }

    final class Failures: @unchecked Sendable {
        private let lock = NSLock()
        private var errors: [any Error] = []
        func add(_ error: any Error) { lock.withLock { errors.append(error) } }
        var all: [any Error] { lock.withLock { errors } }
    }

    @Test("sendAll retries only the records not acknowledged, until all are")
    func retriesOnlyTheFailed() throws {
        let transport = ScriptedTransport { record, attempt in
            record.key == Array("b".utf8) && attempt < 3 ? Self.timedOut : nil
        }
        try sender(transport).sendAll(["a", "b", "c"].map(letter))
        #expect(transport.sentKeys == ["a", "b", "c", "b", "b"])
    }

    @Test("a record refused as too large is sent again at once without its value, and so marked")
    func shrinksTooLarge() throws {
        let transport = ScriptedTransport { record, _ in record.value != nil && record.key == Array("big".utf8) ? Self.tooLarge : nil }
        try sender(transport).sendAll([letter("big"), letter("small")])
        #expect(transport.sentKeys == ["big", "small", "big"])
        let last = try #require(transport.sent.last)
        #expect(last.value == nil && DeadLetter.header(DeadLetter.omitted, in: last.headers) == "value")
    }

    @Test("a permanent error is thrown at once; a stop ends retries with GaveUp")
    func permanentAndStop() {
        let denied = ScriptedTransport { _, _ in Self.denied }
        #expect(throws: KafkaError.self) { try sender(denied).sendAll([letter("a")]) }
        #expect(denied.sentKeys == ["a"])

        let stop = StopRequest()
        let down = ScriptedTransport { _, attempt in
            if attempt == 3 { stop.request() }
            return Self.timedOut
        }
        #expect(throws: Backoff.GaveUp.self) { try sender(down, stop: stop).sendAll([letter("a")]) }
        #expect(down.sentKeys == ["a", "a", "a"])
    }

    @Test("send without waiting: `then` once every record is acknowledged, after retries on the sender's thread")
    func asyncSend() async throws {
        let transport = ScriptedTransport { record, attempt in record.key == Array("b".utf8) && attempt == 1 ? Self.timedOut : nil }
        let sender = sender(transport)
        sender.start(onError: { error, _ in Issue.record("no permanent error expected: \(error)") })
        defer { sender.close() }
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            sender.send(["a", "b"].map(letter)) { done.resume() }
        }
        #expect(transport.sentKeys == ["a", "b", "b"])
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            sender.send([]) { done.resume() }
        }
    }

    @Test("send without waiting: a permanent failure goes to the retry stage's onError, named, and `then` is never called")
    func asyncPermanentFailure() async throws {
        let transport = ScriptedTransport { _, attempt in attempt == 1 ? Self.timedOut : Self.denied }
        let failures = Failures()
        let stages = Failures()
        let sender = sender(transport)
        sender.start(onError: { error, stage in
            failures.add(error)
            stages.add(StageName(name: stage))
        })
        let called = Failures()
        sender.send([letter("a")]) { called.add(CancellationError()) }
        let deadline = Date(timeIntervalSinceNow: 10)
        while failures.all.isEmpty, Date() < deadline { try await Task.sleep(for: .milliseconds(5)) }
        sender.close()
        #expect((failures.all.first as? KafkaError)?.name == "TOPIC_AUTHORIZATION_FAILED")
        #expect(called.all.isEmpty, "the batch is never completed")
        #expect((stages.all.first as? StageName)?.name == "decryptd-dead-letter-retry")
    }

    struct StageName: Error {
        var name: String
    }
}
