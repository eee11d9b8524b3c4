import DeadLetterFormat
import DecryptdStore
import DecryptdTestSupport
import DecryptdWorker
import Foundation
import KafkaClient
import PhoneDecryption
import SyntheticLoad
import Testing

/// The login race (SPEC "Waiting for a session key", "Outcome records"), end to end with
/// PostgreSQL and the embedded broker: jobs whose key is not stored yet wait in `parked_jobs`, heal
/// when the key lands, or fail at their deadline; every outcome is announced.
@Suite("Parked jobs, end to end", .serialized)
struct ParkingEndToEndTests {
    static let outcomes = "wechat.phone.outcomes"

    /// A job encrypted with `key`, and what it must become.
    struct RaceJob {
        var user: UserKey
        var key: [UInt8]
        var phone: String
        var requestId: String
        var record: KafkaRecord
    }

    /// Jobs for `count` users, each encrypted with a key of its own (none stored yet).
    static func jobs(_ count: Int, prefix: String, seed: UInt64) -> [RaceJob] {
        var payloads = SyntheticPayloads(appid: Pipeline.appid, generator: SplitMix(seed: seed))
        return (0..<count).map { index in
            let key = payloads.key()
            let payload = payloads.make(.none, key: key)
            let openid = "\(prefix)\(index)"
            let requestId = "req-\(prefix)-\(index)"
            let value = DecryptJob(
                openid: openid, encryptedData: payload.encryptedData, iv: payload.iv, appid: Pipeline.appid, requestId: requestId
            ).jsonValue
            let record = KafkaRecord(
                topic: "wechat.phone.jobs", key: Array(openid.utf8), value: value,
                headers: [KafkaHeader("traceparent", "00-\(index)-01")])
            return RaceJob(
                user: UserKey(appid: Pipeline.appid, openid: openid), key: key, phone: payload.phoneNumber, requestId: requestId,
                record: record)
        }
    }

    static func store(_ jobs: [RaceJob], in database: DecryptdDatabase, issuedAt: Double = Date().timeIntervalSince1970) throws {
        try database.insertSessionKeys(jobs.map { ($0.user, Base64Encoding.encode($0.key), issuedAt) })
    }

    /// Older keys that did not encrypt these jobs (the user's key before the rotation).
    static func storeOlderKeys(_ jobs: [RaceJob], in database: DecryptdDatabase) throws {
        var random = SplitMix(seed: 99)
        try database.insertSessionKeys(
            jobs.map { ($0.user, Base64Encoding.encode(PhoneEncryptor.randomBlock(using: &random)), 1_700_000_000) })
    }

    static func count(_ table: String, _ pipeline: Pipeline) throws -> Int {
        Int(try pipeline.database.connection.query("SELECT count(*) FROM \(table)")[0][0]!)!
    }

    /// The outcome records, as JSON objects, by source offset and partition.
    static func outcomeRecords(_ pipeline: Pipeline) throws -> [(record: KafkaMessage, object: [String: Any])] {
        try pipeline.readAll(outcomes).map { message in
            let object = try #require(try JSONSerialization.jsonObject(with: Data(message.value ?? [])) as? [String: Any])
            return (message, object)
        }
    }

    static func source(_ object: [String: Any]) -> KafkaMessageID? {
        guard let source = object["source"] as? [String: Any], let topic = source["topic"] as? String,
            let partition = source["partition"] as? Int, let offset = source["offset"] as? Int
        else { return nil }
        return KafkaMessageID(topic: topic, partition: Int32(partition), offset: Int64(offset))
    }

    @Test("keys stored seconds after their jobs (none yet, or only an older one): the jobs wait, then heal; no failure row, no dead letter")
    func lateKeysHeal() throws {
        let pipeline = try Pipeline()
        try pipeline.cluster.createTopic(Self.outcomes, partitions: 2)
        let present = Self.jobs(40, prefix: "present", seed: 1)
        let noKey = Self.jobs(30, prefix: "nokey", seed: 2)
        let olderKey = Self.jobs(30, prefix: "older", seed: 3)
        try Self.store(present, in: pipeline.database)
        try Self.storeOlderKeys(olderKey, in: pipeline.database)
        let ids = try pipeline.produce((present + noKey + olderKey).map(\.record))
        let idOf = Dictionary(uniqueKeysWithValues: zip((present + noKey + olderKey).map(\.user.openid), ids))

        var configuration = pipeline.configuration(exitAtEnd: false, parkTimeout: 120)
        configuration.outcomesTopic = Self.outcomes
        let run = try WorkerRun(configuration)
        defer { run.worker.stop() }
        try waitUntil(timeout: 60, "60 jobs parked and 40 members") {
            try Self.count("parked_jobs", pipeline) == 60 && pipeline.members().count == 40
        }
        #expect(try pipeline.failureRows().isEmpty, "parking is not a failure")
        let reasons = try pipeline.database.connection.query("SELECT reason, count(*) FROM parked_jobs GROUP BY reason ORDER BY reason")
        #expect(reasons.map { [$0[0]!, $0[1]!] } == [["bad_padding", "30"], ["session_not_found", "30"]])
        // Keys land over a few seconds, in three waves.
        var landed: [String: Date] = [:]
        for (wave, jobs) in [
            Array(noKey.prefix(15)), Array(olderKey.prefix(15)) + Array(noKey.dropFirst(15)), Array(olderKey.dropFirst(15)),
        ]
        .enumerated() {
            Thread.sleep(forTimeInterval: wave == 0 ? 1 : 2)
            try Self.store(jobs, in: pipeline.database)
            for job in jobs { landed[job.user.openid] = Date() }
        }
        try waitUntil(timeout: 30, "every parked job healed") {
            try pipeline.members().count == 100 && Self.count("parked_jobs", pipeline) == 0
        }
        let healedBy = Date()
        run.worker.stop()
        _ = try run.wait()

        let members = try pipeline.members()
        for job in present + noKey + olderKey {
            #expect(members[job.user]?.phone == job.phone, "member \(job.user.openid)")
        }
        #expect(try pipeline.failureRows().isEmpty)
        #expect(try pipeline.readAll("wechat.phone.dlq").isEmpty, "no dead letter for a healed job")
        try pipeline.expectCommitted(group: "decryptd")
        let endings = try pipeline.database.parkedEndings(windowSeconds: 3600)
        #expect(endings.healed == 60 && endings.expired == 0)
        #expect(healedBy.timeIntervalSince(landed.values.max()!) < 30)
        // What an operator sees: report in its three shapes.
        let json = try pipeline.decryptd(["report", "--format", "json"])
        let report = try #require(try JSONSerialization.jsonObject(with: Data(json.text.utf8)) as? [String: Any], "\(json.text)")
        let parked = try #require(report["parked"] as? [String: Any])
        #expect(parked["now"] as? Int == 0 && parked["healed"] as? Int == 60 && parked["expired"] as? Int == 0, "\(parked)")
        #expect(
            (parked["p99_wait_ms"] as? Int ?? 0) >= (parked["median_wait_ms"] as? Int ?? 1) && (parked["median_wait_ms"] as? Int ?? 0) > 0)
        let table = try pipeline.decryptd(["report"])
        #expect(table.text.contains("healed in the last 24h: 60 (wait: median"), "\(table.text)")
        let html = try pipeline.decryptd(["report", "--format", "html"])
        #expect(html.text.contains(#"<circle class="healed""#) && html.text.contains("healed (waited for a late session key)"))

        // Outcome records: one per outcome, exact per job; never a phone number.
        let records = try Self.outcomeRecords(pipeline)
        var statuses: [KafkaMessageID: [String]] = [:]
        for (message, object) in records {
            let source = try #require(Self.source(object))
            statuses[source, default: []].append(object["status"] as? String ?? "?")
            let openid = try #require(object["openid"] as? String)
            #expect(message.key == Array(openid.utf8), "keyed by the openid")
            #expect(
                object["requestId"] as? String
                    == "req-\(openid.hasPrefix("present") ? "present" : openid.hasPrefix("nokey") ? "nokey" : "older")-\(openid.drop { !$0.isNumber })"
            )
            #expect(object["appid"] as? String == Pipeline.appid && object["kind"] as? String == "encrypted")
            #expect(message.headers.first?.name == "traceparent", "the job's headers travel on")
            let text = String(decoding: message.value ?? [], as: UTF8.self)
            #expect(!(present + noKey + olderKey).contains { text.contains($0.phone) }, "no phone number in an outcome record")
            if object["status"] as? String == "ok", !openid.hasPrefix("present") {
                #expect((object["waitedMs"] as? Int ?? -1) > 0, "a healed job says how long it waited")
            }
            if object["status"] as? String == "parked" {
                #expect(["session_not_found", "bad_padding"].contains(object["reason"] as? String ?? ""))
            }
        }
        for job in present { #expect(statuses[idOf[job.user.openid]!] == ["ok"], "\(job.user.openid)") }
        for job in noKey + olderKey {
            #expect(
                Set(statuses[idOf[job.user.openid]!] ?? []) == ["parked", "ok"],
                "\(job.user.openid): \(statuses[idOf[job.user.openid]!] ?? [])")
        }
    }

    @Test(
        "keys that never come: at the deadline the job fails with its last reason, failure row, dead letter with decrypt.parked.ms, outcome record"
    )
    func deadlineExpires() throws {
        let pipeline = try Pipeline()
        try pipeline.cluster.createTopic(Self.outcomes, partitions: 1)
        let noKey = Self.jobs(12, prefix: "nokey", seed: 4)
        let olderKey = Self.jobs(8, prefix: "older", seed: 5)
        try Self.storeOlderKeys(olderKey, in: pipeline.database)
        let ids = try pipeline.produce((noKey + olderKey).map(\.record))
        var configuration = pipeline.configuration(exitAtEnd: false, parkTimeout: 3)
        configuration.outcomesTopic = Self.outcomes
        let run = try WorkerRun(configuration)
        defer { run.worker.stop() }
        try waitUntil(timeout: 60, "20 failure rows") { try pipeline.failureRows().count == 20 }
        run.worker.stop()
        _ = try run.wait()
        #expect(try Self.count("parked_jobs", pipeline) == 0)
        var expected: [KafkaMessageID: String] = [:]
        for (job, id) in zip(noKey + olderKey, ids) {
            expected[id] = job.user.openid.hasPrefix("nokey") ? "session_not_found" : "bad_padding"
        }
        #expect(Dictionary(uniqueKeysWithValues: try pipeline.failureRows().map { ($0.id, $0.reason) }) == expected)
        let letters = try pipeline.readAll("wechat.phone.dlq")
        #expect(letters.count == 20)
        for letter in letters {
            let waited = Int(DeadLetter.header(DeadLetter.parkedMilliseconds, in: letter.headers) ?? "") ?? -1
            #expect(waited >= 3000 && waited < 60_000, "decrypt.parked.ms \(waited)")
            #expect(DeadLetter.header(DeadLetter.reason, in: letter.headers) == expected[Pipeline.source(of: letter)])
            #expect(letter.headers.first?.name == "traceparent")
        }
        var statuses: [KafkaMessageID: [String]] = [:]
        for (_, object) in try Self.outcomeRecords(pipeline) {
            statuses[try #require(Self.source(object)), default: []].append(object["status"] as? String ?? "?")
            if object["status"] as? String == "failed" { #expect((object["waitedMs"] as? Int ?? 0) >= 3000) }
        }
        for id in ids { #expect(statuses[id]?.sorted() == ["failed", "parked"], "\(id)") }
        let endings = try pipeline.database.parkedEndings(windowSeconds: 3600)
        #expect(endings.healed == 0 && endings.expired == 20)
        try pipeline.expectCommitted(group: "decryptd")
    }

    @Test("a key that landed without its notification (triggers off) is still tried at the deadline: the job heals, not fails")
    func keyFoundAtTheDeadline() throws {
        let pipeline = try Pipeline()
        let waiting = Self.jobs(6, prefix: "quiet", seed: 13)
        _ = try pipeline.produce(waiting.map(\.record))
        let run = try WorkerRun(pipeline.configuration(exitAtEnd: false, parkTimeout: 4))
        defer { run.worker.stop() }
        try waitUntil(timeout: 60, "6 jobs parked") { try Self.count("parked_jobs", pipeline) == 6 }
        // session_replication_role = replica: no trigger fires, so no worker hears of these keys.
        try pipeline.database.connection.execute("SET session_replication_role = replica")
        try Self.store(Array(waiting.prefix(4)), in: pipeline.database)
        try pipeline.database.connection.execute("SET session_replication_role = origin")
        try waitUntil(timeout: 60, "every job ended") { try Self.count("parked_jobs", pipeline) == 0 }
        run.worker.stop()
        _ = try run.wait()
        let members = try pipeline.members()
        for job in waiting.prefix(4) { #expect(members[job.user]?.phone == job.phone, "\(job.user.openid) healed at its deadline") }
        #expect(try pipeline.failureRows().map(\.reason) == ["session_not_found", "session_not_found"])
        let endings = try pipeline.database.parkedEndings(windowSeconds: 3600)
        #expect(endings.healed == 4 && endings.expired == 2)
    }

    @Test("--park-timeout 0: the same jobs fail at once, as before parking existed")
    func parkingOff() throws {
        let pipeline = try Pipeline()
        let noKey = Self.jobs(10, prefix: "nokey", seed: 6)
        _ = try pipeline.produce(noKey.map(\.record))
        let summary = try WorkerRun(pipeline.configuration(parkTimeout: 0)).wait()
        #expect(summary.outcomes == ["session_not_found": 10])
        #expect(try pipeline.failureRows().count == 10)
        #expect(try pipeline.readAll("wechat.phone.dlq").count == 10)
        #expect(try Self.count("parked_jobs", pipeline) == 0)
    }

    @Test("kill -9 while jobs wait, keys stored while no worker listens: the restarted worker heals them; parked --list and --expire")
    func crashAndOperators() throws {
        let pipeline = try Pipeline()
        let noKey = Self.jobs(20, prefix: "nokey", seed: 7)
        let olderKey = Self.jobs(10, prefix: "older", seed: 8)
        try Self.storeOlderKeys(olderKey, in: pipeline.database)
        _ = try pipeline.produce((noKey + olderKey).map(\.record))
        var environment = pipeline.binaryEnvironment
        environment["DECRYPTD_PARK_TIMEOUT"] = "10m"
        let log = NSTemporaryDirectory() + "parking-crash-\(UUID().uuidString).log"
        defer { try? FileManager.default.removeItem(atPath: log) }
        let first = try ChildProcess([decryptdBinary.path, "run"], environment: environment, logPath: log)
        defer { if first.exitStatus == nil { first.kill(SIGKILL) } }
        try waitUntil(timeout: 60, "30 jobs parked") { try Self.count("parked_jobs", pipeline) == 30 }
        first.kill(SIGKILL)
        _ = try first.wait(timeout: 10)

        let listed = try pipeline.decryptd(["parked", "--list"])
        #expect(listed.status == 0, "\(listed.text)")
        #expect(listed.text.contains("session_not_found") && listed.text.contains("bad_padding"), "\(listed.text)")
        #expect(listed.text.split(separator: "\n").contains { $0.hasPrefix("total") && $0.contains(" 30 ") }, "\(listed.text)")

        // Keys land while nobody listens; the worker that starts later finds them.
        try Self.store(Array(noKey.prefix(10)) + olderKey, in: pipeline.database)
        let second = try ChildProcess([decryptdBinary.path, "run"], environment: environment, logPath: log + ".2")
        defer { if second.exitStatus == nil { second.kill(SIGKILL) } }
        try waitUntil(timeout: 60, "20 jobs healed") { try pipeline.members().count == 20 }
        #expect(try Self.count("parked_jobs", pipeline) == 10)
        second.kill(SIGTERM)
        #expect(try second.wait(timeout: 60) == 0, "\(second.output)")

        let expired = try pipeline.decryptd(["parked", "--expire", "--reason", "session_not_found"])
        #expect(expired.status == 0, "\(expired.text)")
        #expect(expired.text.contains("10 jobs failed now"), "\(expired.text)")
        #expect(try Self.count("parked_jobs", pipeline) == 0)
        #expect(try pipeline.failureRows().map(\.reason) == Array(repeating: "session_not_found", count: 10))
        #expect(try pipeline.readAll("wechat.phone.dlq").count == 10)
        let members = try pipeline.members()
        for job in Array(noKey.prefix(10)) + olderKey { #expect(members[job.user]?.phone == job.phone) }
        let bad = try pipeline.decryptd(["parked", "--expire", "--reason", "invalid_iv"])
        #expect(bad.status == 2 && bad.text.contains("--reason invalid_iv"), "\(bad.text)")
    }

    @Test("two workers in one group, a rebalance on each join and leave, keys landing meanwhile: every job heals once")
    func twoWorkers() throws {
        let pipeline = try Pipeline(partitions: 4)
        let present = Self.jobs(100, prefix: "present", seed: 11)
        let late = Self.jobs(100, prefix: "late", seed: 12)
        try Self.store(present, in: pipeline.database)
        try Self.storeOlderKeys(Array(late.prefix(50)), in: pipeline.database)
        _ = try pipeline.produce((present + late).map(\.record))
        let configuration = pipeline.configuration(exitAtEnd: false, parkTimeout: 600)
        let first = try WorkerRun(configuration)
        defer { first.worker.stop() }
        try waitUntil(timeout: 60, "some jobs parked") { try Self.count("parked_jobs", pipeline) >= 20 }
        let second = try WorkerRun(configuration)
        defer { second.worker.stop() }
        // librdkafka 2.0.2 aborts when a cooperative-sticky consumer is destroyed before its first
        // assignment (librdkafka #4312, fixed in 2.3.0): the second worker is stopped only after.
        try waitUntil(timeout: 60, "the second worker joined") { !second.worker.consumerAssignment.isEmpty }
        try Self.store(Array(late.prefix(40)), in: pipeline.database)
        try waitUntil(timeout: 60, "every job parked or stored") {
            try Self.count("parked_jobs", pipeline) + pipeline.members().count == 200
        }
        #expect(first.worker.health.ready || second.worker.health.ready, "waiting jobs leave the workers ready")
        try Self.store(Array(late.dropFirst(40).prefix(30)), in: pipeline.database)
        first.worker.stop()
        _ = try first.wait()
        try Self.store(Array(late.dropFirst(70)), in: pipeline.database)
        try waitUntil(timeout: 60, "every job healed") { try pipeline.members().count == 200 && Self.count("parked_jobs", pipeline) == 0 }
        // Work the first one finished during a rebalance may come again (its commit was refused):
        // the survivor owns every partition and has drained them before it stops.
        try waitUntil(timeout: 120, "the second worker drained every partition") {
            second.worker.consumerAssignment.count == 4 && second.worker.isDrained
        }
        second.worker.stop()
        _ = try second.wait()
        let members = try pipeline.members()
        for job in present + late { #expect(members[job.user]?.phone == job.phone, "\(job.user.openid)") }
        #expect(try pipeline.failureRows().isEmpty)
        #expect(try pipeline.readAll("wechat.phone.dlq").isEmpty)
        let endings = try pipeline.database.parkedEndings(windowSeconds: 3600)
        let ended = try Self.count("parked_job_endings", pipeline)
        #expect(endings.healed == ended && endings.expired == 0 && ended >= 20 && ended <= 100, "each waiting job ended once, healed")
        try pipeline.expectCommitted(group: "decryptd")
    }
}
