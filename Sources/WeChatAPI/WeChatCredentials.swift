import Foundation

/// App secrets by appid (SPEC "Code jobs": `WECHAT_APP_SECRETS` as `appid:secret,...`, or a file of
/// `appid secret` lines). A secret is only ever sent to the stable-token endpoint: it is never
/// printed, logged, put in a metric or described (`description` names the appids only).
public struct WeChatCredentials: Sendable, CustomStringConvertible {
    private var secrets: [String: String]

    public init(_ secrets: [String: String] = [:]) {
        self.secrets = secrets
    }

    public func secret(for appid: String) -> String? { secrets[appid] }

    public var appids: [String] { secrets.keys.sorted() }

    public var isEmpty: Bool { secrets.isEmpty }

    public var description: String { "app secrets for \(appids.joined(separator: ", "))" }

    /// Why a list of secrets could not be read; never quotes a secret.
    public struct ParseError: Error, CustomStringConvertible {
        public var description: String
    }

    /// Parses `appid:secret,appid:secret` (blanks around entries ignored).
    public static func parse(list text: String, source: String = "WECHAT_APP_SECRETS") throws(ParseError) -> WeChatCredentials {
        var secrets: [String: String] = [:]
        for (index, entry) in text.split(separator: ",").enumerated() {
            let item = entry.trimmingCharacters(in: .whitespaces)
            if item.isEmpty { continue }
            guard let colon = item.firstIndex(of: ":") else {
                throw ParseError(description: "\(source): entry \(index + 1) is not appid:secret")
            }
            try add(
                appid: String(item[..<colon]), secret: String(item[item.index(after: colon)...]), at: "entry \(index + 1)", of: source,
                to: &secrets)
        }
        return WeChatCredentials(secrets)
    }

    /// Parses a secrets file: one `appid secret` per line (blank lines and `#` comments ignored).
    public static func parse(file text: String, source: String) throws(ParseError) -> WeChatCredentials {
        var secrets: [String: String] = [:]
        for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let item = line.trimmingCharacters(in: .whitespacesAndNewlines)
            if item.isEmpty || item.hasPrefix("#") { continue }
            let fields = item.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard fields.count == 2 else { throw ParseError(description: "\(source): line \(index + 1) is not 'appid secret'") }
            try add(appid: String(fields[0]), secret: String(fields[1]), at: "line \(index + 1)", of: source, to: &secrets)
        }
        return WeChatCredentials(secrets)
    }

    /// Reads and parses the file at `path`.
    public static func read(file path: String) throws(ParseError) -> WeChatCredentials {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw ParseError(description: "cannot read app secrets file \(path): \((error as NSError).localizedDescription)")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw ParseError(description: "app secrets file \(path) is not UTF-8 text")
        }
        return try parse(file: text, source: "app secrets file \(path)")
    }

    private static func add(appid: String, secret: String, at place: String, of source: String, to secrets: inout [String: String])
        throws(ParseError)
    {
        let appid = appid.trimmingCharacters(in: .whitespaces)
        let secret = secret.trimmingCharacters(in: .whitespaces)
        guard !appid.isEmpty, !secret.isEmpty else { throw ParseError(description: "\(source): \(place) has an empty appid or secret") }
        // The secret goes into a JSON body; the appid into metrics labels: printable ASCII only.
        guard (appid + secret).utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
            throw ParseError(description: "\(source): \(place) has a character that is not printable ASCII")
        }
        guard secrets[appid] == nil else { throw ParseError(description: "\(source): appid \(appid) is given twice") }
        secrets[appid] = secret
    }
}
