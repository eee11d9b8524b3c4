import PostgresClient

/// Every statement decryptd runs against its tables. Values are always parameters; whole
/// columns travel as one array parameter and are expanded with `unnest`.
enum Statements {
    /// $1 appids, $2 openids (distinct users), $3 keys per user. Rows: (1-based user index, key),
    /// newest key first within each user. The primary key (appid, openid, issued_at) serves it.
    static let lookupSessionKeys = PreparedStatement(
        name: "decryptd_lookup_session_keys",
        sql: """
            SELECT q.i, s.session_key
            FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS q(appid, openid, i)
            CROSS JOIN LATERAL (
                SELECT w.session_key, w.issued_at
                FROM wechat_sessions w
                WHERE w.appid = q.appid AND w.openid = q.openid
                ORDER BY w.issued_at DESC
                LIMIT $3
            ) s
            ORDER BY q.i, s.issued_at DESC
            """, parameterCount: 3)

    /// One batch's whole outcome in one statement, so one round trip and one implicit transaction:
    /// either every part is written or none is.
    ///
    /// Members ($1 appids, $2 openids, $3 phone numbers, $4 pure numbers, $5 country codes,
    /// $6 watermarks): one row per user, in byte order of (appid, openid), as
    /// ``OutcomeBatch/newestMemberPerUser`` prepares them (the client does it, which is cheaper than
    /// sorting on the server: docs/performance.md). Against the table a row is replaced only by a newer or
    /// equal watermark, and an identical replay changes nothing (not even decrypted_at). Rows go in
    /// key order, so concurrent workers take row locks in one order and cannot deadlock.
    ///
    /// Failures ($7 appids, $8 openids, $9 reasons, $10 details, $11 topics, $12 partitions,
    /// $13 offsets, $14 job kinds): a redelivered job (same coordinates) is recorded once.
    ///
    /// Returns (members changed, failures recorded, failures resolved).
    static let writeOutcomes = PreparedStatement(
        name: "decryptd_write_outcomes",
        sql: """
            WITH \(upsertMembers), \(recordFailures)
            SELECT (SELECT count(*) FROM upserted), (SELECT count(*) FROM recorded), 0
            """, parameterCount: 14)

    /// ``writeOutcomes`` plus resolutions ($15 topics, $16 partitions, $17 offsets: set resolved_at
    /// once), for reprocessing. A separate statement, so that the worker's hot path never plans a
    /// join against decrypt_failures: with the statistics of a table that has just grown from
    /// empty, a cached plan for it scans every unresolved failure once per batch.
    static let writeOutcomesResolving = PreparedStatement(
        name: "decryptd_write_outcomes_resolving",
        sql: """
            WITH \(upsertMembers), \(recordFailures), resolved AS (
                UPDATE decrypt_failures f SET resolved_at = now()
                FROM unnest($15::text[], $16::integer[], $17::bigint[]) AS r(topic, part, off)
                WHERE f.source_topic = r.topic AND f.source_partition = r.part AND f.source_offset = r.off
                  AND f.resolved_at IS NULL
                RETURNING 1
            )
            SELECT (SELECT count(*) FROM upserted), (SELECT count(*) FROM recorded), (SELECT count(*) FROM resolved)
            """, parameterCount: 17)

    /// ``writeOutcomes`` plus the ledger rows of the codes exchanged for the batch ($15 SHA-256 as
    /// hex, $16 appids, $17 openids, $18 outcomes, $19 details), in the same transaction as the
    /// members and failures they produced (SPEC "Code jobs": idempotence). The third count is the
    /// ledger rows added.
    static let writeOutcomesRecordingExchanges = PreparedStatement(
        name: "decryptd_write_outcomes_exchanges",
        sql: """
            WITH \(upsertMembers), \(recordFailures), exchanged AS (
                INSERT INTO phone_code_exchanges (code_sha256, appid, openid, outcome, detail)
                SELECT decode(e.digest, 'hex'), e.appid, e.openid, e.outcome, e.detail
                FROM unnest($15::text[], $16::text[], $17::text[], $18::text[], $19::text[]) AS e(digest, appid, openid, outcome, detail)
                ON CONFLICT (code_sha256) DO NOTHING
                RETURNING 1
            )
            SELECT (SELECT count(*) FROM upserted), (SELECT count(*) FROM recorded), (SELECT count(*) FROM exchanged)
            """, parameterCount: 19)

    /// $1 code SHA-256s as hex. Rows: (digest as hex, outcome, detail) for the codes in the ledger.
    static let lookupExchanges = PreparedStatement(
        name: "decryptd_lookup_exchanges",
        sql: """
            SELECT encode(p.code_sha256, 'hex'), p.outcome, p.detail
            FROM phone_code_exchanges p
            WHERE p.code_sha256 = ANY (SELECT decode(d, 'hex') FROM unnest($1::text[]) AS d)
            """, parameterCount: 1)

    /// Deletes at most $2 ledger rows older than $1 seconds; the count is how many.
    static let deleteExpiredExchanges = PreparedStatement(
        name: "decryptd_delete_expired_exchanges",
        sql: """
            DELETE FROM phone_code_exchanges p
            USING (
                SELECT code_sha256 FROM phone_code_exchanges
                WHERE exchanged_at < now() - make_interval(secs => $1::double precision)
                LIMIT $2
            ) old
            WHERE p.code_sha256 = old.code_sha256
            """, parameterCount: 2)

    /// ``lookupSessionKeys`` with each key's `issued_at` in microseconds since the epoch (third
    /// column), for the jobs that may park: a parked job waits for a key newer than those.
    static let lookupSessionKeysWithIssuedAt = PreparedStatement(
        name: "decryptd_lookup_session_keys_issued",
        sql: """
            SELECT q.i, s.session_key, \(microseconds("s.issued_at"))
            FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS q(appid, openid, i)
            CROSS JOIN LATERAL (
                SELECT w.session_key, w.issued_at
                FROM wechat_sessions w
                WHERE w.appid = q.appid AND w.openid = q.openid
                ORDER BY w.issued_at DESC
                LIMIT $3
            ) s
            ORDER BY q.i, s.issued_at DESC
            """, parameterCount: 3)

    /// ``writeOutcomes`` plus parked jobs ($15 topics, $16 partitions, $17 offsets, $18 source
    /// timestamps, $19 appids, $20 openids, $21 reasons, $22 details, $23 tried keys' issued_at in
    /// µs, $24 keys, $25 values, $26 packed headers, the last three as hex; $27 the park timeout in
    /// seconds). A redelivered job that is parked already stays as it is, and one whose wait has
    /// ended already (healed or failed: its row is durable) is not parked again. The third count
    /// is the jobs parked.
    static let writeOutcomesParking = PreparedStatement(
        name: "decryptd_write_outcomes_parking",
        sql: """
            WITH \(upsertMembers), \(recordFailures), parked AS (
                INSERT INTO parked_jobs (source_topic, source_partition, source_offset, source_timestamp, appid, openid, reason,
                                         detail, tried_issued_at, deadline, job_key, job_value, job_headers)
                SELECT j.topic, j.part, j.off, j.ts, j.appid, j.openid, j.reason, j.detail, \(timestamp("j.tried")),
                       now() + make_interval(secs => $27::double precision), decode(j.k, 'hex'), decode(j.v, 'hex'), decode(j.h, 'hex')
                FROM unnest($15::text[], $16::integer[], $17::bigint[], $18::bigint[], $19::text[], $20::text[], $21::text[],
                            $22::text[], $23::bigint[], $24::text[], $25::text[], $26::text[])
                    AS j(topic, part, off, ts, appid, openid, reason, detail, tried, k, v, h)
                WHERE NOT EXISTS (
                    SELECT 1 FROM parked_job_endings e
                    WHERE e.source_topic = j.topic AND e.source_partition = j.part AND e.source_offset = j.off)
                ON CONFLICT (source_topic, source_partition, source_offset) DO NOTHING
                RETURNING 1
            )
            SELECT (SELECT count(*) FROM upserted), (SELECT count(*) FROM recorded), (SELECT count(*) FROM parked)
            """, parameterCount: 27)

    /// The columns a parked job is read back with (see ``DecryptdDatabase/parkedJobs``).
    private static let parkedColumns = """
        p.source_topic, p.source_partition, p.source_offset, p.source_timestamp, p.appid, p.openid, p.reason, p.detail,
        \(microseconds("p.tried_issued_at")), p.attempts,
        (extract(epoch FROM clock_timestamp() - p.parked_at) * 1000)::bigint,
        encode(p.job_key, 'hex'), encode(p.job_value, 'hex'), encode(p.job_headers, 'hex')
        """

    /// A stored key newer than every key the parked job `p` was tried with.
    private static let newerKeyStored = """
        EXISTS (SELECT 1 FROM wechat_sessions w
                WHERE w.appid = p.appid AND w.openid = p.openid
                  AND (p.tried_issued_at IS NULL OR w.issued_at > p.tried_issued_at))
        """

    /// $1 appids, $2 openids, $3 limit: parked jobs of these users that a newer key may cure,
    /// locked; those another transaction holds are skipped. The user index serves it.
    static let lockCurableOfUsers = PreparedStatement(
        name: "decryptd_lock_curable_of_users",
        sql: """
            SELECT \(parkedColumns)
            FROM parked_jobs p
            WHERE (p.appid, p.openid) IN (SELECT u.appid, u.openid FROM unnest($1::text[], $2::text[]) AS u(appid, openid))
              AND \(newerKeyStored)
            ORDER BY p.parked_at
            LIMIT $3
            FOR UPDATE OF p SKIP LOCKED
            """, parameterCount: 3)

    /// $1 limit: any parked jobs a newer key may cure, locked (after a worker started listening,
    /// for the keys stored while nobody listened).
    static let lockCurable = PreparedStatement(
        name: "decryptd_lock_curable",
        sql: """
            SELECT \(parkedColumns)
            FROM parked_jobs p
            WHERE \(newerKeyStored)
            ORDER BY p.parked_at
            LIMIT $1
            FOR UPDATE OF p SKIP LOCKED
            """, parameterCount: 1)

    /// $1 limit: parked jobs past their deadline, oldest deadline first, locked. The deadline
    /// index serves it: the cost is the due jobs', not the parked ones'.
    static let lockDue = PreparedStatement(
        name: "decryptd_lock_due",
        sql: """
            SELECT \(parkedColumns)
            FROM parked_jobs p
            WHERE p.deadline <= now()
            ORDER BY p.deadline
            LIMIT $1
            FOR UPDATE OF p SKIP LOCKED
            """, parameterCount: 1)

    /// $1 reason (NULL: any), $2 minimum age in seconds, $3 limit: what `parked --expire` ends.
    static let lockMatching = PreparedStatement(
        name: "decryptd_lock_matching",
        sql: """
            SELECT \(parkedColumns)
            FROM parked_jobs p
            WHERE ($1::text IS NULL OR p.reason = $1::text)
              AND p.parked_at <= now() - make_interval(secs => $2::double precision)
            ORDER BY p.parked_at
            LIMIT $3
            FOR UPDATE OF p SKIP LOCKED
            """, parameterCount: 3)

    /// What became of locked parked jobs: members ($1-$6) and failures ($7-$14) as in
    /// ``writeOutcomes``; ended jobs ($15 topics, $16 partitions, $17 offsets, $18 healed as t/f)
    /// removed, with their endings recorded; jobs still waiting ($19 topics, $20 partitions,
    /// $21 offsets, $22 reasons, $23 details, $24 tried keys' issued_at in µs) updated.
    static let finishParked = PreparedStatement(
        name: "decryptd_finish_parked",
        sql: """
            WITH \(upsertMembers), \(recordFailures), removed AS (
                DELETE FROM parked_jobs p
                USING unnest($15::text[], $16::integer[], $17::bigint[], $18::boolean[]) AS e(topic, part, off, healed)
                WHERE p.source_topic = e.topic AND p.source_partition = e.part AND p.source_offset = e.off
                RETURNING p.source_topic, p.source_partition, p.source_offset, p.appid, p.reason, p.parked_at, e.healed
            ), ended AS (
                INSERT INTO parked_job_endings (source_topic, source_partition, source_offset, appid, reason, healed, waited_ms)
                SELECT r.source_topic, r.source_partition, r.source_offset, r.appid, r.reason, r.healed,
                       (extract(epoch FROM clock_timestamp() - r.parked_at) * 1000)::bigint
                FROM removed r
                ON CONFLICT (source_topic, source_partition, source_offset) DO NOTHING
                RETURNING 1
            ), waiting AS (
                UPDATE parked_jobs p SET reason = w.reason, detail = w.detail, tried_issued_at = \(timestamp("w.tried")),
                                         attempts = p.attempts + 1
                FROM unnest($19::text[], $20::integer[], $21::bigint[], $22::text[], $23::text[], $24::bigint[])
                    AS w(topic, part, off, reason, detail, tried)
                WHERE p.source_topic = w.topic AND p.source_partition = w.part AND p.source_offset = w.off
                RETURNING 1
            )
            SELECT (SELECT count(*) FROM upserted), (SELECT count(*) FROM recorded), (SELECT count(*) FROM ended),
                   (SELECT count(*) FROM waiting)
            """, parameterCount: 24)

    /// A timestamp as whole microseconds since the epoch (exact: `extract` is numeric).
    private static func microseconds(_ column: String) -> String {
        "(extract(epoch FROM \(column)) * 1000000)::bigint"
    }

    /// Microseconds since the epoch as a timestamp (exact: interval arithmetic is in microseconds).
    private static func timestamp(_ microseconds: String) -> String {
        "('epoch'::timestamptz + \(microseconds) * interval '1 microsecond')"
    }

    /// The parameters of the members and failures parts ($1-$14) of the outcome statements.
    static func outcomeParameters(members: [MemberRecord], failures: [FailureRecord]) -> [String?] {
        [
            PostgresArray.text(members.lazy.map { $0.user.appid }),
            PostgresArray.text(members.lazy.map { $0.user.openid }),
            PostgresArray.text(members.lazy.map { $0.phoneNumber }),
            PostgresArray.text(members.lazy.map { $0.purePhoneNumber }),
            PostgresArray.text(members.lazy.map { $0.countryCode }),
            PostgresArray.integers(members.lazy.map { $0.watermarkTimestamp }),
            PostgresArray.text(failures.lazy.map { $0.appid }),
            PostgresArray.text(failures.lazy.map { $0.openid }),
            PostgresArray.text(failures.lazy.map { $0.reason }),
            PostgresArray.text(failures.lazy.map { $0.detail }),
            PostgresArray.text(failures.lazy.map { $0.source.topic }),
            PostgresArray.integers(failures.lazy.map { $0.source.partition }),
            PostgresArray.integers(failures.lazy.map { $0.source.offset }),
            PostgresArray.text(failures.lazy.map { $0.jobKind }),
        ]
    }

    private static let upsertMembers = """
        upserted AS (
            INSERT INTO members AS m (appid, openid, phone_number, pure_phone_number, country_code, watermark_ts, decrypted_at)
            SELECT u.appid, u.openid, u.phone, u.pure, u.country, u.ts, now()
            FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[])
                AS u(appid, openid, phone, pure, country, ts)
            ON CONFLICT (appid, openid) DO UPDATE SET
                phone_number = EXCLUDED.phone_number,
                pure_phone_number = EXCLUDED.pure_phone_number,
                country_code = EXCLUDED.country_code,
                watermark_ts = EXCLUDED.watermark_ts,
                decrypted_at = EXCLUDED.decrypted_at
            WHERE m.watermark_ts < EXCLUDED.watermark_ts
               OR (m.watermark_ts = EXCLUDED.watermark_ts
                   AND (m.phone_number, m.pure_phone_number, m.country_code)
                       IS DISTINCT FROM (EXCLUDED.phone_number, EXCLUDED.pure_phone_number, EXCLUDED.country_code))
            RETURNING 1
        )
        """

    private static let recordFailures = """
        recorded AS (
            INSERT INTO decrypt_failures (appid, openid, reason, detail, source_topic, source_partition, source_offset, job_kind)
            SELECT * FROM unnest($7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::integer[], $13::bigint[], $14::text[])
            ON CONFLICT (source_topic, source_partition, source_offset) DO NOTHING
            RETURNING 1
        )
        """

    /// $1 appids, $2 openids, $3 keys, $4 issued_at as epoch seconds.
    static let insertSessionKeys = PreparedStatement(
        name: "decryptd_insert_session_keys",
        sql: """
            INSERT INTO wechat_sessions (appid, openid, session_key, issued_at)
            SELECT u.appid, u.openid, u.session_key, to_timestamp(u.issued::double precision)
            FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS u(appid, openid, session_key, issued)
            ON CONFLICT DO NOTHING
            """, parameterCount: 4)
}
