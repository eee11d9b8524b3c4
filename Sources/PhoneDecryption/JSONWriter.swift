/// Builds compact JSON text; used for output lines, dead-letter values and reports.
public struct JSONWriter: Sendable {
    public private(set) var text = ""
    private var needsComma = [false]

    public init() {}

    public mutating func beginObject() {
        valuePrefix()
        text += "{"
        needsComma.append(false)
    }
    public mutating func endObject() {
        needsComma.removeLast()
        text += "}"
    }
    public mutating func beginArray() {
        valuePrefix()
        text += "["
        needsComma.append(false)
    }
    public mutating func endArray() {
        needsComma.removeLast()
        text += "]"
    }

    public mutating func key(_ name: String) {
        valuePrefix()
        Self.appendQuoted(name, to: &text)
        text += ":"
        needsComma[needsComma.count - 1] = false
    }

    public mutating func string(_ value: String) {
        valuePrefix()
        Self.appendQuoted(value, to: &text)
    }
    public mutating func integer<I: BinaryInteger>(_ value: I) {
        valuePrefix()
        text += String(value)
    }
    public mutating func bool(_ value: Bool) {
        valuePrefix()
        text += value ? "true" : "false"
    }
    public mutating func null() {
        valuePrefix()
        text += "null"
    }
    public mutating func double(_ value: Double) {
        valuePrefix()
        text += value.isFinite ? String(value) : "null"
    }

    public mutating func field(_ name: String, _ value: String) {
        key(name)
        string(value)
    }
    public mutating func field<I: BinaryInteger>(_ name: String, _ value: I) {
        key(name)
        integer(value)
    }
    public mutating func field(_ name: String, _ value: Bool) {
        key(name)
        bool(value)
    }
    public mutating func field(_ name: String, _ value: Double) {
        key(name)
        double(value)
    }

    private mutating func valuePrefix() {
        if needsComma[needsComma.count - 1] { text += "," }
        needsComma[needsComma.count - 1] = true
    }

    /// Appends `value` as a JSON string literal (RFC 8259 escapes; non-ASCII kept as UTF-8).
    public static func appendQuoted(_ value: String, to text: inout String) {
        text += "\""
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\"": text += "\\\""
            case "\\": text += "\\\\"
            case "\n": text += "\\n"
            case "\r": text += "\\r"
            case "\t": text += "\\t"
            case "\u{00}"..."\u{1F}", "\u{7F}":
                let hex = String(scalar.value, radix: 16)
                text += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: text.unicodeScalars.append(scalar)
            }
        }
        text += "\""
    }
}
