import DecryptdStore
import Dispatch
import Foundation
import KafkaClient
import PhoneDecryption

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
    /// The newest key's `issued_at` (µs since the epoch) by key slot, when the worker parks jobs
    /// (see ``park(reasons:)``); empty otherwise.
    var newestIssuedAt: [Int64?] = []
    /// The codes this batch's code jobs exchanged, for the ledger (see ``ExchangeStage``).
    var exchanges: [CodeExchangeRecord] = []
    /// Leases its jobs hold until they are durable, released by ``releaseLeases()``.
    var leases: [SlotLease] = []
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
    ///
    /// Code jobs that need an exchange are not dealt: they are returned apart, in order, for the
    /// exchange stage, so that their calls to WeChat never hold up the encrypted jobs beside them.
    static func split(_ fetched: FetchedMessages, appids: [String], lanes: Int, batchSize: Int) -> (
        batches: [WorkBatch], codeJobs: [CodeJob]
    ) {
        let messages = fetched.messages
        // Jobs are parsed into a buffer and moved from there into their batches, each exactly
        // once: appending copies would retain every reference a job holds, and freeing the
        // originals release them all again.
        let parsed = UnsafeMutableBufferPointer<PendingJob>.allocate(capacity: messages.count)
        defer { parsed.deallocate() }
        var laneOf = [Int](repeating: 0, count: messages.count)
        var perLane = [Int](repeating: 0, count: lanes)
        var codeJobs: [CodeJob] = []
        for (index, message) in messages.enumerated() {
            let job = parsed.baseAddress! + index
            job.initialize(to: PendingJob(message, appids: appids))
            if case .code = job.pointee.payload, case .none = job.pointee.outcome {
                laneOf[index] = -1
                continue
            }
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
            if lane < 0 {
                // A code job that awaits its exchange, as its payload and outcome say just above.
                if let job = CodeJob((parsed.baseAddress! + index).move()) { codeJobs.append(job) }
                continue
            }
            batches[firstBatch[lane] + dealt[lane] / partSize[lane]].jobs.append((parsed.baseAddress! + index).move())
            dealt[lane] += 1
        }
        return (batches, codeJobs)
    }

    /// Deals finished jobs (exchanged code jobs) into one batch per lane, by the same hash as
    /// ``split(_:appids:lanes:batchSize:)``, so that a user's rows are always written by one slot.
    static func byLane(_ jobs: [PendingJob], exchanges: [CodeExchangeRecord], lanes: Int, fetchedAt: DispatchTime, fetchedDate: Date)
        -> [WorkBatch]
    {
        var batches = (0..<lanes).map { WorkBatch(lane: $0, fetchedAt: fetchedAt, fetchedDate: fetchedDate) }
        for job in jobs {
            let lane = job.openid == nil ? 0 : Int(job.openidHash % UInt64(lanes))
            if let lease = job.lease { batches[lane].leases.append(lease) }
            batches[lane].jobs.append(job)
        }
        for exchange in exchanges {
            batches[Int(laneHash(exchange.user.openid) % UInt64(lanes))].exchanges.append(exchange)
        }
        return batches.filter { !$0.jobs.isEmpty || !$0.exchanges.isEmpty }
    }

    /// Encrypted jobs that failed for one of `reasons` wait for a newer session key instead
    /// (SPEC "Waiting for a session key"): their outcome becomes ``JobOutcome/parked(_:triedIssuedAt:)``.
    mutating func park(reasons: Set<FailureReason>) {
        let newest = newestIssuedAt
        jobs.withUnsafeMutableBufferPointer { jobs in
            for index in jobs.indices {
                guard case .failure(let failure) = jobs[index].outcome, reasons.contains(failure.reason),
                    case .encrypted = jobs[index].payload, jobs[index].user != nil
                else { continue }
                let slot = Int(jobs[index].keySlot)
                jobs[index].outcome = .parked(failure, triedIssuedAt: newest.indices.contains(slot) ? newest[slot] : nil)
            }
        }
    }

    /// Takes out the encrypted jobs about to fail `bad_padding` whose appid `checks` (it has an app
    /// secret), for WeChat's checksession (SPEC "Telling stale keys apart"), so that the check never
    /// holds up the rest of the batch: their outcomes come back through the exchange stage. Each
    /// carries its user's newest stored key (the first of the slot's keys).
    mutating func takeSessionChecks(_ checks: (String) -> Bool) -> [CodeJob] {
        // Found in place first: most batches have none, and copying a job retains all it holds.
        let keys = sessionKeys
        let found: [(index: Int, user: UserKey, newest: String, failure: DecryptFailure)] = jobs.withUnsafeBufferPointer { jobs in
            jobs.indices.compactMap { index in
                guard case .failure(let failure) = jobs[index].outcome, failure.reason == .badPadding,
                    case .encrypted = jobs[index].payload,
                    let user = jobs[index].user, checks(user.appid), keys.indices.contains(Int(jobs[index].keySlot)),
                    let newest = keys[Int(jobs[index].keySlot)].first
                else { return nil }
                return (index, user, newest, failure)
            }
        }
        guard !found.isEmpty else { return [] }
        let taken = found.map { found in
            var job = jobs[found.index]
            job.outcome = nil
            return CodeJob(checking: job, user: found.user, newestKey: found.newest, failure: found.failure)
        }
        let indices = Set(found.map(\.index))
        jobs = jobs.indices.filter { !indices.contains($0) }.map { jobs[$0] }
        return taken
    }

    /// The batch is durable: the leases its jobs held are given back.
    func releaseLeases() {
        for lease in leases { lease.release() }
    }

    /// FNV-1a over the openid's bytes (the openid alone keeps every job of a user in one lane),
    /// finished with SplitMix64's mixer: FNV's low bits barely depend on anything but the low bits
    /// of the bytes, so `% lanes` of the raw value would fill the lanes unevenly.
    static func laneHash(_ openid: String) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in openid.utf8 {
            hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3
        }
        return finalized(hash)
    }

    /// SplitMix64's finalizer: every output bit depends on every input bit.
    private static func finalized(_ value: UInt64) -> UInt64 {
        var z = value
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
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
                guard jobs[index].awaitsDecryption, let openid = jobs[index].openid, let appid = jobs[index].appid else { continue }
                jobs[index].keySlot = slots.slot(appid: appid, openid: openid, hash: jobs[index].openidHash)
            }
        }
    }
}

extension MemberRecord {
    /// The member row a decrypted payload makes.
    init(user: UserKey, payload: PhonePayload) {
        self.init(
            user: user, phoneNumber: payload.phoneNumber, purePhoneNumber: payload.purePhoneNumber,
            countryCode: payload.countryCode, watermarkTimestamp: payload.watermarkTimestamp)
    }
}

extension FailureRecord {
    /// The failure row of a job (`appid` and `openid` as far as the job names them).
    init(appid: String?, openid: String?, failure: DecryptFailure, source: SourceCoordinates, kind: JobKind?) {
        self.init(
            appid: appid, openid: openid, reason: failure.reason.rawValue, detail: failure.detail, source: source, jobKind: kind?.rawValue)
    }
}
