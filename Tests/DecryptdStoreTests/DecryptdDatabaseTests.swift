import DecryptdStore
import DecryptdTestSupport
import Testing

@testable import PostgresClient

@Suite("Session keys and outcomes", .enabled(if: TestDatabase.enabled, "needs DECRYPTD_TEST_DATABASE_URL (scripts/test.sh sets it)"))
struct DecryptdDatabaseTests {
    let alice = UserKey(appid: "wx1", openid: "alice")
    let bob = UserKey(appid: "wx1", openid: "bob")
    let carol = UserKey(appid: "wx1", openid: "carol")

    func source(_ offset: Int64, partition: Int32 = 0) -> SourceCoordinates {
        SourceCoordinates(topic: "wechat.phone.jobs", partition: partition, offset: offset)
    }

    func member(_ user: UserKey, _ phone: String, _ timestamp: Int64) -> MemberRecord {
        MemberRecord(user: user, phoneNumber: phone, purePhoneNumber: phone, countryCode: "86", watermarkTimestamp: timestamp)
    }

    func members(_ database: DecryptdDatabase) throws -> [String: (phone: String, ts: Int64, at: String)] {
        var result: [String: (String, Int64, String)] = [:]
        for row in try database.connection.query("SELECT openid, phone_number, watermark_ts, decrypted_at::text FROM members") {
            result[row[0]!] = (row[1]!, Int64(row[2]!)!, row[3]!)
        }
        return result
    }

    @Test("lookup: newest keys first, at most K per user, one round trip for the batch")
    func lookup() throws {
        let database = try TestDatabase.migrated()
        try database.insertSessionKeys([
            (alice, "a-oldest", 1_000), (alice, "a-newest", 3_000), (alice, "a-middle", 2_000),
            (bob, "b-only", 1_000),
            (UserKey(appid: "wx2", openid: "alice"), "other-app", 5_000),
        ])
        let keys = try database.sessionKeys(for: [alice, bob, carol, alice], limit: 2)
        #expect(keys[alice] == ["a-newest", "a-middle"])
        #expect(keys[bob] == ["b-only"])
        #expect(keys[carol] == nil)
        #expect(try database.sessionKeys(for: [alice], limit: 3)[alice] == ["a-newest", "a-middle", "a-oldest"])
        #expect(try database.sessionKeys(for: [], limit: 3).isEmpty)
    }

    @Test("aligned lookup: element i holds the keys of user i, empty for a user without keys")
    func alignedLookup() throws {
        let database = try TestDatabase.migrated()
        try database.insertSessionKeys([(alice, "a-old", 1_000), (alice, "a-new", 2_000), (carol, "c-only", 1_000)])
        let keys = try database.sessionKeys(forDistinct: [bob, carol, alice], limit: 3)
        #expect(keys == [[], ["c-only"], ["a-new", "a-old"]])
        #expect(try database.sessionKeys(forDistinct: [], limit: 3).isEmpty)
    }

    @Test("rows read in place: text, integers and NULL, every row once and in order")
    func rowVisitor() throws {
        let connection = try TestDatabase.isolatedConnection()
        let statement = PreparedStatement(
            name: "test_rows",
            sql: """
                SELECT i, CASE WHEN i % 2 = 0 THEN NULL ELSE 'v' || i END, '-' || i
                FROM generate_series(1, $1::int) AS i
                """, parameterCount: 1)
        var seen: [(Int?, String?, Int?)] = []
        try connection.forEachRow(statement, ["5"]) { row in
            #expect(row.count == 3)
            seen.append((row.integer(0), row.string(1), row.integer(2)))
        }
        #expect(seen.map(\.0) == [1, 2, 3, 4, 5])
        #expect(seen.map(\.1) == ["v1", nil, "v3", nil, "v5"])
        #expect(seen.map(\.2) == [-1, -2, -3, -4, -5])
        var none = 0
        try connection.forEachRow(statement, ["0"]) { _ in none += 1 }
        #expect(none == 0)
    }

    @Test("upsert: an older watermark never replaces a newer one; within a batch the newest wins")
    func upsertOrdering() throws {
        let database = try TestDatabase.migrated()
        try database.write(OutcomeBatch(members: [member(alice, "111", 100)]))
        try database.write(OutcomeBatch(members: [member(alice, "000", 50)]))
        #expect(try members(database)["alice"]?.phone == "111")

        // same batch: several jobs for one user, out of order
        try database.write(OutcomeBatch(members: [member(bob, "b10", 10), member(bob, "b30", 30), member(bob, "b20", 20)]))
        #expect(try members(database)["bob"]?.phone == "b30")

        // equal watermark with a different number replaces; identical replay changes nothing
        try database.write(OutcomeBatch(members: [member(alice, "112", 100)]))
        let before = try members(database)["alice"]!
        #expect(before.phone == "112")
        try database.write(OutcomeBatch(members: [member(alice, "112", 100)]))
        #expect(try members(database)["alice"]!.at == before.at)

        try database.write(OutcomeBatch(members: [member(alice, "113", 150)]))
        #expect(try members(database)["alice"]?.phone == "113")
        #expect(try members(database)["alice"]?.ts == 150)
    }

    @Test("failures: recorded once per source offset; resolving sets resolved_at once")
    func failures() throws {
        let database = try TestDatabase.migrated()
        let failure = FailureRecord(
            appid: "wx1", openid: "alice", reason: "bad_padding", detail: "PKCS#7 padding check failed", source: source(7))
        let malformed = FailureRecord(appid: nil, openid: nil, reason: "malformed_job", detail: "not JSON", source: source(8))
        try database.write(OutcomeBatch(failures: [failure, malformed]))
        try database.write(OutcomeBatch(failures: [failure, failure]))
        let rows = try database.connection.query(
            "SELECT source_offset, reason, appid, resolved_at FROM decrypt_failures ORDER BY source_offset")
        #expect(rows.map { $0[0] } == ["7", "8"])
        #expect(rows[1][2] == nil)
        #expect(rows.allSatisfy { $0[3] == nil })

        try database.write(OutcomeBatch(resolved: [source(7)]))
        let resolvedAt = try database.connection.query("SELECT resolved_at::text FROM decrypt_failures WHERE source_offset = 7")[0][0]
        #expect(resolvedAt != nil)
        try database.write(OutcomeBatch(resolved: [source(7)]))
        #expect(try database.connection.query("SELECT resolved_at::text FROM decrypt_failures WHERE source_offset = 7")[0][0] == resolvedAt)
    }

    @Test("the exchange ledger: written with its batch, once per code, looked up by digest, old rows deleted in small batches")
    func exchangeLedger() throws {
        let database = try TestDatabase.migrated()
        let digest = { (n: Int) in String(repeating: String(format: "%02x", n), count: 32) }
        let failure = FailureRecord(
            appid: "wx1", openid: "bob", reason: "code_invalid", detail: "errcode 40029, job age 3 s", source: source(2), jobKind: "code")
        let counts = try database.write(
            OutcomeBatch(
                members: [member(alice, "13800000001", 5)], failures: [failure],
                exchanges: [
                    CodeExchangeRecord(codeDigest: digest(1), user: alice, outcome: "ok", detail: ""),
                    CodeExchangeRecord(codeDigest: digest(2), user: bob, outcome: "code_invalid", detail: failure.detail),
                ]
            ))
        #expect(
            [counts.membersChanged, counts.failuresRecorded, counts.failuresResolved] == [1, 1, 2], "the third count is ledger rows added")
        let again = try database.write(
            OutcomeBatch(exchanges: [CodeExchangeRecord(codeDigest: digest(1), user: alice, outcome: "ok", detail: "")]))
        #expect(again.failuresResolved == 0, "a code is recorded once")
        #expect(try database.connection.query("SELECT job_kind FROM decrypt_failures")[0][0] == "code")
        let found = try database.exchangedCodes([digest(1), digest(2), digest(3)])
        #expect(found.mapValues { [$0.outcome, $0.detail] } == [digest(1): ["ok", ""], digest(2): ["code_invalid", failure.detail]])

        // A ledger row and its member commit together: a bad failure row rolls back both.
        let bad = FailureRecord(appid: "wx1", openid: "carol", reason: "no_such_reason", detail: "", source: source(3))
        #expect(throws: PostgresError.self) {
            try database.write(
                OutcomeBatch(
                    members: [member(carol, "2", 1)], failures: [bad],
                    exchanges: [CodeExchangeRecord(codeDigest: digest(4), user: carol, outcome: "ok", detail: "")]))
        }
        #expect(try database.exchangedCodes([digest(4)]).isEmpty)

        for n in 10..<15 {
            _ = try database.connection.query(
                "INSERT INTO phone_code_exchanges (code_sha256, appid, openid, outcome, exchanged_at) VALUES (decode($1, 'hex'), 'wx1', 'o', 'ok', now() - interval '8 days')",
                [digest(n)])
        }
        #expect(try database.deleteExchanges(olderThan: 7 * 86_400, limit: 2) == 2)
        #expect(try database.deleteExchanges(olderThan: 7 * 86_400, limit: 1000) == 3)
        #expect(try database.deleteExchanges(olderThan: 7 * 86_400, limit: 1000) == 0)
        #expect(try database.exchangedCodes([digest(1), digest(2)]).count == 2, "recent rows are kept")
    }

    @Test("one transaction per batch: a bad row rolls back the members written before it")
    func atomicBatch() throws {
        let database = try TestDatabase.migrated()
        let bad = FailureRecord(appid: "wx1", openid: "bob", reason: "no_such_reason", detail: "", source: source(1))
        #expect(throws: PostgresError.self) {
            try database.write(OutcomeBatch(members: [member(alice, "111", 1)], failures: [bad]))
        }
        #expect(try members(database).isEmpty)
        // the connection is still usable afterwards
        try database.write(OutcomeBatch(members: [member(alice, "111", 1)]))
        #expect(try members(database).count == 1)
    }

    @Test("values are parameters: an injection attempt in an openid is stored literally")
    func injection() throws {
        let database = try TestDatabase.migrated()
        let hostile = UserKey(appid: "wx1", openid: #"x'); DROP TABLE members; --"{}\,"NULL"#)
        try database.insertSessionKeys([(hostile, "key\"with,quotes}", 1)])
        #expect(try database.sessionKeys(for: [hostile], limit: 3)[hostile] == ["key\"with,quotes}"])
        try database.write(OutcomeBatch(members: [member(hostile, "123", 1)]))
        #expect(try database.connection.query("SELECT openid FROM members")[0][0] == hostile.openid)
        #expect(try database.connection.query("SELECT count(*) FROM members WHERE openid = $1", [hostile.openid])[0][0] == "1")
    }

    @Test("a NUL in a value is refused before sending, not truncated")
    func nulCharacter() throws {
        let database = try TestDatabase.migrated()
        let user = UserKey(appid: "wx1", openid: "alice\u{0}bob")
        #expect {
            try database.sessionKeys(for: [user], limit: 1)
        } throws: { error in
            (error as? PostgresError)?.kind == .invalidParameter && (error as? PostgresError)?.isRetriable == false
        }
        let failure = FailureRecord(appid: "wx1", openid: "bob", reason: "bad_padding", detail: "a\u{0}b", source: source(1))
        #expect {
            try database.write(OutcomeBatch(failures: [failure]))
        } throws: { error in
            (error as? PostgresError)?.kind == .invalidParameter
        }
    }

    @Test("array literals: any collection, escaped only where needed, the same text for every form")
    func arrayLiterals() throws {
        let values = ["plain", #"quo"te"#, #"back\slash"#, "", "NULL"]
        let literal = PostgresArray.text(values)
        #expect(literal == #"{"plain","quo\"te","back\\slash","","NULL"}"#)
        #expect(PostgresArray.text(values.lazy.map { $0 }) == literal)
        #expect(PostgresArray.text(values.map { Optional($0) }) == literal)
        #expect(PostgresArray.text([nil, "a"] as [String?]) == #"{NULL,"a"}"#)
        #expect(PostgresArray.text([String]()) == "{}")
        #expect(PostgresArray.integers([Int64.min, 0, 7].lazy.map { $0 }) == "{\(Int64.min),0,7}")
        let integers: [Int64] = [Int64.max, -1, 9, 10, 99, 100, 1_700_000_000_123, -1_000_000]
        #expect(PostgresArray.integers(integers) == "{" + integers.map(String.init).joined(separator: ",") + "}")
        #expect(PostgresArray.integers([Int32.min, Int32.max]) == "{\(Int32.min),\(Int32.max)}")
        let connection = try TestDatabase.isolatedConnection()
        let echoed = try connection.query("SELECT unnest($1::text[])", [literal]).map { $0[0] }
        #expect(echoed == values)
    }

    @Test("array parameters: NULL elements, empty arrays, multi-byte and quoting characters, extreme integers round-trip")
    func arrayParameters() throws {
        let database = try TestDatabase.migrated()
        let unicode = UserKey(appid: "wx1", openid: "用户-ünï-😀")
        try database.write(
            OutcomeBatch(
                members: [member(unicode, "+86 138", Int64.max)],
                failures: [
                    FailureRecord(
                        appid: nil, openid: nil, reason: "malformed_job", detail: #"détail ✓ {"a\\b",NULL}"#,
                        source: SourceCoordinates(topic: "t", partition: Int32.max, offset: Int64.max))
                ]
            ))
        #expect(
            try database.connection.query("SELECT openid, phone_number, watermark_ts FROM members") == [
                [unicode.openid, "+86 138", String(Int64.max)]
            ])
        #expect(
            try database.connection.query("SELECT appid, openid, detail, source_partition, source_offset FROM decrypt_failures")
                == [[nil, nil, #"détail ✓ {"a\\b",NULL}"#, String(Int32.max), String(Int64.max)]])
        #expect(try database.write(OutcomeBatch(members: [member(unicode, "+86 138", Int64.max)])).membersChanged == 0)
    }
}

@Suite("Connection failures", .enabled(if: TestDatabase.enabled, "needs DECRYPTD_TEST_DATABASE_URL (scripts/test.sh sets it)"))
struct ConnectionFailureTests {
    @Test("a killed backend is reported as transient, and the next call reconnects")
    func terminatedBackend() throws {
        let database = try TestDatabase.migrated()
        let victim = database.connection
        let pid = try #require(victim.backendPID)
        let killer = try TestDatabase.isolatedConnection()
        #expect(try killer.query("SELECT pg_terminate_backend($1)", [String(pid)])[0][0] == "t")

        var caught: PostgresError?
        do {
            try database.write(
                OutcomeBatch(members: [
                    MemberRecord(
                        user: UserKey(appid: "wx1", openid: "a"), phoneNumber: "1", purePhoneNumber: "1", countryCode: "86",
                        watermarkTimestamp: 1)
                ]))
        } catch {
            caught = error
        }
        let error = try #require(caught)
        #expect(error.isRetriable)
        // retry, as the worker does: reconnects (and re-prepares statements) transparently
        try database.write(
            OutcomeBatch(members: [
                MemberRecord(
                    user: UserKey(appid: "wx1", openid: "a"), phoneNumber: "1", purePhoneNumber: "1", countryCode: "86",
                    watermarkTimestamp: 1)
            ]))
        #expect(victim.backendPID != pid)
        #expect(try victim.query("SELECT count(*) FROM members")[0][0] == "1")
    }

    @Test("a server that vanishes without closing the connection is noticed: TCP keepalives and a user timeout, unless the URL sets them")
    func deadServerDetection() throws {
        let connection = try TestDatabase.isolatedConnection()
        try connection.connect()
        #expect(connection.sessionSetting("keepalives") == "1")
        #expect(connection.sessionSetting("keepalives_idle") == "10")
        #expect(connection.sessionSetting("keepalives_count") == "3")
        #expect(connection.sessionSetting("tcp_user_timeout") == "30000")

        let base = try #require(IsolatedDatabase.baseURL)
        let tuned = try PostgresConnection(url: base + (base.contains("?") ? "&" : "?") + "keepalives_idle=60")
        try tuned.connect()
        #expect(tuned.sessionSetting("keepalives_idle") == "60", "the URL wins")
        #expect(tuned.sessionSetting("tcp_user_timeout") == "30000")
    }

    @Test("an unreachable server is a transient connection error, told in one line that names every host tried")
    func unreachable() throws {
        let connection = try PostgresConnection(url: "postgresql://nobody@127.0.0.1:1,127.0.0.1:2/none")
        connection.connectTimeoutSeconds = 2
        let error = #expect(throws: PostgresError.self) { try connection.connect() }
        #expect(error?.kind == .connection && error?.isRetriable == true)
        let message = error?.message ?? ""
        #expect(!message.contains(where: { $0.isNewline || $0 == "\t" }))
        #expect(message.contains(#"port 1 failed: Connection refused. Is the server running"#))
        #expect(message.contains(#"port 2 failed"#))
    }

    @Test("libpq's multi-line messages become sentences on one line")
    func messageFolding() {
        let libpq =
            "connection to server at \"db\", port 1 failed: Connection refused\n\tIs the server running?\nsecond host failed: timeout expired\n"
        #expect(
            libpq.libpqMessageAsOneLine()
                == #"connection to server at "db", port 1 failed: Connection refused. Is the server running? second host failed: timeout expired"#
        )
        #expect("FATAL:  password authentication failed\n".libpqMessageAsOneLine() == "FATAL:  password authentication failed")
        #expect("\n\n".libpqMessageAsOneLine() == "")
    }

    @Test("an unparsable URL is a configuration error, found without connecting")
    func badURL() {
        #expect { try PostgresConnection(url: "postgresql://host:notaport/db?sslmode=bogus=") } throws: { error in
            (error as? PostgresError)?.kind == .configuration
        }
        #expect { try PostgresConnection(url: "nonsense_key=1") } throws: { error in
            (error as? PostgresError)?.kind == .configuration
        }
    }

    @Test("data-exception messages do not echo the input values")
    func redaction() throws {
        let connection = try TestDatabase.isolatedConnection()
        #expect {
            try connection.query("SELECT $1::bigint", ["13800138000-secret"])
        } throws: { error in
            guard let error = error as? PostgresError else { return false }
            return error.sqlState == "22P02" && !error.description.contains("13800138000") && error.description.contains("redacted")
        }
    }

    @Test(
        "SQLSTATE classification",
        arguments: [
            ("08006", true), ("40001", true), ("40P01", true), ("57P01", true), ("53300", true),
            ("42601", false), ("23505", false), ("22P02", false), ("23514", false),
        ])
    func classification(_ example: (String, Bool)) {
        #expect(PostgresError(kind: .server, sqlState: example.0, message: "").isRetriable == example.1)
    }
}
