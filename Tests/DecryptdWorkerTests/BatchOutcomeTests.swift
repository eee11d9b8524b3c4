import DeadLetterFormat
import DecryptdStore
import KafkaClient
import PhoneDecryption
import Testing

@testable import DecryptdWorker

@Suite("Batch outcome: what a batch's results become")
struct BatchOutcomeTests {
    static let appid = "wx6ede2086ee29a89f"
    static let context = BatchOutcome.DeadLetterContext(topic: "dlq", group: "g", failedAt: "2026-12-04T00:00:00.000Z")

    private func job(_ offset: Int64, openid: String, outcome: JobOutcome, headers: [KafkaHeader] = [])
        -> PendingJob
    {
        let value = #"{"openid":"\#(openid)","encryptedData":"AAAA","iv":"AAAAAAAAAAAAAAAAAAAAAA=="}"#
        let message = KafkaMessage(
            id: KafkaMessageID(topic: "jobs", partition: 2, offset: offset), key: Array(openid.utf8), value: Array(value.utf8),
            headers: headers, timestamp: 1_700_000_000_000 + offset
        )
        var job = PendingJob(message, appids: [Self.appid])
        job.outcome = outcome
        return job
    }

    private static let phone = PhonePayload(phoneNumber: "+86 138", purePhoneNumber: "138", countryCode: "86", watermarkTimestamp: 7)

    @Test("fresh jobs: a member row per success, a failure row and a first dead letter per failure, each its own source")
    func fresh() throws {
        let jobs = [
            job(10, openid: "o1", outcome: .success(Self.phone)),
            job(11, openid: "o2", outcome: .failure(DecryptFailure(.badPadding, "padding byte 0"))),
            job(12, openid: "o3", outcome: .success(Self.phone)),
        ]
        let outcome = BatchOutcome(fresh: jobs, deadLetters: Self.context)
        #expect(outcome.rows.members.map(\.user.openid) == ["o1", "o3"])
        #expect(outcome.rows.members.first?.phoneNumber == "+86 138" && outcome.rows.members.first?.watermarkTimestamp == 7)
        #expect(outcome.rows.resolved.isEmpty)
        let failure = try #require(outcome.rows.failures.first)
        #expect(outcome.rows.failures.count == 1)
        #expect(failure.reason == "bad_padding" && failure.openid == "o2" && failure.appid == Self.appid && failure.jobKind == "encrypted")
        #expect(failure.source == SourceCoordinates(topic: "jobs", partition: 2, offset: 11))
        let letter = try #require(outcome.deadLetters.first)
        #expect(outcome.deadLetters.count == 1)
        #expect(letter.topic == "dlq" && letter.key == Array("o2".utf8) && letter.value == jobs[1].message.value)
        let header = { (name: String) in DeadLetter.header(name, in: letter.headers) }
        #expect(header(DeadLetter.reason) == "bad_padding" && header(DeadLetter.detail) == "padding byte 0")
        #expect(
            header(DeadLetter.sourceTopic) == "jobs" && header(DeadLetter.sourcePartition) == "2" && header(DeadLetter.sourceOffset) == "11"
        )
        #expect(header(DeadLetter.sourceTimestamp) == "1700000000011")
        #expect(header(DeadLetter.attempts) == "1" && header(DeadLetter.consumerGroup) == "g")
        #expect(header(DeadLetter.failedAt) == Self.context.failedAt)
    }

    @Test("a success already stored (a code found in the ledger) writes no member row again; no failure formats nothing")
    func alreadyStored() {
        let stored = job(1, openid: "o1", outcome: .alreadyStored)
        var formatted = false
        let outcome = BatchOutcome(
            fresh: [stored],
            deadLetters: {
                formatted = true
                return Self.context
            }())
        #expect(outcome.rows.isEmpty && outcome.deadLetters.isEmpty)
        #expect(!formatted, "the failure time is formatted only when a job failed")
    }

    @Test("replayed jobs: a success resolves its original source's failure row; a failure counts one more attempt at its original source")
    func replayed() throws {
        let origins = [
            BatchOutcome.Origin(source: .init(topic: "jobs", partition: 5, offset: 50, timestamp: 99), attempts: 1),
            BatchOutcome.Origin(source: .init(topic: "jobs", partition: 6, offset: 60, timestamp: nil), attempts: 3),
        ]
        let jobs = [
            job(0, openid: "o1", outcome: .success(Self.phone)),
            job(1, openid: "o2", outcome: .failure(DecryptFailure(.sessionNotFound, "no session key"))),
        ]
        let outcome = BatchOutcome(replayed: jobs, origins: origins, deadLetters: Self.context)
        #expect(outcome.rows.members.map(\.user.openid) == ["o1"])
        #expect(outcome.rows.resolved == [SourceCoordinates(topic: "jobs", partition: 5, offset: 50)])
        #expect(outcome.rows.failures.map(\.source) == [SourceCoordinates(topic: "jobs", partition: 6, offset: 60)])
        let letter = try #require(outcome.deadLetters.first)
        #expect(DeadLetter.header(DeadLetter.attempts, in: letter.headers) == "4")
        #expect(DeadLetter.header(DeadLetter.sourceOffset, in: letter.headers) == "60")
        #expect(DeadLetter.header(DeadLetter.sourceTimestamp, in: letter.headers) == nil, "no timestamp known: the header is left out")
    }
}
