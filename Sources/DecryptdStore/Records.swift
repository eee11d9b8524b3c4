#if canImport(Glibc)
    import Glibc
#endif

/// A user as the session table keys it.
public struct UserKey: Sendable, Hashable {
    public var appid: String
    public var openid: String

    public init(appid: String, openid: String) {
        self.appid = appid
        self.openid = openid
    }
}

/// Where a job came from: its Kafka coordinates, which identify it for idempotency.
public struct SourceCoordinates: Sendable, Hashable {
    public var topic: String
    public var partition: Int32
    public var offset: Int64

    public init(topic: String, partition: Int32, offset: Int64) {
        self.topic = topic
        self.partition = partition
        self.offset = offset
    }
}

/// A decrypted phone number to upsert into `members`.
public struct MemberRecord: Sendable, Hashable {
    public var user: UserKey
    public var phoneNumber: String
    public var purePhoneNumber: String
    public var countryCode: String
    public var watermarkTimestamp: Int64

    public init(user: UserKey, phoneNumber: String, purePhoneNumber: String, countryCode: String, watermarkTimestamp: Int64) {
        self.user = user
        self.phoneNumber = phoneNumber
        self.purePhoneNumber = purePhoneNumber
        self.countryCode = countryCode
        self.watermarkTimestamp = watermarkTimestamp
    }
}

/// A failed job to record in `decrypt_failures`.
public struct FailureRecord: Sendable, Hashable {
    /// `nil` when the job was too malformed to name them.
    public var appid: String?
    public var openid: String?
    /// A SPEC.md reason code.
    public var reason: String
    /// Short, never secret.
    public var detail: String
    public var source: SourceCoordinates
    /// "encrypted" or "code"; `nil` when the job was too malformed to tell.
    public var jobKind: String?

    public init(appid: String?, openid: String?, reason: String, detail: String, source: SourceCoordinates, jobKind: String? = nil) {
        self.appid = appid
        self.openid = openid
        self.reason = reason
        self.detail = detail
        self.source = source
        self.jobKind = jobKind
    }
}

/// A code WeChat answered for, for the `phone_code_exchanges` ledger: by its SHA-256 only.
public struct CodeExchangeRecord: Sendable, Hashable {
    /// The code's SHA-256 as 64 lowercase hex digits.
    public var codeDigest: String
    public var user: UserKey
    /// "ok" or the failure reason the answer gave.
    public var outcome: String
    /// The failure's detail (empty for ok).
    public var detail: String

    public init(codeDigest: String, user: UserKey, outcome: String, detail: String) {
        self.codeDigest = codeDigest
        self.user = user
        self.outcome = outcome
        self.detail = detail
    }
}

/// One batch's durable outcome: written in one transaction.
public struct OutcomeBatch: Sendable, Hashable {
    public var members: [MemberRecord] = []
    public var failures: [FailureRecord] = []
    /// Failure rows to mark resolved (a reprocessed job that now succeeded).
    public var resolved: [SourceCoordinates] = []
    /// Codes exchanged for this batch's code jobs, recorded with their outcomes.
    public var exchanges: [CodeExchangeRecord] = []
    /// Jobs that wait for a newer session key, and for how long at most (seconds).
    public var parked: [ParkedJobRecord] = []
    public var parkTimeoutSeconds: Double = 0

    public init(
        members: [MemberRecord] = [], failures: [FailureRecord] = [], resolved: [SourceCoordinates] = [],
        exchanges: [CodeExchangeRecord] = []
    ) {
        self.members = members
        self.failures = failures
        self.resolved = resolved
        self.exchanges = exchanges
    }

    public var isEmpty: Bool { members.isEmpty && failures.isEmpty && resolved.isEmpty && exchanges.isEmpty && parked.isEmpty }

    /// One member row per user: the newest watermark wins, on a tie the later entry. Sorted by
    /// (appid, openid) byte by byte, which is the order of the tables' "C" collation. Identifiers
    /// compare as bytes here, as they do in the tables: Swift's `==` on strings would merge two
    /// spellings of the same Unicode text that PostgreSQL keeps apart.
    public var newestMemberPerUser: [MemberRecord] {
        // The identifiers are copied once into one buffer and compared there with memcmp: going
        // through the strings in the comparator would retain and release them on every one of
        // the n log n comparisons, which cost more than the whole write statement's other work.
        let keys = UserKeyBuffer(members.lazy.map { $0.user })
        return members.withUnsafeBufferPointer { m in
            let order = m.indices.sorted { a, b in
                let byUser = keys.compare(a, b)
                if byUser != 0 { return byUser < 0 }
                if m[a].watermarkTimestamp != m[b].watermarkTimestamp { return m[a].watermarkTimestamp > m[b].watermarkTimestamp }
                return a > b
            }
            var result: [MemberRecord] = []
            result.reserveCapacity(order.count)
            var previous: Int?
            for index in order where previous.map({ keys.compare($0, index) != 0 }) ?? true {
                result.append(m[index])
                previous = index
            }
            return result
        }
    }
}

/// The UTF-8 bytes of many users' (appid, openid), packed into one buffer, so that they can be
/// compared in memcmp order (the "C" collation's) without touching the strings again.
struct UserKeyBuffer {
    private var bytes: [UInt8] = []
    /// Per user: where its appid starts, the appid's length, the openid's length (it follows).
    private var spans: [(start: Int, appid: Int, openid: Int)] = []

    init(_ users: some Collection<UserKey>) {
        bytes.reserveCapacity(users.count * 48)
        spans.reserveCapacity(users.count)
        for user in users {
            let start = bytes.count
            bytes.append(contentsOf: user.appid.utf8)
            let appid = bytes.count - start
            bytes.append(contentsOf: user.openid.utf8)
            spans.append((start, appid, bytes.count - start - appid))
        }
    }

    /// Negative, zero or positive as user `a` sorts before, with or after user `b`.
    func compare(_ a: Int, _ b: Int) -> Int {
        let x = spans[a]
        let y = spans[b]
        return bytes.withUnsafeBufferPointer { buffer in
            let base = buffer.baseAddress!
            let byAppid = Self.compare(base + x.start, x.appid, base + y.start, y.appid)
            return byAppid != 0 ? byAppid : Self.compare(base + x.start + x.appid, x.openid, base + y.start + y.appid, y.openid)
        }
    }

    private static func compare(_ a: UnsafePointer<UInt8>, _ aCount: Int, _ b: UnsafePointer<UInt8>, _ bCount: Int) -> Int {
        let length = min(aCount, bCount)
        let common = length == 0 ? 0 : memcmp(a, b, length)
        return common != 0 ? Int(common) : aCount - bCount
    }
}
