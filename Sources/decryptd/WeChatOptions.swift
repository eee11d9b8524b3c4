import ArgumentParser
import DecryptdWorker
import Foundation
import WeChatAPI
import WeChatAPISecurity

/// The options for code jobs (SPEC "Code jobs"): where WeChat's API is, the app secrets, and how
/// exchanges are paced. App secrets are never a flag's value (they would show in `ps`): they come
/// from `WECHAT_APP_SECRETS` or a file.
struct WeChatOptions: ParsableArguments {
    @Option(
        name: .customLong("wechat-api-url"),
        help: ArgumentHelp(
            "WeChat's server API (certificates are verified for https; a plain http URL is for a local stand-in such as dev-wechat). Env: WECHAT_API_URL. Default: https://api.weixin.qq.com.",
            valueName: "url"))
    var wechatAPIURL: String?

    @Option(
        name: .customLong("app-secrets-file"),
        help: ArgumentHelp(
            "A file of 'appid secret' lines: the app secrets for code jobs (also from WECHAT_APP_SECRETS, appid:secret,...). An appid without a secret fails its code jobs with exchange_not_configured. Env: WECHAT_APP_SECRETS_FILE.",
            valueName: "path"))
    var appSecretsFile: String?

    @Option(
        name: .customLong("api-security-file"),
        help: ArgumentHelp(
            "API security mode keys by appid, JSON (SPEC): those appids' exchanges are sealed and their answers verified. Mode 600. Env: WECHAT_API_SECURITY_FILE. Default: none.",
            valueName: "path"))
    var apiSecurityFile: String?

    @Option(name: Settings.exchangeConcurrency.name, parsing: .unconditional, help: Settings.exchangeConcurrency.help)
    var exchangeConcurrency: Int?

    @Option(name: Settings.exchangeTimeout.name, parsing: .unconditional, help: Settings.exchangeTimeout.help)
    var exchangeTimeout: Double?

    @Option(
        name: .customLong("exchange-ledger-retention"),
        help: ArgumentHelp(
            "How long exchanged codes are remembered (older ledger rows are deleted): seconds, or a number with s, m, h or d. Env: DECRYPTD_EXCHANGE_LEDGER_RETENTION. Default: 7d.",
            valueName: "duration"))
    var exchangeLedgerRetention: String?

    /// The app secrets from the environment and the file (both may be given; an appid in both is an error).
    static func secrets(file: String?) throws -> WeChatCredentials {
        var merged: [String: String] = [:]
        do {
            let fromList = try WeChatCredentials.parse(list: Environment.value("WECHAT_APP_SECRETS") ?? "")
            for appid in fromList.appids { merged[appid] = fromList.secret(for: appid) }
            if let path = file ?? Environment.value("WECHAT_APP_SECRETS_FILE") {
                let fromFile = try WeChatCredentials.read(file: path)
                for appid in fromFile.appids {
                    guard merged[appid] == nil else {
                        throw CommandError.usage("appid \(appid) has a secret both in WECHAT_APP_SECRETS and in \(path)")
                    }
                    merged[appid] = fromFile.secret(for: appid)
                }
            }
        } catch let error as WeChatCredentials.ParseError {
            throw CommandError.usage(error.description)
        }
        return WeChatCredentials(merged)
    }

    /// Sets these options in `configuration`; a bad value is named in `problems`.
    func apply(to configuration: inout WorkerConfiguration, problems: inout [String]) throws {
        configuration.appSecrets = try Self.secrets(file: appSecretsFile)
        let url = wechatAPIURL ?? Environment.value("WECHAT_API_URL") ?? configuration.wechatAPIURL
        do {
            configuration.wechatAPIURL = try HTTPClientTransport.validate(baseURL: url)
        } catch {
            problems.append(error.description)
        }
        if let path = apiSecurityFile ?? Environment.value("WECHAT_API_SECURITY_FILE") {
            do {
                let loaded = try APISecurityFile.load(path: path)
                configuration.apiSecurity = loaded.keys
                configuration.apiSecurityWarning = loaded.warning
            } catch {
                problems.append(error.description)
            }
        }
        configuration.exchangeConcurrency = try Settings.exchangeConcurrency.resolved(exchangeConcurrency, problems: &problems)
        configuration.exchangeTimeout = try Settings.exchangeTimeout.resolved(exchangeTimeout, problems: &problems)
        if let text = exchangeLedgerRetention ?? Environment.value("DECRYPTD_EXCHANGE_LEDGER_RETENTION") {
            if let seconds = Self.duration(text), seconds >= 600, seconds <= 366 * 86_400 {
                configuration.exchangeLedgerRetention = seconds
            } else {
                problems.append("--exchange-ledger-retention \(text) must be a duration from 10m to 366d (e.g. 7d, 12h, 3600)")
            }
        }
    }

    /// Seconds in `text`: a number, or a number followed by s, m, h or d.
    static func duration(_ text: String) -> Double? {
        let units: [Character: Double] = ["s": 1, "m": 60, "h": 3600, "d": 86_400]
        var number = text.trimmingCharacters(in: .whitespaces)
        var unit = 1.0
        if let last = number.last, let factor = units[last] {
            unit = factor
            number.removeLast()
        }
        guard let value = Double(number), value.isFinite, value >= 0 else { return nil }
        return value * unit
    }
}
