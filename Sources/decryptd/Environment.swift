import Foundation

/// Environment variables SPEC.md names; flags win over them.
enum Environment {
    static func value(_ name: String) -> String? {
        guard let value = ProcessInfo.processInfo.environment[name], !value.isEmpty else { return nil }
        return value
    }

    /// `WECHAT_APPIDS`, comma-separated, blanks dropped.
    static var appids: [String] {
        (value("WECHAT_APPIDS") ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }
}

extension Environment {
    /// An integer variable; a value that is not one is bad configuration.
    static func integer(_ name: String) throws -> Int? {
        guard let text = value(name) else { return nil }
        guard let number = Int(text) else { throw UsageError("\(name)=\(text) is not a whole number") }
        return number
    }

    static func flag(_ name: String) -> Bool {
        ["1", "true", "yes", "on"].contains(value(name)?.lowercased() ?? "")
    }
}
