/// PostgreSQL array literals in text form, for sending a whole column as one parameter
/// (`unnest($1::text[])`). Elements are always quoted and escaped, so no value can break out.
public enum PostgresArray {
    /// `{"a","b\"c",NULL}` for `text[]`.
    public static func text(_ values: [String?]) -> String {
        var literal: [UInt8] = [UInt8(ascii: "{")]
        literal.reserveCapacity(values.reduce(2) { $0 + ($1?.utf8.count ?? 4) + 3 })
        for (index, value) in values.enumerated() {
            if index > 0 { literal.append(UInt8(ascii: ",")) }
            guard let value else {
                literal.append(contentsOf: "NULL".utf8)
                continue
            }
            literal.append(UInt8(ascii: "\""))
            for byte in value.utf8 {
                if byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") { literal.append(UInt8(ascii: "\\")) }
                literal.append(byte)
            }
            literal.append(UInt8(ascii: "\""))
        }
        literal.append(UInt8(ascii: "}"))
        return String(decoding: literal, as: UTF8.self)
    }

    /// `{1,2,3}` for `bigint[]` / `int[]`.
    public static func integers<I: BinaryInteger>(_ values: [I]) -> String {
        "{" + values.map { String($0) }.joined(separator: ",") + "}"
    }
}
