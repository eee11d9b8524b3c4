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

    public init(appid: String?, openid: String?, reason: String, detail: String, source: SourceCoordinates) {
        self.appid = appid
        self.openid = openid
        self.reason = reason
        self.detail = detail
        self.source = source
    }
}

/// One batch's durable outcome: written in one transaction.
public struct OutcomeBatch: Sendable, Hashable {
    public var members: [MemberRecord] = []
    public var failures: [FailureRecord] = []
    /// Failure rows to mark resolved (a reprocessed job that now succeeded).
    public var resolved: [SourceCoordinates] = []

    public init(members: [MemberRecord] = [], failures: [FailureRecord] = [], resolved: [SourceCoordinates] = []) {
        self.members = members
        self.failures = failures
        self.resolved = resolved
    }

    public var isEmpty: Bool { members.isEmpty && failures.isEmpty && resolved.isEmpty }

    /// One member row per user: the newest watermark wins, on a tie the later entry. Sorted by
    /// (appid, openid) byte by byte, which is the order of the tables' "C" collation. Identifiers
    /// compare as bytes here, as they do in the tables: Swift's `==` on strings would merge two
    /// spellings of the same Unicode text that PostgreSQL keeps apart.
    public var newestMemberPerUser: [MemberRecord] {
        // Compared in place through the buffer: copying records out in the comparator would
        // retain and release all their strings on every comparison.
        members.withUnsafeBufferPointer { m in
            func compareUsers(_ a: Int, _ b: Int) -> Int {
                let byAppid = Self.compareBytes(m[a].user.appid, m[b].user.appid)
                return byAppid != 0 ? byAppid : Self.compareBytes(m[a].user.openid, m[b].user.openid)
            }
            let order = m.indices.sorted { a, b in
                let byUser = compareUsers(a, b)
                if byUser != 0 { return byUser < 0 }
                if m[a].watermarkTimestamp != m[b].watermarkTimestamp { return m[a].watermarkTimestamp > m[b].watermarkTimestamp }
                return a > b
            }
            var result: [MemberRecord] = []
            result.reserveCapacity(order.count)
            var previous: Int?
            for index in order where previous.map({ compareUsers($0, index) != 0 }) ?? true {
                result.append(m[index])
                previous = index
            }
            return result
        }
    }

    /// memcmp order of the UTF-8 bytes: negative, zero or positive.
    private static func compareBytes(_ x: String, _ y: String) -> Int {
        var x = x, y = y
        return x.withUTF8 { a in
            y.withUTF8 { b in
                let length = min(a.count, b.count)
                let common = length == 0 ? 0 : memcmp(a.baseAddress!, b.baseAddress!, length)
                return common != 0 ? Int(common) : a.count - b.count
            }
        }
    }
}
