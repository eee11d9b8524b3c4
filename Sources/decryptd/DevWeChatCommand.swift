import ArgumentParser
import DevWeChat
import Foundation
import Logging
import WeChatAPI

/// `decryptd dev-wechat`: a local stand-in for WeChat's stable-token and phone-number endpoints.
struct DevWeChatCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dev-wechat",
        abstract: "Run a local stand-in for WeChat's stable-token and code-exchange endpoints until SIGINT or SIGTERM.",
        discussion: """
            Prints its base URL alone on the first line of stdout, for scripts (give it to run as \
            --wechat-api-url). It knows the apps in WECHAT_APP_SECRETS / --app-secrets-file (their \
            secrets are checked), issues stable tokens, and honours the codes `decryptd loadgen --kind \
            code|mixed` makes: each is genuine for one appid, valid for 5 minutes and once (a second \
            exchange answers 40029), and carries the fault loadgen chose (no phone_info, a wrong \
            watermark appid, errcode 47001, or one transient answer first). The shares below inject \
            transient answers at random on top. GET /dev/stats prints its counts as JSON (codes_reused \
            counts codes exchanged twice); POST /dev/invalidate-tokens invalidates every token.
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

    func run() async throws {
        var settings = DevWeChatState.Settings(secrets: [:])
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
        try await Lifecycle.serveUntilSignalled(logger: Logger(label: "dev-wechat")) { server.stop() }
        FileHandle.standardError.write(Data("dev-wechat: stopped\n".utf8))
    }
}
