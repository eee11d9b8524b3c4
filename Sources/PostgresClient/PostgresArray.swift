/// PostgreSQL array literals in text form, for sending a whole column as one parameter
/// (`unnest($1::text[])`). Elements are always quoted and escaped, so no value can break out.
///
/// Any collection of values is accepted, so callers can pass a lazy projection of their records
/// (`records.lazy.map(\.name)`) instead of building an array of strings first; the functions are
/// inlinable so that such a projection is specialized where it is used, not walked through
/// protocol witnesses.
public enum PostgresArray {
    /// `{"a","b\"c",NULL}` for `text[]`.
    @inlinable
    public static func text<Values: Collection<String?>>(_ values: Values) -> String {
        var literal = Literal(estimatedCount: values.count)
        for value in values {
            if let value { literal.appendQuoted(value) } else { literal.appendNull() }
        }
        return literal.finish()
    }

    /// `{"a","b\"c"}` for `text[]`.
    @inlinable
    public static func text<Values: Collection<String>>(_ values: Values) -> String {
        var literal = Literal(estimatedCount: values.count)
        for value in values { literal.appendQuoted(value) }
        return literal.finish()
    }

    /// `{1,2,3}` for `bigint[]` / `int[]`.
    @inlinable
    public static func integers<Values: Collection>(_ values: Values) -> String where Values.Element: FixedWidthInteger & SignedInteger {
        var literal = Literal(estimatedCount: values.count)
        for value in values { literal.appendInteger(Int64(value)) }
        return literal.finish()
    }

    /// The bytes of one literal, built in place.
    @usableFromInline
    struct Literal {
        @usableFromInline
        var bytes: [UInt8] = [UInt8(ascii: "{")]

        @inlinable
        init(estimatedCount: Int) {
            bytes.reserveCapacity(2 + estimatedCount * 24)
        }

        @inlinable
        mutating func appendNull() {
            appendElement("NULL".utf8)
        }

        @inlinable
        mutating func appendElement(_ element: some Collection<UInt8>) {
            separate()
            bytes.append(contentsOf: element)
        }

        /// A comma before every element but the first.
        @inlinable
        mutating func separate() {
            if bytes.count > 1 { bytes.append(UInt8(ascii: ",")) }
        }

        /// Decimal digits, written in place (no string per number).
        @inlinable
        mutating func appendInteger(_ value: Int64) {
            separate()
            if value < 0 { bytes.append(UInt8(ascii: "-")) }
            var magnitude = value.magnitude
            var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)  // 24 bytes: room for 20 digits
            withUnsafeMutableBytes(of: &digits) { digits in
                var start = digits.count
                repeat {
                    start -= 1
                    digits[start] = UInt8(ascii: "0") + UInt8(magnitude % 10)
                    magnitude /= 10
                } while magnitude > 0
                bytes.append(contentsOf: digits[start...])
            }
        }

        /// `"value"`, with `"` and `\` escaped. Most values need no escaping: they are copied whole.
        @inlinable
        mutating func appendQuoted(_ value: String) {
            separate()
            bytes.append(UInt8(ascii: "\""))
            let copied: Void? = value.utf8.withContiguousStorageIfAvailable { appendEscaping($0) }
            if copied == nil { appendEscaping(Array(value.utf8)) }
            bytes.append(UInt8(ascii: "\""))
        }

        @inlinable
        mutating func appendEscaping(_ utf8: some Collection<UInt8>) {
            if utf8.contains(where: Self.needsEscape) {
                for byte in utf8 {
                    if Self.needsEscape(byte) { bytes.append(UInt8(ascii: "\\")) }
                    bytes.append(byte)
                }
            } else {
                bytes.append(contentsOf: utf8)
            }
        }

        @inlinable
        mutating func finish() -> String {
            bytes.append(UInt8(ascii: "}"))
            return String(decoding: bytes, as: UTF8.self)
        }

        @inlinable
        static func needsEscape(_ byte: UInt8) -> Bool {
            byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\")
        }
    }
}
