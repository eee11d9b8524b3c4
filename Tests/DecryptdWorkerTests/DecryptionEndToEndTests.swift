import DeadLetterFormat
import DecryptdStore
import DecryptdTestSupport
import DecryptdWorker
import Foundation
import KafkaClient
import PhoneDecryption
import SyntheticLoad
import Testing

@Suite(
    "Decryption through the worker: vectors, key limit, appids (embedded broker + PostgreSQL)",
    .enabled(if: IsolatedDatabase.enabled, "needs scripts/test.sh"), .ownThread(minutes: 5))
struct DecryptionEndToEndTests {
    /// Every vector becomes a job on the topic and its session key a row in wechat_sessions, as the
    /// login service would store it; two more jobs cover the codes no vector has. What lands in every
    /// column of members, in decrypt_failures and on the dead-letter topic is the vectors' answer.
    @Test("every vector as a Kafka job: each members column, each failure row and each dead letter as the vectors say")
    func vectorsThroughTheWorker() throws {
        let vectors = VectorFile.loaded
        let pipeline = try Pipeline(partitions: 3)
        let stored = try pipeline.database.insertSessionKeys(
            vectors.cases.map {
                (user: UserKey(appid: $0.appid, openid: $0.openid), sessionKey: $0.sessionKey, issuedAt: 1_700_000_000)
            })
        #expect(stored == vectors.cases.count)

        struct Job: Encodable { var openid: String, encryptedData: String, iv: String, appid: String?, requestId: String }
        var records = try vectors.cases.enumerated().map { index, vector in
            let job = Job(
                openid: vector.openid, encryptedData: vector.encryptedData, iv: vector.iv,
                appid: index.isMultiple(of: 2) ? vector.appid : nil, requestId: vector.name)
            return KafkaRecord(
                topic: "wechat.phone.jobs", key: Array(vector.openid.utf8), value: Array(try JSONEncoder().encode(job)),
                headers: [KafkaHeader("case", vector.name)])
        }
        let first = vectors.cases[0]
        records.append(
            Pipeline.job(openid: "o-nobody", encryptedData: first.encryptedData, iv: first.iv, headers: [KafkaHeader("case", "no_session")])
        )
        records.append(
            KafkaRecord(topic: "wechat.phone.jobs", key: nil, value: Array("\u{1}garbage".utf8), headers: [KafkaHeader("case", "not_json")])
        )
        let ids = try pipeline.produce(records)
        var expectedReason = ["no_session": "session_not_found", "not_json": "malformed_job"]
        for vector in vectors.cases { if let error = vector.expect.error { expectedReason[vector.name] = error } }
        let okCount = vectors.cases.filter { $0.expect.ok != nil }.count

        let summary = try WorkerRun(pipeline.configuration(group: "vectors")).wait()
        #expect(summary.drained && summary.total == records.count && summary.abandoned == 0)
        #expect(summary.outcomes["ok"] == okCount)
        try pipeline.expectCommitted(group: "vectors")

        let members = try pipeline.database.connection.query(
            "SELECT openid, phone_number, pure_phone_number, country_code, watermark_ts, appid FROM members")
        let byOpenid = Dictionary(members.map { ($0[0]!, $0) }, uniquingKeysWith: { a, _ in a })
        #expect(members.count == okCount, "a row per ok vector, no other")
        for vector in vectors.cases {
            guard let ok = vector.expect.ok else {
                #expect(byOpenid[vector.openid] == nil, "\(vector.name): no member")
                continue
            }
            #expect(
                byOpenid[vector.openid] == [
                    vector.openid, ok.phoneNumber, ok.purePhoneNumber, ok.countryCode,
                    String(ok.watermarkTimestamp), vectors.appid,
                ], "\(vector.name)")
        }

        let name = Dictionary(
            uniqueKeysWithValues: zip(ids, records).map { ($0, $1.headers[0].value.map { String(decoding: $0, as: UTF8.self) } ?? "") })
        let rows = try pipeline.failureRows()
        #expect(rows.count == expectedReason.count, "a failure row per failed job")
        #expect(Dictionary(rows.map { (name[$0.id] ?? "?", $0.reason) }, uniquingKeysWith: { a, _ in a }) == expectedReason)
        // Who failed: the job's user where it names one (the appid defaulted when absent), none for
        // a value that is not a job; and a detail saying why.
        let openid = Dictionary(uniqueKeysWithValues: vectors.cases.map { ($0.name, $0.openid) }).merging(["no_session": "o-nobody"]) {
            a, _ in a
        }
        for row in try pipeline.database.connection.query(
            "SELECT source_partition, source_offset, appid, openid, detail FROM decrypt_failures")
        {
            let id = KafkaMessageID(topic: "wechat.phone.jobs", partition: Int32(row[0]!)!, offset: Int64(row[1]!)!)
            let job = name[id] ?? "?"
            let user: [String?] = openid[job].map { [vectors.appid, $0] } ?? [nil, nil]
            #expect(Array(row[2...3]) == user, "\(job)")
            #expect(!(row[4] ?? "").isEmpty, "\(job): a detail")
        }

        let letters = try pipeline.readAll("wechat.phone.dlq")
        #expect(letters.count == expectedReason.count, "a dead letter per failed job")
        for letter in letters {
            let vectorName = DeadLetter.header("case", in: letter.headers) ?? "?"
            #expect(DeadLetter.header(DeadLetter.reason, in: letter.headers) == expectedReason[vectorName], "\(vectorName)")
            let detail = DeadLetter.header(DeadLetter.detail, in: letter.headers) ?? ""
            for secret in vectors.cases.flatMap({ [$0.sessionKey, $0.expect.ok?.purePhoneNumber] }).compactMap({ $0 })
            where secret.count >= 8 {
                #expect(!detail.contains(secret), "\(vectorName): no key material or number in the detail")
            }
        }
    }

    /// Keys are tried newest first, and no more of them than --max-session-keys: a user whose
    /// right key is the second newest decrypts with two keys allowed, one whose right key is the
    /// third newest needs three (the default). The same holds when reprocessing.
    @Test("--max-session-keys: the worker and reprocessing try that many keys, newest first")
    func keyLimit() throws {
        let cases = VectorFile.loaded.cases.filter { $0.expect.ok != nil }
        let (second, third, stranger) = (cases[0], cases[1], cases[2])
        let pipeline = try Pipeline(partitions: 1)
        func entry(_ vector: VectorFile.Case, key: String, at time: Double) -> (user: UserKey, sessionKey: String, issuedAt: Double) {
            (UserKey(appid: vector.appid, openid: vector.openid), key, time)
        }
        _ = try pipeline.database.insertSessionKeys([
            entry(second, key: second.sessionKey, at: 1_700_000_000), entry(second, key: stranger.sessionKey, at: 1_700_000_100),
            entry(third, key: third.sessionKey, at: 1_700_000_000), entry(third, key: stranger.sessionKey, at: 1_700_000_100),
            entry(third, key: second.sessionKey, at: 1_700_000_200),
        ])
        _ = try pipeline.produce([second, third].map { Pipeline.job(openid: $0.openid, encryptedData: $0.encryptedData, iv: $0.iv) })

        var twoKeys = pipeline.configuration(group: "two-keys")
        twoKeys.maxSessionKeys = 2
        #expect(try WorkerRun(twoKeys).wait().outcomes == ["ok": 1, "bad_padding": 1])
        #expect(try pipeline.members().keys.map(\.openid) == [second.openid])
        #expect(try pipeline.failureRows().map(\.reason) == ["bad_padding"])
        // Reprocessing honours the same limit.
        var dryRun = Reprocessor.Options()
        dryRun.dryRun = true
        #expect(try Reprocessor(configuration: twoKeys, options: dryRun, logger: logger).run(partitions: 2).total.recovered == 0)
        #expect(
            try Reprocessor(configuration: pipeline.configuration(group: "two-keys"), options: dryRun, logger: logger).run(partitions: 2)
                .total.recovered == 1)

        #expect(try WorkerRun(pipeline.configuration(group: "default-keys")).wait().outcomes == ["ok": 2])
        #expect(try Set(pipeline.members().keys.map(\.openid)) == [second.openid, third.openid])
    }

    /// A worker serving two appids: a job without an appid is the first one's, a job naming the
    /// second is looked up, checked and stored under the second; one openid under both is two members.
    @Test("two appids: each job's session key, watermark check and member row are its own appid's")
    func twoAppids() throws {
        let (first, second) = (Pipeline.appid, "wx0second0000app")
        var forFirst = SyntheticPayloads(appid: first, generator: SystemRandomNumberGenerator())
        var forSecond = SyntheticPayloads(appid: second, generator: SystemRandomNumberGenerator())
        let (a, b, wrong) = (forFirst.make(.none), forSecond.make(.none), forFirst.make(.none))
        let pipeline = try Pipeline(partitions: 1)
        _ = try pipeline.database.insertSessionKeys([
            (UserKey(appid: first, openid: "o-both"), a.sessionKeys[0], 1_700_000_000),
            (UserKey(appid: second, openid: "o-both"), b.sessionKeys[0], 1_700_000_000),
            // Encrypted for the first appid, sent as the second's, with the right key stored there.
            (UserKey(appid: second, openid: "o-wrong"), wrong.sessionKeys[0], 1_700_000_000),
        ])
        _ = try pipeline.produce([
            Pipeline.job(openid: "o-both", encryptedData: a.encryptedData, iv: a.iv),
            Pipeline.job(openid: "o-both", encryptedData: b.encryptedData, iv: b.iv, appid: second),
            Pipeline.job(openid: "o-wrong", encryptedData: wrong.encryptedData, iv: wrong.iv, appid: second),
        ])

        // Through the binary, so that WECHAT_APPIDS's list is read as an operator would write it.
        let run = try pipeline.decryptd(
            ["run", "--exit-at-end", "--log-level", "warning"], environment: ["WECHAT_APPIDS": "\(first), \(second)"])
        #expect(run.status == 0 && Pipeline.outcomeCounts(in: run.text) == ["ok": 2, "appid_mismatch": 1], "\(run.text)")
        let members = try pipeline.members()
        #expect(members.count == 2)
        #expect(members[UserKey(appid: first, openid: "o-both")]?.phone == a.phoneNumber)
        #expect(members[UserKey(appid: second, openid: "o-both")]?.phone == b.phoneNumber)
        let failure = try pipeline.database.connection.query("SELECT appid, openid, reason FROM decrypt_failures")
        #expect(failure == [[second, "o-wrong", "appid_mismatch"]])
    }
}
