import Foundation

/// The environment variables behind the options: every option reads one (named in its help), and a
/// flag wins over it. A variable set to something its option would refuse is bad configuration, the
/// same as the flag would be.
enum Environment {
    static func value(_ name: String) -> String? {
        guard let value = ProcessInfo.processInfo.environment[name], !value.isEmpty else { return nil }
        return value
    }

    /// `WECHAT_APPIDS`, comma-separated, blanks dropped.
    static var appids: [String] { list("WECHAT_APPIDS") }

    /// A comma-separated variable, entries trimmed, blanks dropped (unset: empty).
    static func list(_ name: String) -> [String] {
        (value(name) ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }
}

extension Environment {
    /// An integer variable; a value that is not one is bad configuration.
    static func integer<Integer: FixedWidthInteger>(_ name: String) throws -> Integer? {
        guard let text = value(name) else { return nil }
        guard let number = Integer(text) else { throw CommandError.usage("\(name)=\(text) is not a whole number") }
        return number
    }

    /// A number variable (seconds, shares); a value that is not one is bad configuration.
    static func number(_ name: String) throws -> Double? {
        guard let text = value(name) else { return nil }
        guard let number = Double(text), number.isFinite else { throw CommandError.usage("\(name)=\(text) is not a number") }
        return number
    }

    /// A variable holding one of `T`'s raw values.
    static func choice<T: RawRepresentable & CaseIterable>(_ name: String, of _: T.Type = T.self) throws -> T? where T.RawValue == String {
        guard let text = value(name) else { return nil }
        guard let choice = T(rawValue: text) else {
            throw CommandError.usage("\(name)=\(text) is not one of \(T.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return choice
    }

    /// A switch: 1/true/yes/on or 0/false/no/off (unset: off).
    static func flag(_ name: String) throws -> Bool {
        guard let text = value(name) else { return false }
        switch text.lowercased() {
        case "1", "true", "yes", "on": return true
        case "0", "false", "no", "off": return false
        default: throw CommandError.usage("\(name)=\(text) is not a switch: use 1 or 0")
        }
    }
}
