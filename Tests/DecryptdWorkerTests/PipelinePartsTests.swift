import Foundation
@testable import SyntheticLoad
@testable import DecryptdWorker
import DecryptdStore
import DecryptdTestSupport
import KafkaClient
import PhoneDecryption
import Testing

@Suite("Worker pipeline parts")
struct PipelinePartsTests {
    private func message(_ offset: Int, partition: Int32, value: String) -> KafkaMessage {
        KafkaMessage(
            id: KafkaMessageID(topic: "jobs", partition: partition, offset: Int64(offset)),
            key: nil, value: Array(value.utf8), headers: [], timestamp: nil
        )
    }

    @Test("split: every job once, a user's jobs all in one lane, batches bounded, order kept within a lane")
    func split() {
        var messages: [KafkaMessage] = []
        for index in 0..<600 {
            let value = index % 50 == 7
                ? "not a job"
                : #"{"openid":"user-\#(index % 40)","encryptedData":"AAAA","iv":"AAAAAAAAAAAAAAAAAAAAAA=="}"#
            messages.append(message(index, partition: Int32(index % 3), value: value))
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
        let fetched = { (count: Int) in FetchedMessages(messages: (0..<count).map { self.message($0, partition: 0, value: job($0)) }) }
        #expect(WorkBatch.split(fetched(103), appids: ["wx1"], lanes: 1, batchSize: 100).batches.map(\.jobs.count) == [52, 51])
        #expect(WorkBatch.split(fetched(100), appids: ["wx1"], lanes: 1, batchSize: 100).batches.map(\.jobs.count) == [100])
        #expect(WorkBatch.split(fetched(250), appids: ["wx1"], lanes: 1, batchSize: 100).batches.map(\.jobs.count) == [84, 84, 82])
        #expect(WorkBatch.split(fetched(0), appids: ["wx1"], lanes: 2, batchSize: 100).batches.isEmpty)
    }

    @Test("key slots: one per distinct user across batches, only for jobs still to decrypt")
    func keySlots() {
        let job = { (openid: String, appid: String) in #"{"openid":"\#(openid)","appid":"\#(appid)","encryptedData":"AAAA","iv":"AAAAAAAAAAAAAAAAAAAAAA=="}"# }
        let values = [job("a", "wx1"), "not a job", job("b", "wx1"), job("a", "wx2"), job("a", "wx1"), job("c", "wx9"), job("b", "wx1")]
        var batches = WorkBatch.split(
            FetchedMessages(messages: values.enumerated().map { message($0.offset, partition: 0, value: $0.element) }),
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

    @Test("user slots: equal users share a slot, different ones never do, also when their hashes collide")
    func userSlots() {
        var slots = UserSlots(capacity: 3000)
        var expected: [UserKey: Int32] = [:]
        for index in 0..<3000 {
            // Users repeat; the same openid under two appids is two users; every third hash collides.
            let user = UserKey(appid: index % 7 == 0 ? "wx2" : "wx1", openid: "o\(index % 900)")
            let hash = index % 3 == 0 ? 42 : WorkBatch.laneHash(user.openid)
            let slot = slots.slot(appid: user.appid, openid: user.openid, hash: hash)
            #expect(slots.users[Int(slot)] == user)
            if let earlier = expected[user] { #expect(slot == earlier) } else { expected[user] = slot }
        }
        #expect(slots.users.count == expected.count)
        #expect(Set(slots.users).count == slots.users.count, "each user once")

        // Two spellings of one Unicode text (precomposed and decomposed é) are two openids in
        // PostgreSQL, so two users here, even when their hashes collide.
        var spellings = UserSlots(capacity: 2)
        let precomposed = spellings.slot(appid: "wx1", openid: "caf\u{E9}", hash: 7)
        let decomposed = spellings.slot(appid: "wx1", openid: "cafe\u{301}", hash: 7)
        #expect(precomposed != decomposed)
        #expect(spellings.slot(appid: "wx1", openid: "cafe\u{301}", hash: 7) == decomposed)
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
        var batch = WorkBatch(jobs: values.enumerated().map { PendingJob(message($0, partition: 0, value: $1), appids: [appid, "wx1"]) })
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
        #expect(batch.jobs[3].outcome.flatMap { try? $0.get() } == nil)
        if case .failure(let failure) = batch.jobs[3].outcome {
            #expect(failure.reason == .appidMismatch)
            #expect(failure.detail == "job appid wxother is not one this worker serves")
        }
    }

    @Test("every known-answer vector, as a job in a message, gets its expected outcome on the worker's path")
    func knownAnswerVectorsInPlace() throws {
        let vectors = VectorFile.loaded
        // Foundation's encoder writes "/" as "\/" and the line-break vector's breaks as "\n": the
        // worker reads the fields where they lie in the message, escapes and all.
        struct Job: Encodable { var openid: String, encryptedData: String, iv: String, appid: String? }
        let values = try vectors.cases.enumerated().map { index, vector in
            let job = Job(openid: vector.openid, encryptedData: vector.encryptedData, iv: vector.iv, appid: index.isMultiple(of: 2) ? vector.appid : nil)
            return String(decoding: try JSONEncoder().encode(job), as: UTF8.self)
        }
        #expect(values.contains { $0.contains(#"\/"#) } && values.contains { $0.contains(#"\n"#) })
        var batch = WorkBatch(jobs: values.enumerated().map { PendingJob(message($0, partition: 0, value: $1), appids: [vectors.appid]) })
        var slots = UserSlots(capacity: batch.jobs.count)
        batch.assignKeySlots(&slots)
        let keys = Dictionary(uniqueKeysWithValues: vectors.cases.map { ($0.openid, $0.session_key) })
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

    @Test("loadgen makes its load a chunk at a time, and the same seed gives the same load")
    func loadInChunks() {
        var plan = LoadGenerator.Plan(jobs: 2005, appid: "wx1")
        plan.chunkSize = 1002
        #expect(plan.chunkSize == 1000, "a multiple of 5")
        plan.faults = [.invalidSessionKey: 0.05, .badPadding: 0.05]
        func chunks(seed: UInt64) -> [(records: [KafkaRecord], sessions: [String])] {
            plan.seed = seed
            var maker = LoadGenerator.JobMaker(LoadGenerator(plan: plan))
            var chunks: [(records: [KafkaRecord], sessions: [String])] = []
            while maker.next < plan.jobs {
                let (jobs, sessions, _) = maker.chunk()
                chunks.append((jobs.map(\.record), sessions.map { "\($0.user.openid) \($0.sessionKey)" }))
            }
            return chunks
        }
        let first = chunks(seed: 3)
        #expect(first.map(\.records.count) == [1000, 1000, 5])
        #expect(first[0].sessions.count > 20, "invalid_session_key jobs bring their own broken keys")
        let again = chunks(seed: 3)
        #expect(first.map(\.records) == again.map(\.records))
        #expect(first.map(\.sessions) == again.map(\.sessions))
        #expect(chunks(seed: 4)[0].records != first[0].records)
        // Users derive from the seed and their number alone.
        let generator = LoadGenerator(plan: plan)
        #expect(generator.user(17).storedKeys == generator.user(17).storedKeys)
        #expect(generator.user(17).secret != generator.user(18).secret)
    }

    @Test("an unserved appid shows in the failure detail only when it could be an appid", arguments: [
        ("wxother", "wxother"),
        (String(repeating: "w", count: 64), String(repeating: "w", count: 64)),
        (String(repeating: "w", count: 65), "of 65 bytes"),
        ("wx other", "of 8 bytes"),
        (#"wx\n1"#, "of 4 bytes"),  // JSON escapes, decoded before the check
        (#"wx\u00e91"#, "of 5 bytes"),
    ])
    func unservedAppidDetail(appid: String, shown: String) {
        let value = #"{"openid":"o1","appid":"\#(appid)","encryptedData":"AAAA","iv":"AAAAAAAAAAAAAAAAAAAAAA=="}"#
        let job = PendingJob(message(0, partition: 0, value: value), appids: ["wx1"])
        guard case .failure(let failure) = job.outcome else {
            Issue.record("expected appid_mismatch, got \(String(describing: job.outcome))")
            return
        }
        #expect(failure.reason == .appidMismatch)
        #expect(failure.detail == "job appid \(shown) is not one this worker serves")
    }

    @Test("reprocess takes a dead letter's source from its headers only when they are well formed")
    func reprocessSource() {
        func deadLetter(topic: String, partition: String = "7", offset: String = "42") -> KafkaMessage {
            KafkaMessage(
                id: KafkaMessageID(topic: "dlq", partition: 1, offset: 9), key: nil, value: Array("{}".utf8),
                headers: [
                    KafkaHeader(DeadLetter.sourceTopic, Array(topic.utf8)),
                    KafkaHeader(DeadLetter.sourcePartition, Array(partition.utf8)),
                    KafkaHeader(DeadLetter.sourceOffset, Array(offset.utf8)),
                ],
                timestamp: nil
            )
        }
        let original = Reprocessor.source(of: deadLetter(topic: "wechat.phone.jobs"))
        #expect((original.topic, original.partition, original.offset) == ("wechat.phone.jobs", 7, 42))
        for bad in [deadLetter(topic: "jobs\u{0}x"), deadLetter(topic: ""), deadLetter(topic: String(repeating: "t", count: 250)),
                    deadLetter(topic: "jobs topic"), deadLetter(topic: "jobs", partition: "x"), deadLetter(topic: "jobs", offset: "")] {
            let source = Reprocessor.source(of: bad)
            #expect((source.topic, source.partition, source.offset) == ("dlq", 1, 9), "the record is its own source")
        }
    }

    @Test("outcome tally: jobs by outcome name, fallbacks, repairs by kind")
    func outcomeTally() {
        func job(_ outcome: Result<PhonePayload, DecryptFailure>) -> PendingJob {
            var pending = PendingJob(message(0, partition: 0, value: "{}"), appids: ["wx1"])
            pending.outcome = outcome
            return pending
        }
        func payload(keyIndex: Int = 0, repairs: Base64Repairs = []) -> Result<PhonePayload, DecryptFailure> {
            .success(PhonePayload(phoneNumber: "1", purePhoneNumber: "1", countryCode: "86", watermarkTimestamp: 1, keyIndex: keyIndex, repairs: repairs))
        }
        let tally = OutcomeTally([
            job(payload()), job(payload(keyIndex: 1)), job(payload(keyIndex: 2, repairs: [.spaceAsPlus, .urlSafeAlphabet])),
            job(payload(repairs: [.urlSafeAlphabet])),
            job(.failure(DecryptFailure(.badPadding, ""))), job(.failure(DecryptFailure(.badPadding, ""))),
            job(.failure(DecryptFailure(.appidMismatch, ""))),
        ])
        #expect(tally.counts == ["ok": 4, "bad_padding": 2, "appid_mismatch": 1])
        #expect(tally.fallbacks == 2)
        let byName = Dictionary(uniqueKeysWithValues: zip(Base64Repairs.named.map(\.1), tally.repairs))
        #expect(byName["space_as_plus"] == 1 && byName["url_safe_alphabet"] == 2)
        #expect(tally.repairs.reduce(0, +) == 3)
        #expect(OutcomeTally([]).counts.isEmpty)
    }

    @Test("a dead letter too large for its topic loses the value, then the key, then the original headers, and says so")
    func shrunkDeadLetter() throws {
        let original = KafkaMessage(
            id: KafkaMessageID(topic: "jobs", partition: 3, offset: 9), key: Array("o1".utf8), value: Array("{}".utf8),
            headers: [KafkaHeader("trace", "t1"), KafkaHeader("decrypt.attempts", "7")], timestamp: 1
        )
        let letter = DeadLetter.record(
            for: original, failure: DecryptFailure(.malformedJob, "no openid"),
            source: .init(topic: "jobs", partition: 3, offset: 9, timestamp: 1), attempts: 1, topic: "dlq", group: "g"
        )
        #expect(DeadLetter.header(DeadLetter.omitted, in: letter.headers) == nil)
        let first = try #require(DeadLetter.shrunk(letter))
        #expect(first.value == nil && first.key == Array("o1".utf8))
        #expect(DeadLetter.header(DeadLetter.omitted, in: first.headers) == "value")
        #expect(DeadLetter.header("trace", in: first.headers) == "t1")
        let second = try #require(DeadLetter.shrunk(first))
        #expect(second.value == nil && second.key == nil && DeadLetter.header("trace", in: second.headers) == "t1")
        #expect(DeadLetter.header(DeadLetter.omitted, in: second.headers) == "value,key")
        let third = try #require(DeadLetter.shrunk(second))
        #expect(DeadLetter.header("trace", in: third.headers) == nil)
        #expect(DeadLetter.header(DeadLetter.omitted, in: third.headers) == "value,key,headers")
        #expect(third.headers.filter { $0.name == DeadLetter.omitted }.count == 1)
        for name in [DeadLetter.reason, DeadLetter.sourceTopic, DeadLetter.sourcePartition, DeadLetter.sourceOffset, DeadLetter.attempts, DeadLetter.consumerGroup] {
            #expect(DeadLetter.header(name, in: third.headers) == DeadLetter.header(name, in: letter.headers), "\(name) kept")
        }
        #expect(DeadLetter.shrunk(third) == nil, "nothing more to leave out")

        // Reprocessing the shrunk record dead-letters it again: still marked, marked once.
        let replayed = KafkaMessage(id: KafkaMessageID(topic: "dlq", partition: 0, offset: 4), key: first.key, value: first.value, headers: first.headers, timestamp: 2)
        let again = DeadLetter.record(
            for: replayed, failure: DecryptFailure(.malformedJob, "no openid"),
            source: .init(topic: "jobs", partition: 3, offset: 9, timestamp: 1), attempts: 2, topic: "dlq", group: "r"
        )
        #expect(again.headers.filter { $0.name == DeadLetter.omitted }.map(\.value) == [Array("value".utf8)])
        #expect(DeadLetter.header(DeadLetter.attempts, in: again.headers) == "2")
    }

    @Test("the lane hash fills lanes evenly for sequential openids")
    func laneBalance() {
        var counts = [Int](repeating: 0, count: 4)
        for index in 0..<40_000 { counts[Int(WorkBatch.laneHash("o1u\(index)") % 4)] += 1 }
        #expect(counts.allSatisfy { abs($0 - 10_000) < 500 }, "\(counts)")
    }

    @Test("rendezvous: only the last of the parts gets the payload, also when they race")
    func rendezvous() {
        let single = Rendezvous(parts: 2, payload: "batch")
        #expect(single.arrive() == nil)
        #expect(single.arrive() == "batch")

        let rounds = 2000
        let points = (0..<rounds).map { Rendezvous(parts: 2, payload: $0) }
        let winners = Collected()
        DispatchQueue.concurrentPerform(iterations: 2) { _ in
            for point in points { if let payload = point.arrive() { winners.add(payload) } }
        }
        #expect(winners.sorted == Array(0..<rounds))
    }

    @Test("queue: putFirst jumps the line, takeAll empties it, a closed queue ends")
    func queue() {
        let queue = BlockingQueue<Int>()
        queue.put(1)
        queue.put(2)
        queue.putFirst(0)
        #expect(queue.take() == 0)
        queue.put(3)
        #expect(queue.takeAll() == [1, 2, 3])
        queue.put(4)
        queue.close()
        #expect(queue.take() == 4)
        #expect(queue.take() == nil)
        #expect(queue.takeAll() == nil)
    }
}

private final class Collected: @unchecked Sendable {
    private let lock = NSLock()
    private var values: [Int] = []
    func add(_ value: Int) { lock.lock(); values.append(value); lock.unlock() }
    var sorted: [Int] { lock.lock(); defer { lock.unlock() }; return values.sorted() }
}
