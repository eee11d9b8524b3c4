import OpenSSLDigest
public import PostgresClient

/// decryptd's tables over one PostgreSQL session: batched session-key lookup and batched,
/// idempotent outcome writes. One round trip per lookup; one transaction per outcome batch.
///
/// Not `Sendable` and blocking, like the connection it owns: drive it from one dedicated thread.
public final class DecryptdDatabase {
    public let connection: PostgresConnection

    public init(connection: PostgresConnection) {
        self.connection = connection
    }

    /// A store on a connection of its own to `url` (connected at its first statement).
    public convenience init(url: String) throws(PostgresError) {
        self.init(connection: try PostgresConnection(url: url))
    }

    // MARK: - Session keys

    /// Up to `limit` session keys per user, newest first, for every distinct user in `users`,
    /// in one round trip. Users with no key are absent from the result.
    public func sessionKeys(for users: some Sequence<UserKey>, limit: Int) throws(PostgresError) -> [UserKey: [String]] {
        let distinct = Array(Set(users))
        let keys = try sessionKeys(forDistinct: distinct, limit: limit)
        var result: [UserKey: [String]] = [:]
        for (user, userKeys) in zip(distinct, keys) where !userKeys.isEmpty { result[user] = userKeys }
        return result
    }

    /// Up to `limit` session keys per user, newest first, in one round trip: element `i` holds
    /// the keys of `users[i]` (empty when there are none). `users` must not repeat a user.
    ///
    /// The worker's form: positions instead of a dictionary, so a batch hashes each user once.
    public func sessionKeys(forDistinct users: [UserKey], limit: Int) throws(PostgresError) -> [[String]] {
        guard !users.isEmpty else { return [] }
        var keys = [[String]](repeating: [], count: users.count)
        try connection.forEachRow(
            Statements.lookupSessionKeys,
            [
                PostgresArray.text(users.lazy.map { $0.appid }),
                PostgresArray.text(users.lazy.map { $0.openid }),
                String(limit),
            ]
        ) { row throws(PostgresError) in
            guard let index = row.integer(0), keys.indices.contains(index - 1), let key = row.string(1) else {
                throw PostgresError(kind: .protocolViolation, message: "unexpected session lookup row")
            }
            keys[index - 1].append(key)
        }
        return keys
    }

    /// Stores session keys (what the login service does; used by the load generator and tests).
    /// `issuedAt` is seconds since the epoch. Keys already stored are left alone; returns how many
    /// were new.
    @discardableResult
    public func insertSessionKeys(_ entries: [(user: UserKey, sessionKey: String, issuedAt: Double)]) throws(PostgresError) -> Int {
        guard !entries.isEmpty else { return 0 }
        return try connection.execute(
            Statements.insertSessionKeys,
            [
                PostgresArray.text(entries.map(\.user.appid)),
                PostgresArray.text(entries.map(\.user.openid)),
                PostgresArray.text(entries.map(\.sessionKey)),
                PostgresArray.text(entries.map { String($0.issuedAt) }),
            ])
    }

    /// Refreshes the planner's statistics of `wechat_sessions` after a bulk load, as autovacuum
    /// would within a minute or so. Without them, lookups right after seeding are planned for
    /// an empty table. Only the table's owner can do this; for anyone else it does nothing.
    public func analyzeSessionKeys() throws(PostgresError) {
        _ = try connection.execute("ANALYZE wechat_sessions")
    }

    // MARK: - Outcomes

    /// What one outcome write changed.
    public struct WriteCounts: Sendable, Hashable {
        /// Member rows inserted or replaced (a stale or identical payload changes none).
        public var membersChanged: Int
        /// Failure rows inserted (a redelivered failure adds none).
        public var failuresRecorded: Int
        /// Failure rows newly resolved, or (for a batch with exchanges) ledger rows added, or (for a
        /// batch with parked jobs) jobs parked.
        public var failuresResolved: Int
    }

    // MARK: - Code exchanges

    /// What the ledger says of a code that was exchanged before.
    public struct ExchangedCode: Sendable, Hashable {
        /// "ok" or a failure reason.
        public var outcome: String
        public var detail: String

        public init(outcome: String, detail: String) {
            self.outcome = outcome
            self.detail = detail
        }
    }

    /// The ledger rows of the codes whose SHA-256 (hex) are `digests`, in one round trip.
    /// The key the exchange ledger files a code under: its SHA-256, in hex (SPEC: the ledger
    /// never holds a code).
    public static func ledgerKey(for code: String) -> String {
        SHA256Digest.hex(code)
    }

    public func exchangedCodes(_ digests: [String]) throws(PostgresError) -> [String: ExchangedCode] {
        guard !digests.isEmpty else { return [:] }
        var found: [String: ExchangedCode] = [:]
        try connection.forEachRow(Statements.lookupExchanges, [PostgresArray.text(digests)]) { row throws(PostgresError) in
            guard let digest = row.string(0), let outcome = row.string(1) else {
                throw PostgresError(kind: .protocolViolation, message: "unexpected exchange ledger row")
            }
            found[digest] = ExchangedCode(outcome: outcome, detail: row.string(2) ?? "")
        }
        return found
    }

    /// Deletes ledger rows older than `seconds`, at most `limit` in one statement; returns how many.
    public func deleteExchanges(olderThan seconds: Double, limit: Int) throws(PostgresError) -> Int {
        try connection.execute(Statements.deleteExpiredExchanges, [String(seconds), String(limit)])
    }

    /// Writes one batch's members, failures and resolutions atomically, in one statement.
    ///
    /// Idempotent: members follow SPEC's newest-watermark rule (an identical replay changes
    /// nothing), failures are unique on their source coordinates, resolving is a no-op twice.
    @discardableResult
    public func write(_ batch: OutcomeBatch) throws(PostgresError) -> WriteCounts {
        guard !batch.isEmpty else { return WriteCounts(membersChanged: 0, failuresRecorded: 0, failuresResolved: 0) }
        let members = batch.newestMemberPerUser
        let failures = batch.failures
        let resolved = batch.resolved
        var parameters = Statements.outcomeParameters(members: members, failures: failures)
        var statement = Statements.writeOutcomes
        precondition(
            [!resolved.isEmpty, !batch.exchanges.isEmpty, !batch.parked.isEmpty].filter { $0 }.count <= 1,
            "reprocessing exchanges no codes and parks nothing; code jobs never park")
        if !batch.parked.isEmpty {
            let parked = batch.parked
            statement = Statements.writeOutcomesParking
            parameters += [
                PostgresArray.text(parked.lazy.map { $0.source.topic }),
                PostgresArray.integers(parked.lazy.map { $0.source.partition }),
                PostgresArray.integers(parked.lazy.map { $0.source.offset }),
                PostgresArray.text(parked.lazy.map { $0.sourceTimestamp.map { String($0) } }),
                PostgresArray.text(parked.lazy.map { $0.user.appid }),
                PostgresArray.text(parked.lazy.map { $0.user.openid }),
                PostgresArray.text(parked.lazy.map { $0.reason }),
                PostgresArray.text(parked.lazy.map { $0.detail }),
                PostgresArray.text(parked.lazy.map { $0.triedIssuedAt.map { String($0) } }),
                PostgresArray.text(parked.lazy.map { $0.key.map(Hex.encode) }),
                PostgresArray.text(parked.lazy.map { Hex.encode($0.value) }),
                PostgresArray.text(parked.lazy.map { Hex.encode($0.headers) }),
                String(batch.parkTimeoutSeconds),
            ]
        } else if !batch.exchanges.isEmpty {
            let exchanges = batch.exchanges
            statement = Statements.writeOutcomesRecordingExchanges
            parameters += [
                PostgresArray.text(exchanges.lazy.map { $0.codeDigest }),
                PostgresArray.text(exchanges.lazy.map { $0.user.appid }),
                PostgresArray.text(exchanges.lazy.map { $0.user.openid }),
                PostgresArray.text(exchanges.lazy.map { $0.outcome }),
                PostgresArray.text(exchanges.lazy.map { $0.detail }),
            ]
        } else if !resolved.isEmpty {
            statement = Statements.writeOutcomesResolving
            parameters += [
                PostgresArray.text(resolved.lazy.map { $0.topic }),
                PostgresArray.integers(resolved.lazy.map { $0.partition }),
                PostgresArray.integers(resolved.lazy.map { $0.offset }),
            ]
        }
        let rows = try connection.query(statement, parameters)
        guard rows.count == 1, rows[0].count == 3, let counts = rows.first?.compactMap({ $0.flatMap { Int($0) } }), counts.count == 3 else {
            throw PostgresError(kind: .protocolViolation, message: "unexpected outcome write result")
        }
        return WriteCounts(membersChanged: counts[0], failuresRecorded: counts[1], failuresResolved: counts[2])
    }
}
