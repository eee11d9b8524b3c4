import ArgumentParser
import DevWeChat
import Foundation
import Logging
import WeChatAPI

/// `decryptd dev-wechat`: a local stand-in for WeChat's stable-token, phone-number and checksession endpoints.
struct DevWeChatCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dev-wechat",
        abstract: "Run a local stand-in for WeChat's stable-token, code-exchange and checksession endpoints until SIGINT or SIGTERM.",
        discussion: """
            Prints its base URL alone on the first line of stdout, for scripts (give it to run as \
            --wechat-api-url). It knows the apps in WECHAT_APP_SECRETS / --app-secrets-file (their \
            secrets are checked), issues stable tokens, and honours the codes `decryptd loadgen --kind \
            code|mixed` makes: each is genuine for one appid, valid for 5 minutes and once (a second \
            exchange answers 40029), and carries the fault loadgen chose (no phone_info, a wrong \
            watermark appid, errcode 47001, or one transient answer first). The shares below inject \
            transient answers at random on top. GET /dev/stats prints its counts as JSON (codes_reused \
            counts codes exchanged twice); POST /dev/invalidate-tokens invalidates every token.

            checksession (GET /wxa/checksession): it answers 0 when the signature is the HMAC-SHA256 \
            of the user's current key, 87009 when not, and 40003 for a user it was not told of; `decryptd \
            loadgen --dev-wechat-url URL` tells it (POST /dev/session-keys, {appid: {openid: key}}).

            API security mode: with --api-security PATH it makes fresh keys for each of its apps, writes \
            the key file the worker reads (run --api-security-file PATH; mode 600), and from then on \
            verifies every exchange as WeChat's gateway does (40230 a header missing, 40234 a bad \
            signature, 40235 a body that does not decrypt, 40239 an unknown key number, 40240 a timestamp \
            more than 300 s off) and seals its answers. --forge-share, --clock-skew and \
            --rotate-certificate-after (or POST /dev/rotate-certificate) put the worker's checks to work.
            """
    )

    @Option(
        name: .customLong("app-secrets-file"),
        help: ArgumentHelp(
            "A file of 'appid secret' lines: the apps it knows (also WECHAT_APP_SECRETS, appid:secret,...). Env: WECHAT_APP_SECRETS_FILE.",
            valueName: "path"))
    var appSecretsFile: String?

    @Option(parsing: .unconditional, help: "Port on 127.0.0.1 (0: any free one). Env: DECRYPTD_DEV_WECHAT_PORT. Default: 0.")
    var port: Int?

    @Option(
        name: .customLong("latency-ms"), parsing: .unconditional,
        help: "Milliseconds added to every exchange answer. Env: DECRYPTD_DEV_WECHAT_LATENCY_MS. Default: 0.")
    var latencyMilliseconds: Double?

    @Option(
        name: .customLong("busy-share"), parsing: .unconditional, help: "Share of exchanges answered errcode -1 (system busy). Default: 0.")
    var busyShare: Double = 0

    @Option(
        name: .customLong("quota-share"), parsing: .unconditional,
        help: "Share of exchanges answered errcode 45011 (frequency limit). Default: 0.")
    var quotaShare: Double = 0

    @Option(name: .customLong("server-error-share"), parsing: .unconditional, help: "Share of exchanges answered HTTP 503. Default: 0.")
    var serverErrorShare: Double = 0

    @Option(
        name: .customLong("reset-share"), parsing: .unconditional,
        help: "Share of exchanges whose connection is reset without an answer. Default: 0.")
    var resetShare: Double = 0

    @Option(name: .customLong("token-lifetime"), parsing: .unconditional, help: "Seconds a token it issues is valid. Default: 7200.")
    var tokenLifetime: Int64 = 7200

    @Option(
        name: .customLong("invalidate-tokens-every"), parsing: .unconditional,
        help: "Seconds between invalidations of every token (as another caller's force_refresh would). Default: never.")
    var invalidateTokensEvery: Double?

    @Option(
        name: .customLong("api-security"),
        help: ArgumentHelp(
            "Serve its apps in API security mode, writing their fresh keys to this file for the worker (--api-security-file). Default: off.",
            valueName: "path"))
    var apiSecurity: String?

    @Option(
        name: .customLong("forge-share"), parsing: .unconditional,
        help: "API security mode: share of exchanges answered by a forger (a key that is not WeChat's; the code is not spent). Default: 0.")
    var forgeShare: Double = 0

    @Option(
        name: .customLong("clock-skew"), parsing: .unconditional,
        help: "API security mode: seconds added to its clock (more than 300 either way: every sealed request is refused 40240). Default: 0."
    )
    var clockSkew: Int64 = 0

    @Option(
        name: .customLong("rotate-certificate-after"), parsing: .unconditional,
        help:
            "API security mode: after this many sealed exchanges, sign answers with a new platform certificate the key file does not have (the old one signs the -Deprecated headers). Default: never."
    )
    var rotateCertificateAfter: Int?

    func run() async throws {
        var settings = DevWeChatState.Settings(secrets: [:])
        guard (0...1).contains(forgeShare) else { throw CommandError.usage("--forge-share must be from 0 to 1") }
        guard abs(clockSkew) <= 86_400 else { throw CommandError.usage("--clock-skew must be -86400 to 86400 seconds") }
        if let after = rotateCertificateAfter, after < 0 { throw CommandError.usage("--rotate-certificate-after must be 0 or more") }
        if apiSecurity == nil, forgeShare > 0 || clockSkew != 0 || rotateCertificateAfter != nil {
            throw CommandError.usage("--forge-share, --clock-skew and --rotate-certificate-after need --api-security PATH")
        }
        (settings.forgeShare, settings.clockSkew, settings.rotateAfter) = (forgeShare, clockSkew, rotateCertificateAfter)
        for (name, share) in [
            ("--busy-share", busyShare), ("--quota-share", quotaShare), ("--server-error-share", serverErrorShare),
            ("--reset-share", resetShare),
        ] {
            guard (0...1).contains(share) else { throw CommandError.usage("\(name) must be from 0 to 1") }
        }
        (settings.busyShare, settings.quotaShare, settings.serverErrorShare, settings.resetShare) = (
            busyShare, quotaShare, serverErrorShare, resetShare
        )
        guard (1...86_400).contains(tokenLifetime) else { throw CommandError.usage("--token-lifetime must be 1 to 86400 seconds") }
        settings.tokenLifetime = tokenLifetime
        var configuration = DevWeChatServer.Configuration()
        configuration.port = try port ?? Environment.integer("DECRYPTD_DEV_WECHAT_PORT") ?? 0
        guard (0...65535).contains(configuration.port) else { throw CommandError.usage("--port must be 0 to 65535") }
        let latency = try latencyMilliseconds ?? Environment.number("DECRYPTD_DEV_WECHAT_LATENCY_MS") ?? 0
        guard (0...60_000).contains(latency) else { throw CommandError.usage("--latency-ms must be 0 to 60000") }
        configuration.latency = latency / 1000
        if let every = invalidateTokensEvery {
            guard every > 0, every <= 86_400 else {
                throw CommandError.usage("--invalidate-tokens-every must be more than 0 and at most 86400 seconds")
            }
            configuration.invalidateTokensEvery = every
        }
        let secrets = try WeChatOptions.secrets(file: appSecretsFile)
        guard !secrets.isEmpty else {
            throw CommandError.usage(
                "dev-wechat needs the apps it stands in for: set WECHAT_APP_SECRETS (appid:secret,...) or --app-secrets-file")
        }
        settings.secrets = Dictionary(uniqueKeysWithValues: secrets.appids.map { ($0, secrets.secret(for: $0)!) })
        if let path = apiSecurity {
            let apps = secrets.appids.map { DevSealedApp.generate(appid: $0) }
            settings.sealed = Dictionary(uniqueKeysWithValues: apps.map { ($0.appid, $0) })
            try Self.writeKeyFile(apps, to: path)
        }
        let server = DevWeChatServer(
            configuration: configuration, state: DevWeChatState(settings: settings, seed: UInt64(Date().timeIntervalSince1970)))
        let url: String
        do {
            url = try server.start()
        } catch {
            throw CommandError.failure("could not start dev-wechat", cause: error)
        }
        FileHandle.standardOutput.write(Data((url + "\n").utf8))
        FileHandle.standardError.write(
            Data(
                "dev-wechat: serving \(secrets.appids.joined(separator: ", ")) at \(url) (latency \(Int(latency)) ms); Ctrl-C stops it\n"
                    .utf8))
        if let path = apiSecurity {
            FileHandle.standardError.write(Data("dev-wechat: API security mode; the worker's keys are in \(path)\n".utf8))
        }
        try await Lifecycle.serveUntilSignalled(logger: Logger(label: "dev-wechat")) { server.stop() }
        FileHandle.standardError.write(Data("dev-wechat: stopped\n".utf8))
    }

    /// One JSON object of every app's entry, written mode 600 (it holds private keys).
    static func writeKeyFile(_ apps: [DevSealedApp], to path: String) throws {
        var merged: [String: Any] = [:]
        for app in apps {
            if let entry = try? JSONSerialization.jsonObject(with: Data(app.keyFile.utf8)) as? [String: Any] {
                merged.merge(entry) { a, _ in a }
            }
        }
        do {
            let data = try JSONSerialization.data(withJSONObject: merged, options: [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes])
            FileManager.default.createFile(atPath: path, contents: nil, attributes: [.posixPermissions: 0o600])
            try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: path)
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
            try handle.truncate(atOffset: 0)
            try handle.write(contentsOf: data)
            try handle.close()
        } catch {
            throw CommandError.usage("cannot write the API security file \(path): \((error as NSError).localizedDescription)")
        }
    }
}
