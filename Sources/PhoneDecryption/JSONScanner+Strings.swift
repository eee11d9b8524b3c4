/// A string token: the bytes between the quotes, still escaped, already validated.
public struct JSONStringToken: Sendable, Hashable {
    /// Offsets of the first byte after the opening quote and of the closing quote.
    public var start: Int
    public var end: Int
    /// Whether the raw bytes contain a backslash escape (so they must be decoded before use).
    public var hasEscapes: Bool
}

extension JSONScanner {
    // MARK: - Strings

    /// Reads and validates a string (UTF-8, escapes, no control characters).
    public mutating func readString() throws(JSONSyntaxError) -> JSONStringToken {
        try consume(UInt8(ascii: "\""))
        let start = position
        var hasEscapes = false
        skipPlainASCII()
        while position < bytes.count {
            let byte = bytes[position]
            switch byte {
            case UInt8(ascii: "\""):
                position += 1
                return JSONStringToken(start: start, end: position - 1, hasEscapes: hasEscapes)
            case UInt8(ascii: "\\"):
                hasEscapes = true
                try skipEscape()
            case 0..<0x20:
                throw fail(.controlCharacter)
            case 0x20..<0x80:
                position += 1
            default:
                try skipUTF8Sequence(lead: byte)
            }
            skipPlainASCII()
        }
        throw fail(.unexpectedEnd)
    }

    /// Steps over bytes that need no attention inside a string (printable ASCII other than `"` and
    /// `\`), eight at a time: the SWAR tests flag any byte below 0x20, at or above 0x80, or equal to
    /// one of the two specials.
    @inline(__always)
    private mutating func skipPlainASCII() {
        let ones: UInt64 = 0x0101_0101_0101_0101
        let highs: UInt64 = 0x8080_8080_8080_8080
        let base = UnsafeRawPointer(bytes.baseAddress!)
        while position &+ 8 <= bytes.count {
            let word = (base + position).loadUnaligned(as: UInt64.self)
            let quote = word ^ (ones &* 0x22)
            let backslash = word ^ (ones &* 0x5C)
            let special =
                ((word &- ones &* 0x20) | (quote &- ones) | (backslash &- ones))
                & ~word & highs | word & highs
            // A flagged byte may be a false positive only above a true one, so stop at the lowest.
            guard special == 0 else {
                position &+= (UInt64(littleEndian: special).trailingZeroBitCount) >> 3
                return
            }
            position &+= 8
        }
    }

    private mutating func skipEscape() throws(JSONSyntaxError) {
        guard position + 1 < bytes.count else { throw fail(.unexpectedEnd) }
        switch bytes[position + 1] {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"),
            UInt8(ascii: "f"), UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
            position += 2
        case UInt8(ascii: "u"):
            let unit = try readHex4(at: position + 2)
            position += 6
            if unit & 0xFC00 == 0xD800 {  // high surrogate: a low one must follow
                guard position + 1 < bytes.count, bytes[position] == UInt8(ascii: "\\"),
                    bytes[position + 1] == UInt8(ascii: "u"),
                    try readHex4(at: position + 2) & 0xFC00 == 0xDC00
                else { throw fail(.loneSurrogate) }
                position += 6
            } else if unit & 0xFC00 == 0xDC00 {
                throw fail(.loneSurrogate)
            }
        default:
            throw fail(.invalidEscape)
        }
    }

    private func readHex4(at offset: Int) throws(JSONSyntaxError) -> UInt16 {
        guard offset + 4 <= bytes.count else { throw JSONSyntaxError(kind: .unexpectedEnd, offset: bytes.count) }
        var value: UInt16 = 0
        for index in offset..<offset + 4 {
            let byte = bytes[index]
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default: throw JSONSyntaxError(kind: .invalidEscape, offset: index)
            }
            value = value << 4 | UInt16(digit)
        }
        return value
    }

    /// Validates one multi-byte UTF-8 sequence (Unicode 15, table 3-7) and steps over it.
    private mutating func skipUTF8Sequence(lead: UInt8) throws(JSONSyntaxError) {
        let length: Int
        var secondRange: ClosedRange<UInt8> = 0x80...0xBF
        switch lead {
        case 0xC2...0xDF: length = 2
        case 0xE0:
            length = 3
            secondRange = 0xA0...0xBF
        case 0xE1...0xEC, 0xEE...0xEF: length = 3
        case 0xED:
            length = 3
            secondRange = 0x80...0x9F
        case 0xF0:
            length = 4
            secondRange = 0x90...0xBF
        case 0xF1...0xF3: length = 4
        case 0xF4:
            length = 4
            secondRange = 0x80...0x8F
        default: throw fail(.invalidUTF8)
        }
        guard position + length <= bytes.count else { throw fail(.invalidUTF8) }
        guard secondRange.contains(bytes[position + 1]) else { throw fail(.invalidUTF8) }
        for index in position + 2..<position + length where bytes[index] & 0xC0 != 0x80 {
            throw fail(.invalidUTF8)
        }
        position += length
    }

    // MARK: - Using string tokens

    /// Whether the token's (decoded) value equals an ASCII literal.
    @inline(__always)
    public func token(_ token: JSONStringToken, equals literal: StaticString) -> Bool {
        let count = literal.utf8CodeUnitCount
        if _fastPath(!token.hasEscapes) {
            return token.end &- token.start == count && memcmpEqual(bytes.baseAddress! + token.start, literal.utf8Start, count)
        }
        return decodedBytes(token).elementsEqual(UnsafeBufferPointer(start: literal.utf8Start, count: count))
    }

    /// Whether the token's (decoded) value equals the bytes of `other`.
    public func token(_ token: JSONStringToken, equals other: UnsafeBufferPointer<UInt8>) -> Bool {
        if !token.hasEscapes {
            guard token.end - token.start == other.count else { return false }
            return other.isEmpty || memcmpEqual(bytes.baseAddress! + token.start, other.baseAddress!, other.count)
        }
        return decodedBytes(token).elementsEqual(other)
    }

    /// Whether the token's (decoded) value equals `text` byte for byte: UTF-8 bytes, not Swift's
    /// Unicode equivalence. (Its own label: a string literal would pick a `String` overload of
    /// ``token(_:equals:)`` over the `StaticString` one.)
    public func token(_ token: JSONStringToken, equalsText text: String) -> Bool {
        withBytes(text) { self.token(token, equals: $0) }
    }

    /// The token's decoded value. Valid because ``readString()`` validated it.
    public func string(_ token: JSONStringToken) -> String {
        if !token.hasEscapes {
            return String(decoding: UnsafeBufferPointer(rebasing: bytes[token.start..<token.end]), as: UTF8.self)
        }
        return String(decoding: decodedBytes(token), as: UTF8.self)
    }

    /// Whether the token's decoded value holds a byte `matches` accepts: the raw bytes are read
    /// in place when there is no escape, the decoded ones otherwise.
    func token(_ token: JSONStringToken, containsByte matches: (UInt8) -> Bool) -> Bool {
        token.hasEscapes ? decodedBytes(token).contains(where: matches) : bytes[token.start..<token.end].contains(where: matches)
    }

    /// The token's text with escapes resolved, as UTF-8.
    func decodedBytes(_ token: JSONStringToken) -> [UInt8] {
        var output: [UInt8] = []
        output.reserveCapacity(token.end - token.start)
        var index = token.start
        while index < token.end {
            let byte = bytes[index]
            guard byte == UInt8(ascii: "\\") else {
                output.append(byte)
                index += 1
                continue
            }
            let escaped = bytes[index + 1]
            index += 2
            switch escaped {
            case UInt8(ascii: "b"): output.append(0x08)
            case UInt8(ascii: "f"): output.append(0x0C)
            case UInt8(ascii: "n"): output.append(0x0A)
            case UInt8(ascii: "r"): output.append(0x0D)
            case UInt8(ascii: "t"): output.append(0x09)
            case UInt8(ascii: "u"):
                // Validated by readString: hex digits present, surrogates paired.
                var scalar = UInt32((try? readHex4(at: index)) ?? 0xFFFD)
                index += 4
                if scalar & 0xFC00 == 0xD800 {
                    let low = UInt32((try? readHex4(at: index + 2)) ?? 0xDC00)
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    index += 6
                }
                output.append(contentsOf: UTF8.encode(Unicode.Scalar(scalar) ?? "\u{FFFD}")!)
            default: output.append(escaped)  // " \ /
            }
        }
        return output
    }
}

@inline(__always)
private func memcmpEqual(_ lhs: UnsafePointer<UInt8>, _ rhs: UnsafePointer<UInt8>, _ count: Int) -> Bool {
    for index in 0..<count where lhs[index] != rhs[index] { return false }
    return true
}
