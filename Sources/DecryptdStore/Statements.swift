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
