public import DecryptdStore
public import Foundation
public import KafkaClient
public import PhoneDecryption

/// Synthetic load: seeds session keys and produces jobs with a chosen mix of faults, and knows
/// what the worker must make of them (for tests, the demo and benchmarks).
public struct LoadGenerator {
    public struct Plan: Sendable {
        public var jobs: Int
        public var appid: String
        /// Share of jobs per failure code; the rest are ok.
        public var faults: [FailureReason: Double] = [:]
        /// Jobs per user on average (several jobs per user, some out of order). Default: 3.
        public var jobsPerUser = 3.0
        /// Share of users whose newest stored key is newer than the one their payloads used. Default: 0.2.
        public var staleKeyShare = 0.2
        /// Share of ok jobs whose base64 is damaged in transit (still ok, counted as repairs). Default: 0.05.
        public var damagedShare = 0.05
        public var topic = "wechat.phone.jobs"
        public var seed: UInt64 = 1
        /// Share of jobs that are code jobs (WeChat's recommended flow): 0 for `--kind encrypted`,
        /// 1 for `code`, 0.5 for `mixed`. Fault shares apply to the jobs of the kind a reason belongs
        /// to (the code reasons to code jobs, the decryption reasons to encrypted jobs; malformed_job
        /// and appid_mismatch to both). Default: 0.
        public var codeShare = 0.0
        /// Share of ok code jobs whose first exchange answers transiently (-1, 45011, HTTP 503, a
        /// reset, a token error, in turn): they must still end ok, with nothing dead-lettered. Default: 0.
        public var transientShare = 0.0
        /// The appid of `exchange_not_configured` jobs: one the worker serves without an app secret.
        public var unconfiguredAppid: String?
        /// When the code jobs' codes are issued (seconds since the epoch). Default: now.
        public var codesIssuedAt = Int64(Date().timeIntervalSince1970)
        /// Share of ok encrypted jobs whose key is stored only after the job (the login race): a
        /// user of its own, with no key stored yet or only an older one. ``Expectation/lateSessions``
        /// holds the keys to store later; the jobs end ok once they are.
        public var lateKeyShare = 0.0
        /// Jobs are made, produced and acknowledged this many at a time, in multiples of 5 (so that
        /// the neighbour swaps that deliver some jobs out of order stay within a chunk).
        public var chunkSize = 40_000 {
            didSet { chunkSize = max(5, chunkSize - chunkSize % 5) }
        }

        public init(jobs: Int, appid: String) {
            self.jobs = jobs
            self.appid = appid
        }

        /// Parses `bad_padding=0.02,invalid_iv=0.01`.
        public static func faults(_ text: String) throws -> [FailureReason: Double] {
            var faults: [FailureReason: Double] = [:]
            for item in text.split(separator: ",") where !item.isEmpty {
                let parts = item.split(separator: "=")
                guard parts.count == 2, let reason = FailureReason(rawValue: String(parts[0])),
                    let share = Double(parts[1]), (0...1).contains(share)
                else { throw PlanError(description: "bad fault \(item): use code=share with a failure code and a share from 0 to 1") }
                faults[reason] = share
            }
            for kind in JobKind.allCases {
                let total = faults.filter { $0.key.applies(to: kind) }.values.reduce(0, +)
                guard total <= 1 else { throw PlanError(description: "fault shares of \(kind.rawValue) jobs add up to more than 1") }
            }
            return faults
        }
    }

    public struct PlanError: Error, CustomStringConvertible {
        public var description: String
    }

    /// What the worker must produce from a generated load.
    public struct Expectation: Sendable {
        /// The newest ok payload per user: phone number and watermark (only when asked for).
        public var members: [UserKey: (phone: String, watermark: Int64)] = [:]
        /// The failure code of every failing job, by where it was produced (only when asked for).
        public var failures: [KafkaMessageID: String] = [:]
        /// Jobs by outcome: "ok" or a failure code.
        public var counts: [String: Int] = [:]
        public var jobs = 0
        /// Jobs by kind.
        public var kinds: [JobKind: Int] = [:]
        /// Users with at least one ok job: the rows `members` must end with.
        public var usersWithPhone = 0
        /// The keys of the late-key jobs, to store after their jobs (see ``Plan/lateKeyShare``),
        /// with when each job was produced.
        public var lateSessions: [(user: UserKey, sessionKey: String, producedAt: Date)] = []
        /// The key WeChat holds as current for each user whose jobs fail bad_padding or
        /// stale_session_key: what a stand-in's `checksession` compares with (dev-wechat learns them
        /// from ``DevWeChatState/registerSessionKeys(_:)`` or `POST /dev/session-keys`).
        public var currentKeys: [UserKey: String] = [:]

        /// Nothing expected yet: the start of a load produced in parts.
        public init() {}

        /// Adds what a further part of the load (other users: another seed) must produce.
        public mutating func merge(_ part: Expectation) {
            members.merge(part.members) { $1 }
            failures.merge(part.failures) { $1 }
            counts.merge(part.counts, uniquingKeysWith: +)
            kinds.merge(part.kinds, uniquingKeysWith: +)
            jobs += part.jobs
            usersWithPhone += part.usersWithPhone
            lateSessions += part.lateSessions
            currentKeys.merge(part.currentKeys) { $1 }
        }
    }

    public let plan: Plan

    public init(plan: Plan) {
        self.plan = plan
    }

    // MARK: - Users

    /// One user of the load. Users are numbered, and each one's openid, keys and staleness derive
    /// from the seed and the number alone: a load of any size keeps no user in memory.
    struct User {
        var key: UserKey
        var secret: [UInt8]
        /// For a stale user, a newer stored key that their payloads did not use.
        var newerKey: [UInt8]?

        /// The keys stored for this user, newest first.
        var storedKeys: [String] { ([newerKey].compactMap { $0 } + [secret]).map(Base64Encoding.encode) }
    }

    var userCount: Int { max(1, Int(Double(plan.jobs) / plan.jobsPerUser)) }

    func user(_ index: Int) -> User {
        var random = SplitMix(seed: SplitMix.mix(plan.seed ^ SplitMix.mix(UInt64(index) &+ 0x5EED)))
        let secret = PhoneEncryptor.randomBlock(using: &random)
        let stale = Double.random(in: 0..<1, using: &random) < plan.staleKeyShare
        return User(
            key: UserKey(appid: plan.appid, openid: "o\(plan.seed)u\(index)"), secret: secret,
            newerKey: stale ? PhoneEncryptor.randomBlock(using: &random) : nil
        )
    }

    typealias SessionRow = (user: UserKey, sessionKey: String, issuedAt: Double)

    /// The stored keys of users `range`: the one their payloads use, and a stale user's newer one.
    func sessions(of range: Range<Int>) -> [SessionRow] {
        range.flatMap { index -> [SessionRow] in
            let user = user(index)
            return [(user.key, Base64Encoding.encode(user.secret), 1_700_000_000)]
                + (user.newerKey.map { [(user.key, Base64Encoding.encode($0), 1_700_000_100)] } ?? [])
        }
    }

    // MARK: - Jobs

    /// One job to produce and what it must become.
    struct Job {
        var record: KafkaRecord
        /// The code the job must fail with; nil: it must decrypt.
        var failure: FailureReason?
        var user: UserKey
        /// The user's number, for ok jobs.
        var userIndex: Int?
        var phone: String
        var watermark: Int64
        var kind = JobKind.encrypted
        /// A user with this one job (code jobs, late-key jobs): its member is this job's number.
        var ownUser = false
    }

    /// Makes the jobs in order, a chunk at a time, with the session rows that only they need
    /// (the broken keys of invalid_session_key jobs) and the ones they must not find (the keys of
    /// session_not_found jobs, which ``storeWithheldSessions(database:)`` stores later).
    struct JobMaker {
        let generator: LoadGenerator
        var random: SplitMix
        var synthetic: SyntheticPayloads<SplitMix>
        var next = 0
        var brokenKeyUsers = 0
        /// The withheld keys of the late-key jobs made so far (the caller takes them).
        var late: [SessionRow] = []
        /// The keys WeChat holds as current for the users of bad_padding and stale_session_key jobs
        /// made so far (the caller takes them).
        var current: [SessionRow] = []
        var staleUsers = 0
        let decryptor = PhoneDecryptor()

        init(_ generator: LoadGenerator) {
            self.generator = generator
            random = SplitMix(seed: generator.plan.seed)
            synthetic = SyntheticPayloads(appid: generator.plan.appid, generator: SplitMix(seed: generator.plan.seed &+ 1))
        }

        mutating func chunk() -> (jobs: [Job], sessions: [SessionRow], withheld: [SessionRow]) {
            let plan = generator.plan
            let range = next..<min(plan.jobs, next + plan.chunkSize)
            next = range.upperBound
            var jobs: [Job] = []
            var sessions: [SessionRow] = []
            var withheld: [SessionRow] = []
            jobs.reserveCapacity(range.count)
            for index in range {
                if plan.codeShare > 0, Double.random(in: 0..<1, using: &random) < plan.codeShare {
                    jobs.append(codeJob(index))
                    continue
                }
                let failure = generator.pick(&random, kind: .encrypted)
                let userIndex = Int.random(in: 0..<generator.userCount, using: &random)
                var user = generator.user(userIndex)
                var value: [UInt8]?
                var key: [UInt8]? = Array(user.key.openid.utf8)
                let timestamp = 1_700_000_000 + Int64(index) * 7 + Int64.random(in: 0..<5, using: &random)
                let phone = synthetic.phoneNumber()
                switch failure {
                case .malformedJob?:
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
                case .sessionNotFound?:
                    user = User(key: UserKey(appid: plan.appid, openid: "o\(plan.seed)nobody\(index)"), secret: synthetic.key())
                    withheld.append((user.key, Base64Encoding.encode(user.secret), 1_700_000_200))
                    value = generator.jobValue(
                        user.key.openid, synthetic.make(.none, key: user.secret, phoneNumber: phone, timestamp: timestamp))
                case .invalidSessionKey?:
                    brokenKeyUsers += 1
                    user = User(key: UserKey(appid: plan.appid, openid: "o\(plan.seed)broken\(brokenKeyUsers)"), secret: synthetic.key())
                    sessions.append((user.key, Base64Encoding.encode(user.secret.prefix(8)), 1_700_000_000))
                    value = generator.jobValue(
                        user.key.openid, synthetic.make(.none, key: user.secret, phoneNumber: phone, timestamp: timestamp))
                case .badPadding?:
                    // Encrypted with a key the user never had; make sure no stored key passes by chance.
                    var payload = synthetic.make(.none, phoneNumber: phone, timestamp: timestamp)
                    let stored = user.storedKeys
                    while case .failure(let failure) = decryptor.decrypt(
                        appid: plan.appid, sessionKeys: stored, iv: payload.iv, encryptedData: payload.encryptedData),
                        failure.reason != .badPadding
                    {
                        payload = synthetic.make(.none, phoneNumber: phone, timestamp: timestamp)
                    }
                    value = generator.jobValue(user.key.openid, payload)
                    // WeChat's current key for this user is the newest stored one.
                    current.append((user.key, user.storedKeys[0], 0))
                case .staleSessionKey?:
                    // The login service missed the user's newest key: WeChat's current key made the
                    // payload, and only an older one is stored (one that fails the padding check).
                    staleUsers += 1
                    user = User(key: UserKey(appid: plan.appid, openid: "o\(plan.seed)stale\(staleUsers)"), secret: synthetic.key())
                    let payload = synthetic.make(.none, key: user.secret, phoneNumber: phone, timestamp: timestamp)
                    sessions.append((user.key, keyFailingPadding(payload), 1_600_000_000))
                    current.append((user.key, Base64Encoding.encode(user.secret), 0))
                    value = generator.jobValue(user.key.openid, payload)
                case nil where plan.lateKeyShare > 0 && Double.random(in: 0..<1, using: &random) < plan.lateKeyShare:
                    // The login race: the key that encrypted the job is stored after it; half of
                    // these users have an older key stored already (bad_padding until then).
                    user = User(key: UserKey(appid: plan.appid, openid: "o\(plan.seed)late\(index)"), secret: synthetic.key())
                    let payload = synthetic.make(.none, key: user.secret, phoneNumber: phone, timestamp: timestamp)
                    if Bool.random(using: &random) {
                        sessions.append((user.key, keyFailingPadding(payload), 1_600_000_000))
                    }
                    late.append((user.key, Base64Encoding.encode(user.secret), 0))
                    value = generator.jobValue(user.key.openid, payload)
                case nil:
                    let damaged = Double.random(in: 0..<1, using: &random) < plan.damagedShare
                    value = generator.jobValue(
                        user.key.openid,
                        synthetic.make(damaged ? .damagedBase64 : .none, key: user.secret, phoneNumber: phone, timestamp: timestamp))
                case .invalidIV?, .invalidCiphertext?, .invalidPlaintext?, .appidMismatch?:
                    let fault = SyntheticPayloads<SplitMix>.Fault(rawValue: failure!.rawValue)!
                    value = generator.jobValue(
                        user.key.openid, synthetic.make(fault, key: user.secret, phoneNumber: phone, timestamp: timestamp))
                case .codeInvalid?, .codeExpired?, .invalidPhoneInfo?, .exchangeNotConfigured?, .wechatError?:
                    preconditionFailure("a code reason is only picked for code jobs")
                }
                let record = KafkaRecord(
                    topic: plan.topic, key: key, value: value,
                    headers: [KafkaHeader("request-id", "req-\(plan.seed)-\(index)"), KafkaHeader("source", "loadgen")]
                )
                let ownUser = late.last.map { $0.user == user.key } ?? false
                jobs.append(
                    Job(
                        record: record, failure: failure, user: user.key, userIndex: failure == nil && !ownUser ? userIndex : nil,
                        phone: phone,
                        watermark: timestamp, ownUser: ownUser))
            }
            // Deliver some users' jobs out of order: swap neighbours now and then.
            for index in stride(from: 1, to: jobs.count, by: 5) where Bool.random(using: &random) {
                jobs.swapAt(index - 1, index)
            }
            return (jobs, sessions, withheld)
        }

        /// A random key (base64) that fails `payload`'s padding check. A wrong key passes it about
        /// 1 time in 256, and the job would then fail invalid_plaintext, which no newer key cures.
        mutating func keyFailingPadding(_ payload: SyntheticPayloads<SplitMix>.Payload) -> String {
            while true {
                let key = Base64Encoding.encode(synthetic.key())
                if case .failure(let failure) = decryptor.decrypt(
                    appid: generator.plan.appid, sessionKeys: [key], iv: payload.iv, encryptedData: payload.encryptedData),
                    failure.reason == .badPadding
                {
                    return key
                }
            }
        }

        /// Code job `index`: a user of its own (one code per user, so the expected member is that
        /// code's number) with a code dev-wechat honours, or the fault the plan picked.
        mutating func codeJob(_ index: Int) -> Job {
            let plan = generator.plan
            var failure = generator.pick(&random, kind: .code)
            var appid = plan.appid
            let openid = "o\(plan.seed)c\(index)"
            var issuedAt = plan.codesIssuedAt
            var faults: SyntheticCode.Faults = []
            var timestamp: Int64?
            var forged = false
            switch failure {
            case .codeInvalid?: forged = true
            case .codeExpired?:
                issuedAt -= SyntheticCode.lifetime + 100
                timestamp = issuedAt * 1000
            case .invalidPhoneInfo?: faults = .noPhoneInfo
            case .appidMismatch?: faults = .wrongWatermark
            case .wechatError?: faults = .otherErrcode
            case .exchangeNotConfigured?:
                if let other = plan.unconfiguredAppid { appid = other } else { failure = nil }
            case nil:
                if Double.random(in: 0..<1, using: &random) < plan.transientShare {
                    faults = SyntheticCode.Faults.transient[index % SyntheticCode.Faults.transient.count]
                }
            default: break
            }
            let code = SyntheticCode(appid: appid, issuedAt: issuedAt, serial: UInt64(index) &+ plan.seed &* 1_000_003, faults: faults)
            var writer = JSONWriter()
            writer.beginObject()
            writer.field("openid", openid)
            writer.field("code", forged ? code.forgedText : code.text)
            if failure == .malformedJob { writer.field("encryptedData", "AAAA") }
            writer.field("appid", appid)
            writer.endObject()
            let record = KafkaRecord(
                topic: plan.topic, key: Array(openid.utf8), value: Array(writer.text.utf8),
                headers: [KafkaHeader("request-id", "req-\(plan.seed)-\(index)"), KafkaHeader("source", "loadgen")], timestamp: timestamp
            )
            let phone = code.phone
            return Job(
                record: record, failure: failure, user: UserKey(appid: appid, openid: openid), userIndex: failure == nil ? -1 : nil,
                phone: phone.phoneNumber, watermark: phone.watermarkTimestamp, kind: .code
            )
        }
    }

    /// A failure code by the plan's shares for jobs of `kind`, or nil for an ok job.
    fileprivate func pick(_ random: inout SplitMix, kind: JobKind) -> FailureReason? {
        var roll = Double.random(in: 0..<1, using: &random)
        for reason in FailureReason.allCases where reason.applies(to: kind) {
            let share = plan.faults[reason] ?? 0
            if roll < share { return reason }
            roll -= share
        }
        return nil
    }

    fileprivate func jobValue(_ openid: String, _ payload: SyntheticPayloads<SplitMix>.Payload) -> [UInt8] {
        Self.encryptedJobValue(openid: openid, encryptedData: payload.encryptedData, iv: payload.iv, appid: plan.appid)
    }

    /// SPEC's value of an encrypted job: `{"openid", "encryptedData", "iv"[, "appid"]}`.
    public static func encryptedJobValue(openid: String, encryptedData: String, iv: String, appid: String?) -> [UInt8] {
        DecryptJob(openid: openid, encryptedData: encryptedData, iv: iv, appid: appid).jsonValue
    }

    // MARK: - Writing

    /// Seeds the users' sessions, then makes and produces the jobs a chunk at a time (each chunk's
    /// own session rows first, then its records, each acknowledged), so memory does not grow with
    /// the load. Returns the expectation; its `members` and `failures` are filled only when
    /// `detailed` (tests compare the tables with them). `progress` is called with the number of
    /// jobs produced so far.
    public func run(
        database: DecryptdDatabase, producer: KafkaProducer, detailed: Bool = true, progress: (Int) -> Void = { _ in }
    ) throws -> Expectation {
        for start in stride(from: 0, to: userCount, by: 5000) {
            try database.insertSessionKeys(sessions(of: start..<min(userCount, start + 5000)))
        }
        try database.analyzeSessionKeys()
        var expectation = Expectation()
        var hasPhone = [Bool](repeating: false, count: userCount)
        var maker = JobMaker(self)
        while maker.next < plan.jobs {
            let (jobs, sessions, _) = maker.chunk()
            try database.insertSessionKeys(sessions)
            let results = producer.send(jobs.map(\.record))
            let producedAt = Date()
            expectation.lateSessions += maker.late.map { ($0.user, $0.sessionKey, producedAt) }
            maker.late = []
            for row in maker.current { expectation.currentKeys[row.user] = row.sessionKey }
            maker.current = []
            for (job, result) in zip(jobs, results) {
                let id = try result.get()
                expectation.counts[job.failure?.rawValue ?? "ok", default: 0] += 1
                expectation.kinds[job.kind, default: 0] += 1
                if job.kind == .code || job.ownUser, job.failure == nil {
                    expectation.usersWithPhone += 1
                    if detailed { expectation.members[job.user] = (job.phone, job.watermark) }
                } else if let userIndex = job.userIndex {
                    if !hasPhone[userIndex] { (hasPhone[userIndex], expectation.usersWithPhone) = (true, expectation.usersWithPhone + 1) }
                    guard detailed else { continue }
                    let current = expectation.members[job.user]
                    if current == nil || current!.watermark <= job.watermark {
                        expectation.members[job.user] = (job.phone, job.watermark)
                    }
                } else if detailed, let failure = job.failure {
                    expectation.failures[id] = failure.rawValue
                }
            }
            expectation.jobs += jobs.count
            progress(expectation.jobs)
        }
        return expectation
    }
}

extension LoadGenerator {
    /// Stores the session keys that the load of this plan left out, the keys of its
    /// session_not_found users, as a login service that caught up would; produces nothing. After
    /// it, `decryptd reprocess` recovers those jobs. The jobs are made again from the seed, a chunk
    /// at a time, to learn the keys. Returns how many keys it stored (none that were there already).
    public func storeWithheldSessions(database: DecryptdDatabase) throws -> Int {
        var maker = JobMaker(self)
        var stored = 0
        while maker.next < plan.jobs {
            stored += try database.insertSessionKeys(maker.chunk().withheld)
        }
        return stored
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
    public static func mix(_ value: UInt64) -> UInt64 {
        var z = value
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
