public import PostgresClient

/// Failures by reason over a window, and a time series by hour: what `decryptd report` shows.
public struct FailureReport: Sendable {
    public struct Row: Sendable, Hashable {
        public var reason: String
        public var count: Int
        /// Failures later resolved by a successful reprocess.
        public var recovered: Int
        /// RFC 3339, UTC.
        public var firstSeen: String
        public var lastSeen: String
        /// Of `count`: failures of encrypted jobs and of code jobs (the rest could not be told).
        public var encrypted = 0
        public var code = 0
    }

    public struct Bucket: Sendable, Hashable {
        /// The hour's start, RFC 3339, UTC.
        public var hour: String
        public var reason: String
        public var count: Int
    }

    public var windowSeconds: Int
    /// Largest first.
    public var rows: [Row]
    /// Oldest first.
    public var hourly: [Bucket]

    public var total: Int { rows.reduce(0) { $0 + $1.count } }
    public var encrypted: Int { rows.reduce(0) { $0 + $1.encrypted } }
    public var code: Int { rows.reduce(0) { $0 + $1.code } }
    public var recovered: Int { rows.reduce(0) { $0 + $1.recovered } }
}

extension DecryptdDatabase {
    /// Reads the report for failures in the last `windowSeconds` (two queries, one snapshot each;
    /// safe to run while workers write).
    public func failureReport(windowSeconds: Int) throws(PostgresError) -> FailureReport {
        let window = [String(windowSeconds)]
        let rows = try connection.query(
            """
            SELECT reason, count(*), count(resolved_at),
                   to_char(min(failed_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                   to_char(max(failed_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                   count(*) FILTER (WHERE job_kind = 'encrypted'), count(*) FILTER (WHERE job_kind = 'code')
            FROM decrypt_failures
            WHERE failed_at >= now() - make_interval(secs => $1::double precision)
            GROUP BY reason
            ORDER BY count(*) DESC, reason
            """, window
        ).map {
            FailureReport.Row(
                reason: $0[0] ?? "", count: Int($0[1] ?? "") ?? 0, recovered: Int($0[2] ?? "") ?? 0,
                firstSeen: $0[3] ?? "", lastSeen: $0[4] ?? "", encrypted: Int($0[5] ?? "") ?? 0, code: Int($0[6] ?? "") ?? 0)
        }
        let hourly = try connection.query(
            """
            SELECT to_char(date_trunc('hour', failed_at AT TIME ZONE 'UTC'), 'YYYY-MM-DD"T"HH24:00:00"Z"'), reason, count(*)
            FROM decrypt_failures
            WHERE failed_at >= now() - make_interval(secs => $1::double precision)
            GROUP BY 1, 2
            ORDER BY 1, 2
            """, window
        ).map { FailureReport.Bucket(hour: $0[0] ?? "", reason: $0[1] ?? "", count: Int($0[2] ?? "") ?? 0) }
        return FailureReport(windowSeconds: windowSeconds, rows: rows, hourly: hourly)
    }
}
