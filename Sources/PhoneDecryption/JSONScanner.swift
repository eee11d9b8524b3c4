/// Why a document is not strict JSON (RFC 8259), with the byte offset where reading stopped.
///
/// Carries positions only, never content, so it is safe to put into failure details.
public struct JSONSyntaxError: Error, Sendable, Hashable, CustomStringConvertible {
    public enum Kind: String, Sendable, Hashable {
        case unexpectedEnd = "unexpected end"
        case unexpectedByte = "unexpected byte"
        case invalidEscape = "invalid escape"
        case controlCharacter = "control character in string"
        case invalidUTF8 = "invalid UTF-8"
        case loneSurrogate = "lone UTF-16 surrogate escape"
        case invalidNumber = "invalid number"
        case tooDeep = "nested too deep"
        case trailingData = "data after the document"
    }

    public var kind: Kind
    public var offset: Int

    public var description: String { "\(kind.rawValue) at byte \(offset)" }
}

/// A strict, allocation-free JSON reader over a byte buffer.
///
/// It validates as it goes: UTF-8 (no overlong forms, no surrogates), string escapes (including
/// `\u` surrogate pairs), control characters, the number grammar, nesting depth, and trailing data.
/// Callers walk objects with ``forEachMember(_:)`` and either read or ``skipValue()`` each value.
/// The buffer must outlive the scanner; do not let the scanner escape the closure that lent it.
public struct JSONScanner {
    public static let maximumDepth = 64

    public let bytes: UnsafeBufferPointer<UInt8>
    public internal(set) var position = 0
    private var depth = 0

    public init(_ bytes: UnsafeBufferPointer<UInt8>) {
        self.bytes = bytes
    }

    // MARK: - Structure

    @inline(__always)
    mutating func skipWhitespace() {
        // Compact documents have no whitespace: test the common case first.
        while position < bytes.count, bytes[position] <= 0x20 {
            switch bytes[position] {
            case 0x20, 0x0A, 0x0D, 0x09: position += 1
            default: return
            }
        }
    }

    @inline(__always)
    func fail(_ kind: JSONSyntaxError.Kind) -> JSONSyntaxError {
        JSONSyntaxError(kind: kind, offset: position)
    }

    /// The next non-whitespace byte, not consumed.
    @inline(__always)
    public mutating func peek() throws(JSONSyntaxError) -> UInt8 {
        skipWhitespace()
        guard position < bytes.count else { throw fail(.unexpectedEnd) }
        return bytes[position]
    }

    @inline(__always)
    mutating func consume(_ byte: UInt8) throws(JSONSyntaxError) {
        guard try peek() == byte else { throw fail(.unexpectedByte) }
        position += 1
    }

    /// Succeeds only when nothing but whitespace is left.
    public mutating func finish() throws(JSONSyntaxError) {
        skipWhitespace()
        guard position == bytes.count else { throw fail(.trailingData) }
    }

    /// Reads an object, calling `body` once per member with the key; `body` must read or skip the value.
    public mutating func forEachMember(
        _ body: (inout JSONScanner, JSONStringToken) throws(JSONSyntaxError) -> Void
    ) throws(JSONSyntaxError) {
        var none: Void = ()
        try forEachMember(into: &none) { scanner, key, _ throws(JSONSyntaxError) in try body(&scanner, key) }
    }

    /// Reads an object, calling `body` once per member with the key and `state`, so that callers
    /// collect results without capturing variables (which would cost dynamic exclusivity checks).
    public mutating func forEachMember<State>(
        into state: inout State,
        _ body: (inout JSONScanner, JSONStringToken, inout State) throws(JSONSyntaxError) -> Void
    ) throws(JSONSyntaxError) {
        try consume(UInt8(ascii: "{"))
        try enter()
        defer { depth -= 1 }
        if try peek() == UInt8(ascii: "}") {
            position += 1
            return
        }
        while true {
            guard try peek() == UInt8(ascii: "\"") else { throw fail(.unexpectedByte) }
            let key = try readString()
            try consume(UInt8(ascii: ":"))
            try body(&self, key, &state)
            switch try peek() {
            case UInt8(ascii: ","): position += 1
            case UInt8(ascii: "}"):
                position += 1
                return
            default: throw fail(.unexpectedByte)
            }
        }
    }

    /// Reads an array, calling `body` once per element; `body` must read or skip the element.
    public mutating func forEachElement(
        _ body: (inout JSONScanner) throws(JSONSyntaxError) -> Void
    ) throws(JSONSyntaxError) {
        try consume(UInt8(ascii: "["))
        try enter()
        defer { depth -= 1 }
        if try peek() == UInt8(ascii: "]") {
            position += 1
            return
        }
        while true {
            try body(&self)
            switch try peek() {
            case UInt8(ascii: ","): position += 1
            case UInt8(ascii: "]"):
                position += 1
                return
            default: throw fail(.unexpectedByte)
            }
        }
    }

    private mutating func enter() throws(JSONSyntaxError) {
        depth += 1
        guard depth <= Self.maximumDepth else { throw fail(.tooDeep) }
    }

    /// Validates and skips any value.
    public mutating func skipValue() throws(JSONSyntaxError) {
        switch try peek() {
        case UInt8(ascii: "{"): try forEachMember { scanner, _ throws(JSONSyntaxError) in try scanner.skipValue() }
        case UInt8(ascii: "["): try forEachElement { scanner throws(JSONSyntaxError) in try scanner.skipValue() }
        case UInt8(ascii: "\""): _ = try readString()
        case UInt8(ascii: "t"): try readLiteral("true")
        case UInt8(ascii: "f"): try readLiteral("false")
        case UInt8(ascii: "n"): try readLiteral("null")
        default: _ = try readNumber()
        }
    }

    /// Consumes `null` if it is next; returns whether it did.
    public mutating func readNullIfPresent() throws(JSONSyntaxError) -> Bool {
        guard try peek() == UInt8(ascii: "n") else { return false }
        try readLiteral("null")
        return true
    }

    private mutating func readLiteral(_ literal: StaticString) throws(JSONSyntaxError) {
        let count = literal.utf8CodeUnitCount
        guard bytes.count - position >= count else { throw fail(.unexpectedEnd) }
        for index in 0..<count where bytes[position + index] != literal.utf8Start[index] {
            position += index
            throw fail(.unexpectedByte)
        }
        position += count
    }

    // MARK: - Numbers

    /// Reads a number (RFC 8259 grammar) and returns the range of its text.
    public mutating func readNumber() throws(JSONSyntaxError) -> Range<Int> {
        skipWhitespace()
        let start = position
        if position < bytes.count, bytes[position] == UInt8(ascii: "-") { position += 1 }
        guard position < bytes.count else { throw fail(.unexpectedEnd) }
        switch bytes[position] {
        case UInt8(ascii: "0"):
            position += 1
        case UInt8(ascii: "1")...UInt8(ascii: "9"):
            skipDigits()
        default:
            throw fail(position == start ? .unexpectedByte : .invalidNumber)
        }
        if position < bytes.count, bytes[position] == UInt8(ascii: ".") {
            position += 1
            guard skipDigits() > 0 else { throw fail(.invalidNumber) }
        }
        if position < bytes.count, bytes[position] | 0x20 == UInt8(ascii: "e") {
            position += 1
            if position < bytes.count, bytes[position] == UInt8(ascii: "+") || bytes[position] == UInt8(ascii: "-") {
                position += 1
            }
            guard skipDigits() > 0 else { throw fail(.invalidNumber) }
        }
        return start..<position
    }

    @discardableResult
    private mutating func skipDigits() -> Int {
        let start = position
        while position < bytes.count, bytes[position] &- UInt8(ascii: "0") < 10 { position += 1 }
        return position - start
    }

    /// Reads a non-negative integer (no sign, fraction or exponent) that fits an `Int64`.
    /// Returns `nil`, with the number consumed, when the value is a valid number of another kind.
    public mutating func readNonNegativeInteger() throws(JSONSyntaxError) -> Int64? {
        let range = try readNumber()
        var value: Int64 = 0
        for index in range {
            let digit = bytes[index] &- UInt8(ascii: "0")
            guard digit < 10 else { return nil }
            let (shifted, overflow1) = value.multipliedReportingOverflow(by: 10)
            let (sum, overflow2) = shifted.addingReportingOverflow(Int64(digit))
            guard !overflow1, !overflow2 else { return nil }
            value = sum
        }
        return value
    }
}
