public import PostgresClient

/// A job to park (SPEC "Waiting for a session key"): the job's own bytes, where it came from, why
/// it waits, and the newest session key it was tried with.
public struct ParkedJobRecord: Sendable, Hashable {
    public var source: SourceCoordinates
    /// Milliseconds since the epoch, when the broker gave one.
    public var sourceTimestamp: Int64?
    public var user: UserKey
    /// The reason it failed with (one of `--park-reasons`).
    public var reason: String
    public var detail: String
    /// The `issued_at` of the newest key it was tried with, in microseconds since the epoch;
    /// `nil` when there was none. Only a key issued later can cure it.
    public var triedIssuedAt: Int64?
    public var key: [UInt8]?
    public var value: [UInt8]
    /// The job's headers, packed by the caller (the store does not read them).
    public var headers: [UInt8]

    public init(
        source: SourceCoordinates, sourceTimestamp: Int64?, user: UserKey, reason: String, detail: String, triedIssuedAt: Int64?,
        key: [UInt8]?, value: [UInt8], headers: [UInt8]
    ) {
        self.source = source
        self.sourceTimestamp = sourceTimestamp
        self.user = user
        self.reason = reason
        self.detail = detail
        self.triedIssuedAt = triedIssuedAt
        self.key = key
        self.value = value
        self.headers = headers
    }
}

/// A parked job as read back for a retry or its expiry, locked by the transaction that read it.
public struct ParkedJob: Sendable, Hashable {
    public var record: ParkedJobRecord
    /// How often it was tried (1 when it was parked).
    public var attempts: Int
    /// How long it has waited, in milliseconds, when it was read.
    public var waitedMilliseconds: Int64
}

/// How a retried or expired parked job ends, or that it keeps waiting.
public struct ParkedJobChanges: Sendable {
    /// Member rows of healed jobs (and of nothing else).
    public var members: [MemberRecord] = []
    /// Failure rows of jobs that end failed (expired, or failed a retry for a reason that does not park).
    public var failures: [FailureRecord] = []
    /// Jobs that end (healed or failed): their parked rows go, and their endings are recorded.
    public var ended: [(source: SourceCoordinates, healed: Bool)] = []
    /// Jobs that failed again with a reason that parks: they keep waiting for a newer key.
    public var stillWaiting: [(source: SourceCoordinates, reason: String, detail: String, triedIssuedAt: Int64?)] = []

    public init() {}

    public var isEmpty: Bool { members.isEmpty && failures.isEmpty && ended.isEmpty && stillWaiting.isEmpty }
}

/// Jobs waiting now, by reason: what `decryptd parked --list`, `report` and the metrics show.
public struct ParkedSummary: Sendable, Hashable {
    public struct Row: Sendable, Hashable {
        public var reason: String
        public var count: Int
        /// Seconds the oldest of them has waited.
        public var oldestSeconds: Double
    }

    public var rows: [Row]
    public var total: Int { rows.reduce(0) { $0 + $1.count } }

    public init(rows: [Row]) { self.rows = rows }
    public var oldestSeconds: Double { rows.map(\.oldestSeconds).max() ?? 0 }
}

/// Waiting jobs that ended in a window: how many healed, their waits, how many expired.
public struct ParkedEndings: Sendable, Hashable {
    public var healed: Int
    public var expired: Int
    /// Of the healed jobs' waits, in milliseconds (0 without any).
    public var medianWaitMilliseconds: Int64
    public var p99WaitMilliseconds: Int64
    /// Healed jobs by hour, oldest first.
    public var healedHourly: [Hour]

    public init(healed: Int, expired: Int, medianWaitMilliseconds: Int64, p99WaitMilliseconds: Int64, healedHourly: [Hour]) {
        self.healed = healed
        self.expired = expired
        self.medianWaitMilliseconds = medianWaitMilliseconds
        self.p99WaitMilliseconds = p99WaitMilliseconds
        self.healedHourly = healedHourly
    }

    public struct Hour: Sendable, Hashable {
        /// The hour's start, RFC 3339, UTC.
        public var hour: String
        public var count: Int
    }
}

/// What the expiry of parked jobs selects: those due, or (an operator's `parked --expire`) those
/// of a reason and an age, due or not.
public enum ParkedSelection: Sendable, Hashable {
    case due
    case matching(reason: String?, olderThanSeconds: Double)
}

extension DecryptdDatabase {
    /// The notification channel the migration's trigger on `wechat_sessions` sends to.
    public static let sessionKeyChannel = "decryptd_session_keys"

    /// Starts listening for stored session keys on this session (again after a reconnect).
    public func listenForSessionKeys() throws(PostgresError) {
        try connection.execute("LISTEN \(Self.sessionKeyChannel)")
    }

    /// Users whose session keys were stored since the last call, waiting up to `timeout` seconds
    /// for the first. `nil` among them: a notification that names nobody (an oversized user), so
    /// every user must be looked at.
    public func storedSessionKeys(waitingUpTo timeout: Double) throws(PostgresError) -> [UserKey?] {
        try connection.notifications(waitingUpTo: timeout).compactMap { notification in
            guard notification.channel == Self.sessionKeyChannel else { return nil }
            return Self.user(fromNotification: notification.payload)
        }
    }

    /// `length(appid) ':' appid openid` (the trigger's payload) as a user; `nil` for anything else.
    static func user(fromNotification payload: String) -> UserKey? {
        guard let colon = payload.firstIndex(of: ":"), let count = Int(payload[..<colon]), count >= 0 else { return nil }
        let scalars = payload.unicodeScalars[payload.index(after: colon)...]
        guard scalars.count >= count else { return nil }
        let split = scalars.index(scalars.startIndex, offsetBy: count)
        return UserKey(appid: String(scalars[..<split]), openid: String(scalars[split...]))
    }

    /// Up to `limit` session keys per user, newest first, with the newest key's `issued_at` (µs
    /// since the epoch; `nil` without keys), in one round trip; element `i` is `users[i]`'s.
    public func sessionKeysWithNewest(forDistinct users: [UserKey], limit: Int) throws(PostgresError) -> [(
        keys: [String], newest: Int64?
    )] {
        guard !users.isEmpty else { return [] }
        var found = [(keys: [String], newest: Int64?)](repeating: ([], nil), count: users.count)
        try connection.forEachRow(
            Statements.lookupSessionKeysWithIssuedAt,
            [PostgresArray.text(users.lazy.map { $0.appid }), PostgresArray.text(users.lazy.map { $0.openid }), String(limit)]
        ) { row throws(PostgresError) in
            guard let index = row.integer(0), found.indices.contains(index - 1), let key = row.string(1),
                let issued = row.string(2).flatMap({ Int64($0) })
            else {
                throw PostgresError(kind: .protocolViolation, message: "unexpected session lookup row")
            }
            if found[index - 1].keys.isEmpty { found[index - 1].newest = issued }
            found[index - 1].keys.append(key)
        }
        return found
    }

    /// Locks (FOR UPDATE SKIP LOCKED, in the caller's transaction) up to `limit` parked jobs a
    /// newer key may cure: of `users`, or of anybody when `users` is nil. Jobs another worker has
    /// locked are skipped; it handles them.
    public func lockCurable(users: [UserKey]?, limit: Int) throws(PostgresError) -> [ParkedJob] {
        if let users {
            guard !users.isEmpty else { return [] }
            return try parkedJobs(
                Statements.lockCurableOfUsers,
                [PostgresArray.text(users.lazy.map { $0.appid }), PostgresArray.text(users.lazy.map { $0.openid }), String(limit)])
        }
        return try parkedJobs(Statements.lockCurable, [String(limit)])
    }

    /// Locks (as ``lockCurable(users:limit:)``) up to `limit` parked jobs to expire.
    public func lockExpiring(_ selection: ParkedSelection, limit: Int) throws(PostgresError) -> [ParkedJob] {
        switch selection {
        case .due:
            return try parkedJobs(Statements.lockDue, [String(limit)])
        case .matching(let reason, let olderThan):
            return try parkedJobs(Statements.lockMatching, [reason, String(olderThan), String(limit)])
        }
    }

    private func parkedJobs(_ statement: PreparedStatement, _ parameters: [String?]) throws(PostgresError) -> [ParkedJob] {
        var jobs: [ParkedJob] = []
        try connection.forEachRow(statement, parameters) { row throws(PostgresError) in
            guard let topic = row.string(0), let partition = row.integer(1), let offset = row.string(2).flatMap({ Int64($0) }),
                let appid = row.string(4), let openid = row.string(5), let reason = row.string(6), let detail = row.string(7),
                let attempts = row.integer(9), let waited = row.string(10).flatMap({ Int64($0) }),
                let value = row.string(12).flatMap(Hex.decode), let headers = row.string(13).flatMap(Hex.decode)
            else {
                throw PostgresError(kind: .protocolViolation, message: "unexpected parked job row")
            }
            let record = ParkedJobRecord(
                source: SourceCoordinates(topic: topic, partition: Int32(partition), offset: offset),
                sourceTimestamp: row.string(3).flatMap { Int64($0) }, user: UserKey(appid: appid, openid: openid), reason: reason,
                detail: detail, triedIssuedAt: row.string(8).flatMap { Int64($0) }, key: row.string(11).flatMap(Hex.decode),
                value: value, headers: headers)
            jobs.append(ParkedJob(record: record, attempts: attempts, waitedMilliseconds: max(0, waited)))
        }
        return jobs
    }

    /// Writes what became of locked parked jobs, in the caller's transaction, in one statement:
    /// members and failure rows, the ended jobs' rows removed and their endings recorded, the
    /// others' reasons and tried keys updated.
    public func finishParked(_ changes: ParkedJobChanges) throws(PostgresError) {
        guard !changes.isEmpty else { return }
        let batch = OutcomeBatch(members: changes.members, failures: changes.failures)
        let members = batch.newestMemberPerUser
        let failures = batch.failures
        let ended = changes.ended
        let waiting = changes.stillWaiting
        try connection.execute(
            Statements.finishParked,
            Statements.outcomeParameters(members: members, failures: failures) + [
                PostgresArray.text(ended.lazy.map { $0.source.topic }),
                PostgresArray.integers(ended.lazy.map { $0.source.partition }),
                PostgresArray.integers(ended.lazy.map { $0.source.offset }),
                PostgresArray.text(ended.lazy.map { $0.healed ? "t" : "f" }),
                PostgresArray.text(waiting.lazy.map { $0.source.topic }),
                PostgresArray.integers(waiting.lazy.map { $0.source.partition }),
                PostgresArray.integers(waiting.lazy.map { $0.source.offset }),
                PostgresArray.text(waiting.lazy.map { $0.reason }),
                PostgresArray.text(waiting.lazy.map { $0.detail }),
                PostgresArray.text(waiting.lazy.map { $0.triedIssuedAt.map { String($0) } }),
            ])
    }

    /// Jobs waiting now, by reason (a scan of `parked_jobs`: for operators and the metrics, not
    /// for the path that notices keys).
    public func parkedSummary() throws(PostgresError) -> ParkedSummary {
        let rows = try connection.query(
            """
            SELECT reason, count(*), extract(epoch FROM now() - min(parked_at))::double precision
            FROM parked_jobs GROUP BY reason ORDER BY reason
            """)
        return ParkedSummary(
            rows: rows.map {
                ParkedSummary.Row(reason: $0[0] ?? "", count: Int($0[1] ?? "") ?? 0, oldestSeconds: max(0, Double($0[2] ?? "") ?? 0))
            })
    }

    /// Waiting jobs that ended in the last `windowSeconds`.
    public func parkedEndings(windowSeconds: Int) throws(PostgresError) -> ParkedEndings {
        let window = [String(windowSeconds)]
        let totals = try connection.query(
            """
            SELECT count(*) FILTER (WHERE healed), count(*) FILTER (WHERE NOT healed),
                   coalesce(percentile_disc(0.5) WITHIN GROUP (ORDER BY waited_ms) FILTER (WHERE healed), 0),
                   coalesce(percentile_disc(0.99) WITHIN GROUP (ORDER BY waited_ms) FILTER (WHERE healed), 0)
            FROM parked_job_endings
            WHERE ended_at >= now() - make_interval(secs => $1::double precision)
            """, window)
        let hourly = try connection.query(
            """
            SELECT to_char(date_trunc('hour', ended_at AT TIME ZONE 'UTC'), 'YYYY-MM-DD"T"HH24:00:00"Z"'), count(*)
            FROM parked_job_endings
            WHERE healed AND ended_at >= now() - make_interval(secs => $1::double precision)
            GROUP BY 1 ORDER BY 1
            """, window)
        guard let row = totals.first, row.count == 4 else {
            throw PostgresError(kind: .protocolViolation, message: "unexpected parked endings row")
        }
        return ParkedEndings(
            healed: Int(row[0] ?? "") ?? 0, expired: Int(row[1] ?? "") ?? 0, medianWaitMilliseconds: Int64(row[2] ?? "") ?? 0,
            p99WaitMilliseconds: Int64(row[3] ?? "") ?? 0,
            healedHourly: hourly.map { ParkedEndings.Hour(hour: $0[0] ?? "", count: Int($0[1] ?? "") ?? 0) })
    }
}

/// Bytes as PostgreSQL's `encode(..., 'hex')` writes them, and back.
enum Hex {
    private static let digits = Array("0123456789abcdef".utf8)

    static func encode(_ bytes: [UInt8]) -> String {
        var text = [UInt8]()
        text.reserveCapacity(bytes.count * 2)
        for byte in bytes {
            text.append(digits[Int(byte >> 4)])
            text.append(digits[Int(byte & 15)])
        }
        return String(decoding: text, as: UTF8.self)
    }

    static func decode(_ text: String) -> [UInt8]? {
        let utf8 = Array(text.utf8)
        guard utf8.count % 2 == 0 else { return nil }
        var bytes = [UInt8]()
        bytes.reserveCapacity(utf8.count / 2)
        var index = 0
        while index < utf8.count {
            guard let high = value(utf8[index]), let low = value(utf8[index + 1]) else { return nil }
            bytes.append(high << 4 | low)
            index += 2
        }
        return bytes
    }

    private static func value(_ digit: UInt8) -> UInt8? {
        switch digit {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): digit - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): digit - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): digit - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
