/// The repairs lenient base64 decoding made to a field, counted in metrics.
public struct Base64Repairs: OptionSet, Sendable, Hashable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    /// ASCII spaces read as `+` (what URL-decoding did to a `+`).
    public static let spaceAsPlus = Base64Repairs(rawValue: 1 << 0)
    /// CR, LF or TAB removed.
    public static let whitespaceRemoved = Base64Repairs(rawValue: 1 << 1)
    /// URL-safe `-` and `_` read as `+` and `/`.
    public static let urlSafeAlphabet = Base64Repairs(rawValue: 1 << 2)
    /// Missing `=` padding restored.
    public static let paddingRestored = Base64Repairs(rawValue: 1 << 3)

    /// Every repair with a stable name, for metrics labels.
    public static let named: [(Base64Repairs, String)] = [
        (.spaceAsPlus, "space_as_plus"),
        (.whitespaceRemoved, "whitespace_removed"),
        (.urlSafeAlphabet, "url_safe_alphabet"),
        (.paddingRestored, "padding_restored"),
    ]
}

/// Base64 as SPEC.md reads it: repair what clients damage in transit, then decode strictly.
///
/// Repairs: space → `+`; CR/LF/TAB removed; `-`/`_` → `+`/`/`; missing `=` restored.
/// Strict after that: no other byte, `=` only at the end and at most as many as the length needs,
/// a length that is not 1 mod 4, and zero bits in the unused low bits of the last character
/// (so every accepted string has exactly one meaning).
public enum LenientBase64 {
    /// The most bytes `count` input characters can decode to.
    @inlinable
    public static func maxDecodedCount(_ count: Int) -> Int { (count + 3) / 4 * 3 }

    /// Why decoding failed: a byte outside the alphabet, or a length/padding that cannot be base64.
    public enum Failure: Error, Sendable, Hashable {
        case invalidByte(offset: Int)
        case invalidLength
        case misplacedPadding
        case nonZeroTrailingBits

        /// A short description that never quotes the input.
        public var description: String {
            switch self {
            case .invalidByte(let offset): "not base64 (bad character at offset \(offset))"
            case .invalidLength: "not base64 (impossible length)"
            case .misplacedPadding: "not base64 (misplaced '=')"
            case .nonZeroTrailingBits: "not base64 (non-canonical last character)"
            }
        }
    }

    /// Decodes `input` into `output`, which must hold `maxDecodedCount(input.count)` bytes.
    /// Returns the number of bytes written; adds what was repaired to `repairs`.
    public static func decode(
        _ input: UnsafeBufferPointer<UInt8>,
        into output: UnsafeMutableBufferPointer<UInt8>,
        repairs: inout Base64Repairs
    ) -> Result<Int, Failure> {
        precondition(output.count >= maxDecodedCount(input.count))
        guard let source = input.baseAddress, let target = output.baseAddress else { return .success(0) }
        let table = decodingTable
        let count = input.count
        var offset = 0
        var written = 0

        // Fast path: eight standard characters (six bytes) at a time, one check per step, then four.
        while offset &+ 8 <= count {
            let p = source + offset
            let a = table[Int(p[0])]
            let b = table[Int(p[1])]
            let c = table[Int(p[2])]
            let d = table[Int(p[3])]
            let e = table[Int(p[4])]
            let f = table[Int(p[5])]
            let g = table[Int(p[6])]
            let h = table[Int(p[7])]
            guard (a | b | c | d | e | f | g | h) & 0xC0 == 0 else { break }
            let high = UInt32(a) << 18 | UInt32(b) << 12 | UInt32(c) << 6 | UInt32(d)
            let low = UInt32(e) << 18 | UInt32(f) << 12 | UInt32(g) << 6 | UInt32(h)
            let q = target + written
            q[0] = UInt8(truncatingIfNeeded: high >> 16)
            q[1] = UInt8(truncatingIfNeeded: high >> 8)
            q[2] = UInt8(truncatingIfNeeded: high)
            q[3] = UInt8(truncatingIfNeeded: low >> 16)
            q[4] = UInt8(truncatingIfNeeded: low >> 8)
            q[5] = UInt8(truncatingIfNeeded: low)
            written &+= 6
            offset &+= 8
        }
        if offset &+ 4 <= count {
            let p = source + offset
            let a = table[Int(p[0])]
            let b = table[Int(p[1])]
            let c = table[Int(p[2])]
            let d = table[Int(p[3])]
            if (a | b | c | d) & 0xC0 == 0 {
                let group = UInt32(a) << 18 | UInt32(b) << 12 | UInt32(c) << 6 | UInt32(d)
                target[written] = UInt8(truncatingIfNeeded: group >> 16)
                target[written &+ 1] = UInt8(truncatingIfNeeded: group >> 8)
                target[written &+ 2] = UInt8(truncatingIfNeeded: group)
                written &+= 3
                offset &+= 4
            }
        }

        // Slow path from the first group that is not plain: one character at a time.
        var accumulator: UInt32 = 0
        var sextets = 0
        var padding = 0
        var found: UInt8 = 0
        while offset < count {
            let byte = source[offset]
            let entry = table[Int(byte)]
            let value = entry & 0x3F
            switch entry >> 6 {
            case 0, 1:  // data; the high bit pattern 01 marks a repaired character
                guard padding == 0 else { return .failure(.misplacedPadding) }
                found |= entry == value ? 0 : repairBit(for: byte)
                accumulator = accumulator << 6 | UInt32(value)
                sextets += 1
                if sextets == 4 {
                    target[written] = UInt8(truncatingIfNeeded: accumulator >> 16)
                    target[written + 1] = UInt8(truncatingIfNeeded: accumulator >> 8)
                    target[written + 2] = UInt8(truncatingIfNeeded: accumulator)
                    written += 3
                    sextets = 0
                    accumulator = 0
                }
            case 2:  // value 0: '=', value 1: CR/LF/TAB
                if value == 0 {
                    padding += 1
                } else {
                    found |= Base64Repairs.whitespaceRemoved.rawValue
                }
            default:
                return .failure(.invalidByte(offset: offset))
            }
            offset += 1
        }
        switch (sextets, padding) {
        case (0, 0):
            break
        case (2, 0...2):
            guard accumulator & 0xF == 0 else { return .failure(.nonZeroTrailingBits) }
            target[written] = UInt8(truncatingIfNeeded: accumulator >> 4)
            written += 1
            if padding != 2 { found |= Base64Repairs.paddingRestored.rawValue }
        case (3, 0...1):
            guard accumulator & 0x3 == 0 else { return .failure(.nonZeroTrailingBits) }
            target[written] = UInt8(truncatingIfNeeded: accumulator >> 10)
            target[written + 1] = UInt8(truncatingIfNeeded: accumulator >> 2)
            written += 2
            if padding != 1 { found |= Base64Repairs.paddingRestored.rawValue }
        case (1, _):
            return .failure(.invalidLength)
        default:
            return .failure(.misplacedPadding)
        }
        if found != 0 { repairs.formUnion(Base64Repairs(rawValue: found)) }
        return .success(written)
    }

    /// Canonical base64 only: the bytes when `string` decodes without any repair, else nil (what
    /// API security mode's fields and keys must be: a repaired value is not the one that was signed).
    public static func decodeStrictly(_ string: String) -> [UInt8]? {
        guard case .success(let decoded) = decode(string), decoded.repairs.isEmpty else { return nil }
        return decoded.bytes
    }

    /// Convenience for cold paths and tests: decodes a whole string.
    public static func decode(_ string: String) -> Result<(bytes: [UInt8], repairs: Base64Repairs), Failure> {
        let utf8 = Array(string.utf8)
        var output = [UInt8](repeating: 0, count: maxDecodedCount(utf8.count))
        var repairs: Base64Repairs = []
        let result = utf8.withUnsafeBufferPointer { input in
            output.withUnsafeMutableBufferPointer { decode(input, into: $0, repairs: &repairs) }
        }
        return result.map { count in (Array(output.prefix(count)), repairs) }
    }

    // MARK: - Tables

    @inline(__always)
    private static func repairBit(for byte: UInt8) -> UInt8 {
        byte == UInt8(ascii: " ") ? Base64Repairs.spaceAsPlus.rawValue : Base64Repairs.urlSafeAlphabet.rawValue
    }

    /// Per byte: `00vvvvvv` a standard character of value v; `01vvvvvv` a repaired character of value v;
    /// `10000000` '='; `10000001` CR/LF/TAB (removed); `11xxxxxx` not allowed.
    /// `nonisolated(unsafe)`: a pointer is not Sendable, but this table is written once, by the
    /// lazy initializer, and only read after it (see inside).
    nonisolated(unsafe) private static let decodingTable: UnsafePointer<UInt8> = {
        // Allocated once and never freed or written after this closure: safe to read from any thread.
        let table = UnsafeMutablePointer<UInt8>.allocate(capacity: 256)
        table.initialize(repeating: 0xFF, count: 256)
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
        for (value, byte) in alphabet.enumerated() { table[Int(byte)] = UInt8(value) }
        table[Int(UInt8(ascii: " "))] = 0x40 | 62
        table[Int(UInt8(ascii: "-"))] = 0x40 | 62
        table[Int(UInt8(ascii: "_"))] = 0x40 | 63
        table[Int(UInt8(ascii: "="))] = 0x80
        for byte in [UInt8(ascii: "\r"), UInt8(ascii: "\n"), UInt8(ascii: "\t")] { table[Int(byte)] = 0x81 }
        return UnsafePointer(table)
    }()
}
