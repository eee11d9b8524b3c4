import DecryptdStore
import Dispatch
import Foundation
import KafkaClient
import PhoneDecryption

/// One consumed message and what the pipeline has made of it so far.
///
/// A job is read where it lies, in its message's buffer: only the openid (and an appid this
/// worker does not serve) become strings; `encryptedData` and `iv` are decrypted in place. Each
/// string a job owns is an allocation and a reference to count on every copy, and batches move
/// between threads.
struct PendingJob: Sendable {
    let message: KafkaMessage
    /// `nil` when the value was not a job (`outcome` then holds `malformed_job`).
    let openid: String?
    /// The appid the job is for: its own, or the worker's default. `nil` for malformed jobs.
    let appid: String?
    /// Where the job's ciphertext and iv are (`nil` for malformed jobs).
    let ciphertext: Ciphertext?
    /// Set by parsing (failures) or by decryption.
    var outcome: Result<PhonePayload, DecryptFailure>?
    /// Where the session keys of this job's user are in its batch's `sessionKeys` (set by
    /// ``WorkBatch/assignKeySlots(_:)`` for the jobs that still need decrypting).
    var keySlot: Int32 = -1
    /// ``WorkBatch/laneHash(_:)`` of the openid (0 without a job): computed once, it picks the
    /// job's lane and finds its user's key slot.
    let openidHash: UInt64

    /// `encryptedData` and `iv` of a job: byte ranges of the message value, or their text when
    /// JSON escapes had to be resolved (a PHP client writes `/` as `\/`).
    enum Ciphertext: Sendable {
        case inValue(encryptedData: Range<Int32>, iv: Range<Int32>)
        case unescaped(encryptedData: String, iv: String)
    }

    var user: UserKey? {
        guard let openid, let appid else { return nil }
        return UserKey(appid: appid, openid: openid)
    }

    /// Parses a message: a job for one of `appids`, or a failure that needs no decryption.
    init(_ message: KafkaMessage, appids: [String]) {
        self.message = message
        // Parsed where the value lies: no copy of it is made.
        let parsed = message.withValue { value in value.map { value in DecryptJob.locate(value).map { Self.fields(of: $0, in: value, appids: appids) } } }
        // Field by field, not through tuples: tuple assignments copied the outcome and the job.
        guard case .success(let fields) = parsed else {
            openid = nil
            appid = nil
            ciphertext = nil
            openidHash = 0
            if case .failure(let failure) = parsed {
                outcome = .failure(failure)
            } else {
                outcome = .failure(DecryptFailure(.malformedJob, "message has no value"))
            }
            return
        }
        openid = fields.openid
        appid = fields.appid
        ciphertext = fields.ciphertext
        openidHash = WorkBatch.laneHash(fields.openid)
        if !fields.served {
            outcome = .failure(DecryptFailure(.appidMismatch, "job appid \(Self.quoted(appid: fields.appid)) is not one this worker serves"))
        }
    }

    /// A job's appid as a failure detail may show it: as given when it could be one (short,
    /// printable ASCII), else only its size. Details are short and go into dead-letter headers;
    /// the appid is whatever the job said, up to the broker's message size.
    static func quoted(appid: String) -> String {
        let bytes = appid.utf8
        guard bytes.count <= 64, bytes.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else { return "of \(bytes.count) bytes" }
        return appid
    }

    /// The strings a located job needs and where its ciphertext is. A served appid is taken from
    /// `appids` (no copy); a job without one is for the first.
    private static func fields(
        of job: DecryptJob.Located, in value: UnsafeBufferPointer<UInt8>, appids: [String]
    ) -> (openid: String, appid: String, served: Bool, ciphertext: Ciphertext) {
        var appid = appids[0], served = true
        if let token = job.appid {
            let scanner = JSONScanner(value)
            // Byte for byte, like the watermark check and the tables.
            if let index = appids.firstIndex(where: { scanner.token(token, equalsText: $0) }) {
                appid = appids[index]
            } else {
                (appid, served) = (job.string(token, in: value), false)
            }
        }
        let ciphertext: Ciphertext
        if job.encryptedData.hasEscapes || job.iv.hasEscapes {
            ciphertext = .unescaped(encryptedData: job.string(job.encryptedData, in: value), iv: job.string(job.iv, in: value))
        } else {
            ciphertext = .inValue(encryptedData: Int32(job.encryptedData.start)..<Int32(job.encryptedData.end),
                                  iv: Int32(job.iv.start)..<Int32(job.iv.end))
        }
        return (job.string(job.openid, in: value), appid, served, ciphertext)
    }

    /// Decrypts the job with its user's session keys (newest first) and sets its outcome.
    ///
    /// Mutating, so that a job in a buffer is worked on where it lies: calling a non-mutating
    /// method on `buffer[index]` makes Swift copy the whole job (and retain all it holds) first.
    mutating func decrypt(with decryptor: PhoneDecryptor, sessionKeys: [String]) {
        let appid = appid!
        switch ciphertext! {
        case .inValue(let encryptedData, let iv):
            outcome = message.withValue { value in
                decryptor.decrypt(
                    appid: appid, sessionKeys: sessionKeys,
                    iv: UnsafeBufferPointer(rebasing: value![Int(iv.lowerBound)..<Int(iv.upperBound)]),
                    encryptedData: UnsafeBufferPointer(rebasing: value![Int(encryptedData.lowerBound)..<Int(encryptedData.upperBound)])
                )
            }
        case .unescaped(let encryptedData, let iv):
            outcome = decryptor.decrypt(appid: appid, sessionKeys: sessionKeys, iv: iv, encryptedData: encryptedData)
        }
    }
}

/// What one poll returned, on its way to the lookup stage (which parses it).
struct FetchedMessages: Sendable {
    var messages: [KafkaMessage]
    let fetchedAt = DispatchTime.now()
    let fetchedDate = Date()
}

/// A batch on its way through lookup → decrypt → persist.
struct WorkBatch: Sendable {
    var jobs: [PendingJob]
    /// The persist slot that writes this batch. Every job of one user goes to the same lane, so
    /// transactions running side by side never wait on each other's member rows.
    var lane = 0
    /// Session keys, newest first, by key slot (filled by the lookup stage): positions, not a
    /// dictionary, so that each job's user is hashed once on its way through.
    var sessionKeys: [[String]] = []
    let fetchedAt: DispatchTime
    let fetchedDate: Date

    init(jobs: [PendingJob] = [], lane: Int = 0, fetchedAt: DispatchTime = .now(), fetchedDate: Date = Date()) {
        self.jobs = jobs
        self.lane = lane
        self.fetchedAt = fetchedAt
        self.fetchedDate = fetchedDate
    }

    /// Parses `messages` and deals them into batches of at most `batchSize` jobs per lane: a
    /// user's jobs by a hash of the openid, jobs without a user (malformed) round-robin. A lane
    /// that does not fit is cut into equal parts, not into full batches and a small remainder: a
    /// poll fills each lane to about `batchSize`, so half the lanes would otherwise leave a tail
    /// of a few dozen jobs, each a transaction of its own.
    static func split(_ fetched: FetchedMessages, appids: [String], lanes: Int, batchSize: Int) -> [WorkBatch] {
        let messages = fetched.messages
        // Jobs are parsed into a buffer and moved from there into their batches, each exactly
        // once: appending copies would retain every reference a job holds, and freeing the
        // originals release them all again.
        let parsed = UnsafeMutableBufferPointer<PendingJob>.allocate(capacity: messages.count)
        defer { parsed.deallocate() }
        var laneOf = [Int](repeating: 0, count: messages.count)
        var perLane = [Int](repeating: 0, count: lanes)
        for (index, message) in messages.enumerated() {
            let job = parsed.baseAddress! + index
            job.initialize(to: PendingJob(message, appids: appids))
            let lane: Int
            if case .none = job.pointee.openid { lane = index % lanes } else { lane = Int(job.pointee.openidHash % UInt64(lanes)) }
            laneOf[index] = lane
            perLane[lane] += 1
        }
        var batches: [WorkBatch] = []
        var firstBatch = [Int](repeating: 0, count: lanes)
        var partSize = [Int](repeating: 0, count: lanes)
        for (lane, count) in perLane.enumerated() where count > 0 {
            let parts = (count + batchSize - 1) / batchSize
            partSize[lane] = (count + parts - 1) / parts
            firstBatch[lane] = batches.count
            for part in 0..<parts {
                var batch = WorkBatch(lane: lane, fetchedAt: fetched.fetchedAt, fetchedDate: fetched.fetchedDate)
                batch.jobs.reserveCapacity(min(partSize[lane], count - part * partSize[lane]))
                batches.append(batch)
            }
        }
        var dealt = [Int](repeating: 0, count: lanes)
        for index in 0..<messages.count {
            let lane = laneOf[index]
            batches[firstBatch[lane] + dealt[lane] / partSize[lane]].jobs.append((parsed.baseAddress! + index).move())
            dealt[lane] += 1
        }
        return batches
    }

    /// FNV-1a over the openid's bytes (the openid alone keeps every job of a user in one lane),
    /// finished with SplitMix64's mixer: FNV's low bits barely depend on anything but the low bits
    /// of the bytes, so `% lanes` of the raw value would fill the lanes unevenly.
    static func laneHash(_ openid: String) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in openid.utf8 {
            hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3
        }
        return SplitMix.mix(hash)
    }

    /// Numbers the distinct users of the jobs in `batches` that still need decrypting: each such
    /// job gets its user's key slot. Returns the users in slot order, for the session lookup.
    static func assignKeySlots(_ batches: inout [WorkBatch]) -> [UserKey] {
        var slots = UserSlots(capacity: batches.reduce(0) { $0 + $1.jobs.count })
        for index in batches.indices { batches[index].assignKeySlots(&slots) }
        return slots.users
    }

    /// Gives each job of this batch that still needs decrypting its user's slot in `slots`.
    mutating func assignKeySlots(_ slots: inout UserSlots) {
        // Through the buffer: copying whole jobs out would retain every string they hold.
        jobs.withUnsafeMutableBufferPointer { jobs in
            for index in jobs.indices {
                guard case .none = jobs[index].outcome, let openid = jobs[index].openid, let appid = jobs[index].appid else { continue }
                jobs[index].keySlot = slots.slot(appid: appid, openid: openid, hash: jobs[index].openidHash)
            }
        }
    }
}

/// Numbers distinct users in order of first appearance: an open-addressing table over the jobs'
/// precomputed openid hashes, so a job is not hashed again and no `UserKey` is made for a user
/// already seen (a `[UserKey: Int32]` spent more on hashing and reference counting than on
/// anything else in the lookup stage).
///
/// Users are equal when their identifiers are equal byte for byte, as in the tables ("C"
/// collation) and like the lane hash: Swift's `==` on strings would make two spellings of the same
/// Unicode text one user, though PostgreSQL keeps their sessions apart.
struct UserSlots {
    private(set) var users: [UserKey] = []
    /// Slot + 1 of the user at each position; 0 is empty.
    private var table: [Int32]
    private let mask: Int

    /// `capacity`: at least the number of distinct users to come (the table never grows).
    init(capacity: Int) {
        var size = 16
        while size < capacity * 2 { size <<= 1 }
        table = [Int32](repeating: 0, count: size)
        mask = size - 1
        users.reserveCapacity(capacity)
    }

    /// The user's slot, numbering it when it is new. `hash` is ``WorkBatch/laneHash(_:)`` of `openid`.
    mutating func slot(appid: String, openid: String, hash: UInt64) -> Int32 {
        var position = Int(truncatingIfNeeded: hash) & mask
        while true {
            let entry = table[position]
            if entry == 0 {
                precondition(users.count < table.count / 2, "more users than the capacity given")
                users.append(UserKey(appid: appid, openid: openid))
                table[position] = Int32(users.count)
                return Int32(users.count - 1)
            }
            if users[Int(entry) - 1].openid.utf8.elementsEqual(openid.utf8), users[Int(entry) - 1].appid.utf8.elementsEqual(appid.utf8) {
                return entry - 1
            }
            position = (position + 1) & mask
        }
    }
}

/// What a batch's jobs came to, for the metrics and the progress line.
struct OutcomeTally {
    /// Jobs by outcome name: "ok" or a failure code; outcomes with no job are absent.
    private(set) var counts: [String: Int] = [:]
    /// Payloads that only an older session key decrypted.
    private(set) var fallbacks = 0
    /// Payloads per repair kind, in the order of `Base64Repairs.named`.
    private(set) var repairs = [Int](repeating: 0, count: Base64Repairs.named.count)

    /// Every job must have its outcome.
    init(_ jobs: [PendingJob]) {
        // Counted by position (0: ok, then the failure reasons in declaration order) and named once
        // per batch: a dictionary keyed by name would hash a string per job.
        let reasons = FailureReason.allCases
        var tally = [Int](repeating: 0, count: reasons.count + 1)
        // Through the buffer, reading one field: `for job in jobs` would copy (retain and release)
        // every string and array of every job.
        jobs.withUnsafeBufferPointer { jobs in
            for index in jobs.indices {
                switch jobs[index].outcome! {
                case .success(let payload):
                    tally[0] += 1
                    if payload.keyIndex > 0 { fallbacks += 1 }
                    if !payload.repairs.isEmpty {
                        for (kind, (repair, _)) in Base64Repairs.named.enumerated() where payload.repairs.contains(repair) { repairs[kind] += 1 }
                    }
                case .failure(let failure):
                    tally[reasons.firstIndex(of: failure.reason)! + 1] += 1
                }
            }
        }
        for (position, count) in tally.enumerated() where count > 0 {
            counts[position == 0 ? "ok" : reasons[position - 1].rawValue] = count
        }
    }
}

extension MemberRecord {
    /// The member row a decrypted payload makes.
    init(user: UserKey, payload: PhonePayload) {
        self.init(user: user, phoneNumber: payload.phoneNumber, purePhoneNumber: payload.purePhoneNumber,
                  countryCode: payload.countryCode, watermarkTimestamp: payload.watermarkTimestamp)
    }
}

extension FailureRecord {
    /// The failure row of a job (`appid` and `openid` as far as the job names them).
    init(appid: String?, openid: String?, failure: DecryptFailure, source: SourceCoordinates) {
        self.init(appid: appid, openid: openid, reason: failure.reason.rawValue, detail: failure.detail, source: source)
    }
}
