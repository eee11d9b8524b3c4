import DeadLetterFormat
import Foundation
import KafkaClient
import PhoneDecryption
import Testing

@testable import DecryptdStore
@testable import DecryptdWorker

/// The parking decisions and formats, without services (SPEC "Waiting for a session key",
/// "Outcome records").
@Suite("Parking: which jobs wait, what their rows and outcome records say")
struct ParkingTests {
    static let appid = "wx6ede2086ee29a89f"
    static let context = BatchOutcome.DeadLetterContext(topic: "dlq", group: "g", failedAt: "2026-12-04T00:00:00.000Z")
    static let phone = PhonePayload(
        phoneNumber: "+86 13800138000", purePhoneNumber: "13800138000", countryCode: "86", watermarkTimestamp: 7)

    static func message(_ offset: Int64, value: String, headers: [KafkaHeader] = []) -> KafkaMessage {
        KafkaMessage(
            id: KafkaMessageID(topic: "jobs", partition: 1, offset: offset), key: Array("k\(offset)".utf8), value: Array(value.utf8),
            headers: headers, timestamp: 1_700_000_000_000 + offset)
    }

    static func encrypted(_ offset: Int64, openid: String = "o1", requestId: String? = nil, headers: [KafkaHeader] = []) -> PendingJob {
        let request = requestId.map { #","requestId":"\#($0)""# } ?? ""
        let value = #"{"openid":"\#(openid)","encryptedData":"AAAAAAAAAAAAAAAAAAAAAA==","iv":"AAAAAAAAAAAAAAAAAAAAAA=="\#(request)}"#
        return PendingJob(message(offset, value: value, headers: headers), appids: [appid])
    }

    static func code(_ offset: Int64) -> PendingJob {
        PendingJob(message(offset, value: #"{"openid":"o9","code":"c0de"}"#), appids: [appid])
    }

    @Test("only encrypted jobs that failed for a parking reason wait; each keeps the newest key it was tried with")
    func whichJobsPark() {
        var jobs = [
            Self.encrypted(0, openid: "a"), Self.encrypted(1, openid: "b"), Self.encrypted(2, openid: "c"), Self.encrypted(3, openid: "d"),
            Self.code(4), PendingJob(Self.message(5, value: "not json"), appids: [Self.appid]),
        ]
        jobs[0].outcome = .failure(DecryptFailure(.sessionNotFound, "no session key"))
        jobs[1].outcome = .failure(DecryptFailure(.badPadding, "padding"))
        jobs[2].outcome = .failure(DecryptFailure(.invalidIV, "iv"))
        jobs[3].outcome = .success(Self.phone)
        jobs[4].outcome = .failure(DecryptFailure(.codeInvalid, "40029"))
        jobs[0].keySlot = 0
        jobs[1].keySlot = 1
        var batch = WorkBatch(jobs: jobs)
        batch.newestIssuedAt = [nil, 1_700_000_000_123_456]
        batch.park(reasons: [.sessionNotFound, .badPadding])
        guard case .parked(let first, let none) = batch.jobs[0].outcome, case .parked(let second, let tried) = batch.jobs[1].outcome else {
            Issue.record("the two curable failures park")
            return
        }
        #expect(first.reason == .sessionNotFound && none == nil)
        #expect(second.reason == .badPadding && tried == 1_700_000_000_123_456)
        #expect(batch.jobs[2].outcome?.failureValue?.reason == .invalidIV, "a reason a key cannot cure fails at once")
        if case .success = batch.jobs[3].outcome {} else { Issue.record("a success stays one") }
        #expect(batch.jobs[4].outcome?.failureValue?.reason == .codeInvalid, "code jobs never park")
        #expect(batch.jobs[5].outcome?.failureValue?.reason == .malformedJob, "a value that is not a job never parks")

        var narrow = WorkBatch(jobs: [Self.encrypted(0)])
        narrow.jobs[0].outcome = .failure(DecryptFailure(.badPadding, "padding"))
        narrow.park(reasons: [.sessionNotFound])
        #expect(narrow.jobs[0].outcome?.failureValue?.reason == .badPadding, "--park-reasons narrows it")
    }

    @Test("a parked job becomes a parked row (its bytes, headers and coordinates), not a failure row or a dead letter")
    func parkedRow() throws {
        let headers = [KafkaHeader("traceparent", "00-abc-01"), KafkaHeader("empty", nil), KafkaHeader("bin", [0, 255, 10])]
        var job = Self.encrypted(7, openid: "o7", headers: headers)
        job.outcome = .parked(DecryptFailure(.badPadding, "padding byte 0"), triedIssuedAt: 42)
        let outcome = BatchOutcome(fresh: [job], deadLetters: Self.context, parkTimeout: 900)
        #expect(outcome.rows.failures.isEmpty && outcome.deadLetters.isEmpty && outcome.rows.members.isEmpty)
        #expect(outcome.rows.parkTimeoutSeconds == 900)
        let row = try #require(outcome.rows.parked.first)
        #expect(row.source == SourceCoordinates(topic: "jobs", partition: 1, offset: 7) && row.sourceTimestamp == 1_700_000_000_007)
        #expect(row.user == UserKey(appid: Self.appid, openid: "o7") && row.reason == "bad_padding" && row.triedIssuedAt == 42)
        #expect(row.key == job.message.key && row.value == job.message.value)
        let restored = row.message
        #expect(restored == job.message, "the job as it was consumed, headers and all")
        #expect(PackedHeaders.unpack(PackedHeaders.pack([])).isEmpty)
    }

    @Test("outcome records: one per job, status and reason, the job's headers and requestId; never a phone number")
    func announcements() throws {
        var ok = Self.encrypted(1, openid: "o1", requestId: "r-1", headers: [KafkaHeader("traceparent", "t1")])
        ok.outcome = .success(Self.phone)
        var failed = Self.encrypted(2, openid: "o2")
        failed.outcome = .failure(DecryptFailure(.invalidIV, "iv"))
        var parked = Self.encrypted(3, openid: "o3", requestId: "r-3")
        parked.outcome = .parked(DecryptFailure(.sessionNotFound, "no session key"), triedIssuedAt: nil)
        var malformed = PendingJob(Self.message(4, value: "[]"), appids: [Self.appid])
        malformed.outcome = malformed.outcome ?? .failure(DecryptFailure(.malformedJob, "x"))
        let outcome = BatchOutcome(
            fresh: [ok, failed, parked, malformed], deadLetters: Self.context, parkTimeout: 60, outcomesTopic: "out")
        #expect(outcome.announcements.count == 4 && outcome.announcements.allSatisfy { $0.topic == "out" })
        let objects = try outcome.announcements.map { try #require(JSONSerialization.jsonObject(with: Data($0.value!)) as? [String: Any]) }
        #expect(objects.map { $0["status"] as? String } == ["ok", "failed", "parked", "failed"])
        #expect(objects.map { $0["reason"] as? String } == [nil, "invalid_iv", "session_not_found", "malformed_job"])
        #expect(objects.map { $0["requestId"] as? String } == ["r-1", nil, "r-3", nil])
        #expect(objects[0]["kind"] as? String == "encrypted" && objects[3]["kind"] is NSNull && objects[3]["openid"] is NSNull)
        let source = try #require(objects[1]["source"] as? [String: Any])
        #expect(source["topic"] as? String == "jobs" && source["partition"] as? Int == 1 && source["offset"] as? Int == 2)
        #expect(source["timestamp"] as? Int == 1_700_000_000_002)
        #expect(outcome.announcements[0].key == Array("o1".utf8) && outcome.announcements[0].headers == [KafkaHeader("traceparent", "t1")])
        #expect(outcome.announcements[3].key == Array("k4".utf8), "a value that is not a job keeps its own key")
        #expect(!outcome.announcements.contains { String(decoding: $0.value!, as: UTF8.self).contains("13800138000") })
        #expect(BatchOutcome(fresh: [ok], deadLetters: Self.context).announcements.isEmpty, "no topic, no records")
    }

    @Test("the trigger's notification names the user: the appid's length in characters, ':', appid, openid")
    func notificationPayload() {
        #expect(DecryptdDatabase.user(fromNotification: "4:wxABo1") == UserKey(appid: "wxAB", openid: "o1"))
        #expect(DecryptdDatabase.user(fromNotification: "2:微信o:x") == UserKey(appid: "微信", openid: "o:x"))
        #expect(DecryptdDatabase.user(fromNotification: "0:o") == UserKey(appid: "", openid: "o"))
        #expect(DecryptdDatabase.user(fromNotification: "") == nil, "an empty payload names nobody: look at everyone")
        #expect(DecryptdDatabase.user(fromNotification: "9:ab") == nil)
        #expect(DecryptdDatabase.user(fromNotification: "x:ab") == nil)
    }
}
