internal import CLibPQ

/// Owns one `PGresult`; frees it in `deinit`. Values are copied out (``rows()``), or lent to a
/// visitor for the duration of ``forEachRow(_:)`` only.
final class PQResult {
    let pointer: OpaquePointer

    /// Takes ownership of a result returned by libpq.
    init(_ pointer: OpaquePointer) {
        self.pointer = pointer
    }

    deinit {
        PQclear(pointer)
    }

    var status: ExecStatusType { PQresultStatus(pointer) }

    var isSuccess: Bool {
        status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK || status == PGRES_EMPTY_QUERY
    }

    var sqlState: String? {
        PQresultErrorField(pointer, CLibPQ_DIAG_SQLSTATE()).map { String(cString: $0) }
    }

    var primaryMessage: String {
        if let primary = PQresultErrorField(pointer, CLibPQ_DIAG_MESSAGE_PRIMARY()) { return String(cString: primary) }
        return String(cString: PQresultErrorMessage(pointer)).libpqMessageAsOneLine()
    }

    /// Copies every row out as text (`nil` for SQL NULL).
    func rows() -> [[String?]] {
        var rows: [[String?]] = []
        rows.reserveCapacity(Int(PQntuples(pointer)))
        forEachRow { row in rows.append((0..<row.count).map(row.string)) }
        return rows
    }

    /// Calls `body` with each row in place (nothing copied unless `body` asks for a value).
    func forEachRow<Failure: Error>(_ body: (PostgresRow) throws(Failure) -> Void) throws(Failure) {
        try withExtendedLifetime(self) { () throws(Failure) in
            for row in 0..<PQntuples(pointer) {
                try body(PostgresRow(result: pointer, row: row))
            }
        }
    }

    /// The affected-row count of an INSERT/UPDATE/DELETE, 0 when there is none.
    var affectedRows: Int {
        Int(String(cString: PQcmdTuples(pointer))) ?? 0
    }
}

extension String {
    /// libpq's messages as one line: its lines ("...failed: Connection refused", then a tabbed
    /// hint "Is the server running...?", one line per host tried) become sentences, so a log line
    /// or a start-up problem reads as text and nothing is cut off.
    func libpqMessageAsOneLine() -> String {
        var line = ""
        for part in split(whereSeparator: \.isNewline) {
            let text = part.drop(while: \.isWhitespace).reversed().drop(while: \.isWhitespace).reversed()
            guard !text.isEmpty else { continue }
            if let last = line.last {
                line += ".?!:;".contains(last) ? " " : ". "
            }
            line += String(text)
        }
        return line
    }
}

/// One row of a result, read in place: valid only inside the ``PostgresConnection/forEachRow(_:_:_:)``
/// call that handed it out.
public struct PostgresRow {
    /// The `PGresult`, owned by the ``PQResult`` that is alive for the whole visit.
    let result: OpaquePointer
    let row: Int32

    /// The number of columns.
    public var count: Int { Int(PQnfields(result)) }

    /// The column's text (`nil` for SQL NULL).
    public func string(_ column: Int) -> String? {
        guard PQgetisnull(result, row, Int32(column)) == 0 else { return nil }
        return String(cString: PQgetvalue(result, row, Int32(column)))
    }

    /// The column as a decimal integer (`nil` for SQL NULL or anything else).
    public func integer(_ column: Int) -> Int? {
        string(column).flatMap { Int($0) }
    }
}
