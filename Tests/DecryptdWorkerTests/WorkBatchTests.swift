import DecryptdStore
import DecryptdTestSupport
import Foundation
import KafkaClient
import PhoneDecryption
import Testing

@testable import DecryptdWorker
@testable import SyntheticLoad

@Suite("Work batches: splitting into lanes, key slots, decrypting in place")
struct WorkBatchTests {
    @Test("split: every job once, a user's jobs all in one lane, batches bounded, order kept within a lane")
    func split() {
        var messages: [KafkaMessage] = []
        for index in 0..<600 {
            let value =
                index % 50 == 7
                ? "not a job"
                : #"{"openid":"user-\#(index % 40)","encryptedData":"AAAA","iv":"AAAAAAAAAAAAAAAAAAAAAA=="}"#
            messages.append(jobMessage(index, partition: Int32(index % 3), value: value))
        }
        let batches = WorkBatch.split(FetchedMessages(messages: messages), appids: ["wx1"], lanes: 4, batchSize: 50).batches

        let offsets = batches.flatMap { $0.jobs.map(\.message.offset) }
        #expect(offsets.count == 600)
        #expect(Set(offsets).count == 600)
        #expect(batches.allSatisfy { $0.jobs.count <= 50 && !$0.jobs.isEmpty })
        var laneOfUser: [String: Set<Int>] = [:]
        for batch in batches {
            for job in batch.jobs { if let openid = job.openid { laneOfUser[openid, default: []].insert(batch.lane) } }
        }
        #expect(laneOfUser.count == 40)
        #expect(laneOfUser.values.allSatisfy { $0.count == 1 }, "a user is written by one persist slot only")
        #expect(Set(laneOfUser.values.map { $0.first! }).count == 4, "40 users spread over all 4 lanes")
        let malformedLanes = Set(batches.filter { $0.jobs.contains { $0.openid == nil } }.map(\.lane))
        #expect(malformedLanes.count > 1, "jobs without a user are spread too")
        for lane in 0..<4 {
            let inLane = batches.filter { $0.lane == lane }.flatMap { $0.jobs.map(\.message.offset) }
            #expect(inLane == inLane.sorted())
        }
    }

    @Test("split: a lane just over the batch size becomes equal halves, not a full batch and a stub")
    func splitEvenly() {
        let job = { (index: Int) in #"{"openid":"user-\#(index)","encryptedData":"AAAA","iv":"AAAAAAAAAAAAAAAAAAAAAA=="}"# }
        let fetched = { (count: Int) in FetchedMessages(messages: (0..<count).map { jobMessage($0, partition: 0, value: job($0)) }) }
        #expect(WorkBatch.split(fetched(103), appids: ["wx1"], lanes: 1, batchSize: 100).batches.map(\.jobs.count) == [52, 51])
        #expect(WorkBatch.split(fetched(100), appids: ["wx1"], lanes: 1, batchSize: 100).batches.map(\.jobs.count) == [100])
        #expect(WorkBatch.split(fetched(250), appids: ["wx1"], lanes: 1, batchSize: 100).batches.map(\.jobs.count) == [84, 84, 82])
        #expect(WorkBatch.split(fetched(0), appids: ["wx1"], lanes: 2, batchSize: 100).batches.isEmpty)
    }

    @Test("key slots: one per distinct user across batches, only for jobs still to decrypt")
    func keySlots() {
        let job = { (openid: String, appid: String) in
            #"{"openid":"\#(openid)","appid":"\#(appid)","encryptedData":"AAAA","iv":"AAAAAAAAAAAAAAAAAAAAAA=="}"#
        }
        let values = [job("a", "wx1"), "not a job", job("b", "wx1"), job("a", "wx2"), job("a", "wx1"), job("c", "wx9"), job("b", "wx1")]
        var batches = WorkBatch.split(
            FetchedMessages(messages: values.enumerated().map { jobMessage($0.offset, partition: 0, value: $0.element) }),
            appids: ["wx1", "wx2"], lanes: 2, batchSize: 2
        ).batches
        let users = WorkBatch.assignKeySlots(&batches)
        #expect(Set(users).count == users.count, "each user once")
        #expect(Set(users) == [UserKey(appid: "wx1", openid: "a"), UserKey(appid: "wx1", openid: "b"), UserKey(appid: "wx2", openid: "a")])
        for job in batches.flatMap(\.jobs) {
            if job.outcome == nil {
                #expect(users[Int(job.keySlot)] == job.user, "a job points at its own user")
            } else {
                #expect(job.keySlot == -1, "malformed or foreign-appid jobs need no keys")
            }
        }
    }

    @Test("jobs decrypt from their message, with JSON escapes in any field, and an unserved appid is appid_mismatch")
    func decryptInPlace() {
        let appid = "wx6ede2086ee29a89f"
        var synthetic = SyntheticPayloads(appid: appid, generator: SystemRandomNumberGenerator())
        let payload = synthetic.make(.none)
        /// Every character as a \u escape (what an over-eager encoder may send).
        func escaped(_ text: String) -> String { text.unicodeScalars.map { "\\u" + String(format: "%04x", $0.value) }.joined() }
        let values = [
            #"{"openid":"o1","encryptedData":"\#(payload.encryptedData)","iv":"\#(payload.iv)"}"#,
            #"{"openid":"o1","encryptedData":"\#(payload.encryptedData.replacingOccurrences(of: "/", with: #"\/"#))","iv":"\#(payload.iv)","appid":"\#(appid)"}"#,
            #"{"openid":"o1","encryptedData":"\#(escaped(payload.encryptedData))","iv":"\#(escaped(payload.iv))","appid":"\#(escaped(appid))"}"#,
            #"{"\#(escaped("iv"))":"\#(payload.iv)","appid":"wxother","\#(escaped("openid"))":"o1","encryptedData":"\#(payload.encryptedData)"}"#,
        ]
        var batch = WorkBatch(
            jobs: values.enumerated().map { PendingJob(jobMessage($0, partition: 0, value: $1), appids: [appid, "wx1"]) })
        var slots = UserSlots(capacity: batch.jobs.count)
        batch.assignKeySlots(&slots)
        #expect(slots.users == [UserKey(appid: appid, openid: "o1")])
        batch.sessionKeys = [payload.sessionKeys]
        batch.decrypt(using: DecryptorPool(), concurrency: 2)

        for index in 0..<3 {
            guard case .success(let phone) = batch.jobs[index].outcome else {
                Issue.record("job \(index): \(String(describing: batch.jobs[index].outcome))")
                continue
            }
            #expect(phone.phoneNumber == payload.phoneNumber)
            #expect(batch.jobs[index].user == UserKey(appid: appid, openid: "o1"))
        }
        #expect(batch.jobs[3].appid == "wxother")
        #expect(batch.jobs[3].openid == "o1")
        // A job with no outcome at all would be left unfinished: it must fail, with its reason.
        guard case .failure(let failure) = batch.jobs[3].outcome else {
            Issue.record("job 3 must fail appid_mismatch, not \(String(describing: batch.jobs[3].outcome))")
            return
        }
        #expect(failure.reason == .appidMismatch)
        #expect(failure.detail == "job appid wxother is not one this worker serves")
    }

    @Test("every known-answer vector, as a job in a message, gets its expected outcome on the worker's path")
    func knownAnswerVectorsInPlace() throws {
        let vectors = VectorFile.loaded
        // Foundation's encoder writes "/" as "\/" and the line-break vector's breaks as "\n": the
        // worker reads the fields where they lie in the message, escapes and all.
        struct Job: Encodable { var openid: String, encryptedData: String, iv: String, appid: String? }
        let values = try vectors.cases.enumerated().map { index, vector in
            let job = Job(
                openid: vector.openid, encryptedData: vector.encryptedData, iv: vector.iv,
                appid: index.isMultiple(of: 2) ? vector.appid : nil)
            return String(decoding: try JSONEncoder().encode(job), as: UTF8.self)
        }
        #expect(values.contains { $0.contains(#"\/"#) } && values.contains { $0.contains(#"\n"#) })
        var batch = WorkBatch(
            jobs: values.enumerated().map { PendingJob(jobMessage($0, partition: 0, value: $1), appids: [vectors.appid]) })
        var slots = UserSlots(capacity: batch.jobs.count)
        batch.assignKeySlots(&slots)
        let keys = Dictionary(uniqueKeysWithValues: vectors.cases.map { ($0.openid, $0.sessionKey) })
        batch.sessionKeys = slots.users.map { [keys[$0.openid]!] }
        batch.decrypt(using: DecryptorPool(), concurrency: 2)

        for (job, vector) in zip(batch.jobs, vectors.cases) {
            switch (job.outcome, vector.expect.ok) {
            case (.success(let payload)?, let ok?):
                #expect(payload.phoneNumber == ok.phoneNumber, "\(vector.name)")
                #expect(payload.purePhoneNumber == ok.purePhoneNumber, "\(vector.name)")
                #expect(payload.countryCode == ok.countryCode, "\(vector.name)")
                #expect(payload.watermarkTimestamp == ok.watermarkTimestamp, "\(vector.name)")
            case (.failure(let failure)?, nil):
                #expect(failure.reason.rawValue == vector.expect.error, "\(vector.name)")
            default:
                Issue.record("\(vector.name): expected \(vector.expect.error ?? "ok"), got \(String(describing: job.outcome))")
            }
        }
    }

    @Test("the lane hash fills lanes evenly for sequential openids")
    func laneBalance() {
        var counts = [Int](repeating: 0, count: 4)
        for index in 0..<40_000 { counts[Int(WorkBatch.laneHash("o1u\(index)") % 4)] += 1 }
        #expect(counts.allSatisfy { abs($0 - 10_000) < 500 }, "\(counts)")
    }
}
