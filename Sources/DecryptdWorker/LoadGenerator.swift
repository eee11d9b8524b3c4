public import DecryptdStore
import Foundation
public import KafkaClient
import PhoneDecryption

/// Synthetic load: seeds session keys and produces jobs with a chosen mix of faults, and knows
/// what the worker must make of them (for tests, the demo and benchmarks).
public struct LoadGenerator {
    /// Job-level kinds; the failure ones are SPEC.md's codes.
    public enum Kind: String, Sendable, CaseIterable {
        case ok
        case malformedJob = "malformed_job"
        case sessionNotFound = "session_not_found"
        case invalidSessionKey = "invalid_session_key"
        case invalidIV = "invalid_iv"
        case invalidCiphertext = "invalid_ciphertext"
        case badPadding = "bad_padding"
        case invalidPlaintext = "invalid_plaintext"
        case appidMismatch = "appid_mismatch"
    }

    public struct Plan: Sendable {
        public var jobs: Int
        public var appid: String
        /// Share of jobs per failure kind; the rest are ok.
        public var faults: [Kind: Double] = [:]
        /// Jobs per user on average (several jobs per user, some out of order). Default: 3.
        public var jobsPerUser = 3.0
        /// Share of users whose newest stored key is newer than the one their payloads used. Default: 0.2.
        public var staleKeyShare = 0.2
        /// Share of ok jobs whose base64 is damaged in transit (still ok, counted as repairs). Default: 0.05.
        public var damagedShare = 0.05
        public var topic = "wechat.phone.jobs"
        public var seed: UInt64 = 1

        public init(jobs: Int, appid: String) {
            self.jobs = jobs
            self.appid = appid
        }

        /// Parses `bad_padding=0.02,invalid_iv=0.01`.
        public static func faults(_ text: String) throws -> [Kind: Double] {
            var faults: [Kind: Double] = [:]
            for item in text.split(separator: ",") where !item.isEmpty {
                let parts = item.split(separator: "=")
                guard parts.count == 2, let kind = Kind(rawValue: String(parts[0])), kind != .ok,
                      let share = Double(parts[1]), (0...1).contains(share)
                else { throw PlanError(description: "bad fault \(item): use code=share with a failure code and a share from 0 to 1") }
                faults[kind] = share
            }
            guard faults.values.reduce(0, +) <= 1 else { throw PlanError(description: "fault shares add up to more than 1") }
            return faults
        }
    }

    public struct PlanError: Error, CustomStringConvertible {
        public var description: String
    }

    /// What the worker must produce from a generated load.
    public struct Expectation: Sendable {
        /// The newest ok payload per user: phone number and watermark.
        public var members: [UserKey: (phone: String, watermark: Int64)] = [:]
        /// The failure code of every failing job, by where it was produced.
        public var failures: [KafkaMessageID: String] = [:]
        /// Jobs by kind.
        public var counts: [String: Int] = [:]
        public var jobs = 0
    }

    public let plan: Plan

    public init(plan: Plan) {
        self.plan = plan
    }

    // MARK: - Generating

    /// One job to produce and what it must become.
    struct Job {
        var record: KafkaRecord
        var kind: Kind
        var user: UserKey
        var phone: String
        var watermark: Int64
    }

    /// Builds the session rows and the jobs (nothing is written yet).
    func build() -> (sessions: [(user: UserKey, sessionKey: String, issuedAt: Double)], jobs: [Job]) {
        var random = SplitMix(seed: plan.seed)
        var synthetic = SyntheticPayloads(appid: plan.appid, generator: SplitMix(seed: plan.seed &+ 1))
        let userCount = max(1, Int(Double(plan.jobs) / plan.jobsPerUser))
        struct User { var key: UserKey; var secret: [UInt8]; var stale: Bool }
        let users: [User] = (0..<userCount).map { index in
            User(key: UserKey(appid: plan.appid, openid: "o\(plan.seed)u\(index)"), secret: synthetic.key(),
                 stale: Double.random(in: 0..<1, using: &random) < plan.staleKeyShare)
        }
        var sessions: [(user: UserKey, sessionKey: String, issuedAt: Double)] = []
        for user in users {
            sessions.append((user.key, Base64Encoding.encode(user.secret), 1_700_000_000))
            if user.stale { sessions.append((user.key, Base64Encoding.encode(synthetic.key()), 1_700_000_100)) }
        }
        // Users only for the faults that depend on the stored key.
        var brokenKeyUser = 0
        var jobs: [Job] = []
        jobs.reserveCapacity(plan.jobs)
        for index in 0..<plan.jobs {
            let kind = pick(&random)
            var user = users[Int.random(in: 0..<users.count, using: &random)]
            var value: [UInt8]?
            var key: [UInt8]? = Array(user.key.openid.utf8)
            let timestamp = 1_700_000_000 + Int64(index) * 7 + Int64.random(in: 0..<5, using: &random)
            let phone = synthetic.phoneNumber()
            switch kind {
            case .malformedJob:
                // What reaches a real jobs topic: noise, a wrong field type, a tombstone (no value),
                // an empty value, and a record without a key; each must come back unchanged.
                switch Int.random(in: 0..<5, using: &random) {
                case 0: value = (0..<40).map { _ in UInt8.random(in: 0...255, using: &random) }
                case 1: value = Array(#"{"openid":"\#(user.key.openid)","iv":42}"#.utf8)
                case 2: value = nil
                case 3: value = []
                default:
                    value = Array(#"{"openid":"\#(user.key.openid)","encryptedData":null,"iv":""}"#.utf8)
                    key = nil
                }
            case .sessionNotFound:
                user = User(key: UserKey(appid: plan.appid, openid: "o\(plan.seed)nobody\(index)"), secret: synthetic.key(), stale: false)
                value = jobValue(user.key.openid, synthetic.make(.none, key: user.secret, phoneNumber: phone, timestamp: timestamp))
            case .invalidSessionKey:
                brokenKeyUser += 1
                user = User(key: UserKey(appid: plan.appid, openid: "o\(plan.seed)broken\(brokenKeyUser)"), secret: synthetic.key(), stale: false)
                sessions.append((user.key, Base64Encoding.encode(user.secret.prefix(8)), 1_700_000_000))
                value = jobValue(user.key.openid, synthetic.make(.none, key: user.secret, phoneNumber: phone, timestamp: timestamp))
            case .badPadding:
                // Encrypted with a key the user never had; make sure no stored key passes by chance.
                var payload = synthetic.make(.none, phoneNumber: phone, timestamp: timestamp)
                let stored = sessions.filter { $0.user == user.key }.map(\.sessionKey)
                while case .failure(let failure) = PhoneDecryptor().decrypt(appid: plan.appid, sessionKeys: stored.reversed(), iv: payload.iv, encryptedData: payload.encryptedData),
                      failure.reason != .badPadding {
                    payload = synthetic.make(.none, phoneNumber: phone, timestamp: timestamp)
                }
                value = jobValue(user.key.openid, payload)
            case .ok:
                let damaged = Double.random(in: 0..<1, using: &random) < plan.damagedShare
                value = jobValue(user.key.openid, synthetic.make(damaged ? .damagedBase64 : .none, key: user.secret, phoneNumber: phone, timestamp: timestamp))
            case .invalidIV, .invalidCiphertext, .invalidPlaintext, .appidMismatch:
                let fault = SyntheticPayloads<SplitMix>.Fault(rawValue: kind.rawValue)!
                value = jobValue(user.key.openid, synthetic.make(fault, key: user.secret, phoneNumber: phone, timestamp: timestamp))
            }
            let record = KafkaRecord(
                topic: plan.topic, key: key, value: value,
                headers: [KafkaHeader("request-id", "req-\(plan.seed)-\(index)"), KafkaHeader("source", "loadgen")]
            )
            jobs.append(Job(record: record, kind: kind, user: user.key, phone: phone, watermark: timestamp))
        }
        // Deliver some users' jobs out of order: swap neighbours now and then.
        for index in stride(from: 1, to: jobs.count, by: 5) where Bool.random(using: &random) {
            jobs.swapAt(index - 1, index)
        }
        return (sessions, jobs)
    }

    private func pick(_ random: inout SplitMix) -> Kind {
        var roll = Double.random(in: 0..<1, using: &random)
        for kind in Kind.allCases where kind != .ok {
            let share = plan.faults[kind] ?? 0
            if roll < share { return kind }
            roll -= share
        }
        return .ok
    }

    private func jobValue(_ openid: String, _ payload: SyntheticPayloads<SplitMix>.Payload) -> [UInt8] {
        var writer = JSONWriter()
        writer.beginObject()
        writer.field("openid", openid)
        writer.field("encryptedData", payload.encryptedData)
        writer.field("iv", payload.iv)
        writer.field("appid", plan.appid)
        writer.endObject()
        return Array(writer.text.utf8)
    }

    // MARK: - Writing

    /// Seeds the sessions, produces the jobs (in chunks, each acknowledged), and returns the
    /// expectation. `progress` is called with the number of jobs produced so far.
    public func run(database: DecryptdDatabase, producer: KafkaProducer, progress: (Int) -> Void = { _ in }) throws -> Expectation {
        let (sessions, jobs) = build()
        for start in stride(from: 0, to: sessions.count, by: 5000) {
            try database.insertSessionKeys(Array(sessions[start..<min(sessions.count, start + 5000)]))
        }
        try database.analyzeSessionKeys()
        var expectation = Expectation()
        expectation.jobs = jobs.count
        for start in stride(from: 0, to: jobs.count, by: 40000) {
            let chunk = jobs[start..<min(jobs.count, start + 40000)]
            let results = producer.send(chunk.map(\.record))
            for (job, result) in zip(chunk, results) {
                let id = try result.get()
                expectation.counts[job.kind.rawValue, default: 0] += 1
                if job.kind == .ok {
                    let current = expectation.members[job.user]
                    if current == nil || current!.watermark <= job.watermark {
                        expectation.members[job.user] = (job.phone, job.watermark)
                    }
                } else {
                    expectation.failures[id] = job.kind.rawValue
                }
            }
            progress(start + chunk.count)
        }
        return expectation
    }
}

/// A small seedable generator, so a load can be reproduced from its seed.
public struct SplitMix: RandomNumberGenerator, Sendable {
    private var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        return Self.mix(state)
    }

    /// SplitMix64's finalizer: every output bit depends on every input bit.
    static func mix(_ value: UInt64) -> UInt64 {
        var z = value
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
