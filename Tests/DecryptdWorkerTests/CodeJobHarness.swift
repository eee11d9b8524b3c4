import DecryptdStore
import DecryptdTestSupport
import DecryptdWorker
import DevWeChat
import Foundation
import KafkaClient
import PhoneDecryption
import SyntheticLoad
import WeChatAPI

/// A dev-wechat server in this process, for code jobs: it knows ``Pipeline/appid`` (secret
/// ``secret``); ``Pipeline/unconfiguredAppid`` is served by the worker without a secret.
final class WeChatStandIn: @unchecked Sendable {
    static let secret = "dev-secret-0123456789abcdef"
    let server: DevWeChatServer
    let url: String

    init(latency: TimeInterval = 0.01, settings: (inout DevWeChatState.Settings) -> Void = { _ in }) throws {
        var state = DevWeChatState.Settings(secrets: [Pipeline.appid: Self.secret])
        settings(&state)
        var configuration = DevWeChatServer.Configuration()
        configuration.latency = latency
        server = DevWeChatServer(configuration: configuration, state: DevWeChatState(settings: state))
        url = try server.start()
    }

    var stats: DevWeChatState.Stats { server.stats }

    deinit { server.stop() }
}

extension Pipeline {
    static let unconfiguredAppid = "wx00000000unconfigured"

    /// Every reason a code job can fail for, beside ok ones, some of which meet a transient answer first.
    static let everyCodeFault: [FailureReason: Double] = [
        .malformedJob: 0.02, .appidMismatch: 0.03, .codeInvalid: 0.04, .codeExpired: 0.03,
        .invalidPhoneInfo: 0.03, .exchangeNotConfigured: 0.03, .wechatError: 0.03,
    ]

    /// The worker's settings for code jobs against `wechat`.
    func configuration(group: String, wechat: WeChatStandIn, exitAtEnd: Bool = true) -> WorkerConfiguration {
        var configuration = configuration(group: group, exitAtEnd: exitAtEnd)
        configuration.appids = [Self.appid, Self.unconfiguredAppid]
        configuration.wechatAPIURL = wechat.url
        configuration.appSecrets = WeChatCredentials([Self.appid: WeChatStandIn.secret])
        configuration.exchangeConcurrency = 32
        return configuration
    }

    /// ``binaryEnvironment`` for code jobs against `wechat`: both appids, the stand-in's URL and
    /// the secret of ``appid`` (``unconfiguredAppid`` has none).
    func binaryEnvironment(wechat: WeChatStandIn) -> [String: String] {
        var environment = binaryEnvironment
        environment["WECHAT_APPIDS"] = "\(Self.appid),\(Self.unconfiguredAppid)"
        environment["WECHAT_API_URL"] = wechat.url
        environment["WECHAT_APP_SECRETS"] = "\(Self.appid):\(WeChatStandIn.secret)"
        return environment
    }

    /// A load of `kind` jobs (the encrypted ones with ``everyFault``, the code ones with
    /// ``everyCodeFault``). With `wechat`, also stale_session_key jobs, and the stand-in learns each
    /// checked user's current key (its checksession tells stale keys apart).
    func generate(
        jobs: Int, codeShare: Double, transientShare: Double = 0.1, lateKeyShare: Double = 0, seed: UInt64 = 21,
        wechat: WeChatStandIn? = nil
    ) throws -> LoadGenerator.Expectation {
        var plan = LoadGenerator.Plan(jobs: jobs, appid: Self.appid)
        plan.lateKeyShare = lateKeyShare
        plan.faults = Self.everyFault.merging(Self.everyCodeFault) { a, _ in a }
        if wechat != nil { plan.faults[.staleSessionKey] = 0.03 }
        plan.codeShare = codeShare
        plan.transientShare = transientShare
        plan.unconfiguredAppid = Self.unconfiguredAppid
        plan.seed = seed
        let expectation = try generate(plan)
        wechat?.server.registerSessionKeys(expectation.currentKeys.map { ($0.key.appid, $0.key.openid, $0.value) })
        return expectation
    }

    /// Rows in the exchange ledger, and whether any holds `text` (a code, a number, a secret...).
    func ledger() throws -> (rows: Int, text: String) {
        let rows = try database.connection.query(
            "SELECT encode(code_sha256, 'hex'), appid, openid, outcome, detail FROM phone_code_exchanges")
        return (rows.count, rows.map { $0.compactMap { $0 }.joined(separator: " ") }.joined(separator: "\n"))
    }
}
