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
