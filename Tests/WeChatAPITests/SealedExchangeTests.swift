import DecryptdTestSupport
import DevWeChat
import Foundation
import Logging
import OpenSSLRSA
import PhoneDecryption
import SyntheticLoad
import Testing
import WeChatAPISecurity

@testable import WeChatAPI

/// Code exchanges in API security mode against dev-wechat's state (in memory, no sockets): sealed
/// requests the stand-in verifies, sealed answers the exchanger verifies, and each way it can fail.
@Suite("Code exchange in API security mode")
struct SealedExchangeTests {
    static let appid = "wxA"
    /// Generating RSA keys costs ~0.1 s each: one app for the whole suite.
    static let app = DevSealedApp.generate(appid: appid)

    func transport(_ change: (inout DevWeChatState.Settings) -> Void = { _ in }) -> StateTransport {
        var settings = DevWeChatState.Settings(secrets: [Self.appid: "s"])
        settings.sealed = [Self.appid: Self.app]
        change(&settings)
        return StateTransport(DevWeChatState(settings: settings))
    }

    func exchanger(_ transport: StateTransport, keys: APISecurityKeys = app.workerKeys, logs: RecordingLogHandler? = nil)
        -> PhoneCodeExchanger
    {
        var configuration = PhoneCodeExchanger.Configuration()
        configuration.initialRetryDelay = 0.001
        configuration.maximumRetryDelay = 0.01
        return PhoneCodeExchanger(
            transport: transport, credentials: WeChatCredentials([Self.appid: "s"]), configuration: configuration,
            apiSecurity: [Self.appid: keys], logger: logs?.logger ?? Logger(label: "test"))
    }

    func code(serial: UInt64, _ faults: SyntheticCode.Faults = []) -> SyntheticCode {
        SyntheticCode(appid: Self.appid, issuedAt: Int64(Date().timeIntervalSince1970), serial: serial, faults: faults)
    }

    var now: Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    @Test("sealed exchanges with every outcome: the genuine numbers, the same failures as in plain mode")
    func mixed() async {
        let transport = transport()
        let exchanger = exchanger(transport)
        let codes = (UInt64(1)...6).map { code(serial: $0) }
        for code in codes {
            #expect(await exchanger.exchange(code: code.text, appid: Self.appid, jobTimestamp: now) == .phone(code.phone))
        }
        let cases: [(SyntheticCode.Faults, FailureReason)] = [
            (.noPhoneInfo, .invalidPhoneInfo), (.otherErrcode, .wechatError), (.wrongWatermark, .appidMismatch),
        ]
        for (index, (faults, reason)) in cases.enumerated() {
            let result = await exchanger.exchange(
                code: code(serial: 100 + UInt64(index), faults).text, appid: Self.appid, jobTimestamp: now)
            guard case .failure(let failure) = result else {
                Issue.record("\(faults): \(result)")
                continue
            }
            #expect(failure.reason == reason)
        }
        let reused = codes[0]
        guard case .failure(let failure) = await exchanger.exchange(code: reused.text, appid: Self.appid, jobTimestamp: now) else {
            Issue.record("a spent code was accepted")
            return
        }
        #expect(failure.reason == .codeInvalid)
        let stats = transport.state.withLockedValue { $0.stats }
        #expect(stats.sealedExchanges == 10 && stats.gatewayErrors.isEmpty, "every request verified at the stand-in: \(stats)")
    }

    @Test("transient answers in sealed mode are retried to the genuine number", arguments: SyntheticCode.Faults.transient.map(\.rawValue))
    func transient(fault: UInt16) async {
        let transport = transport()
        let code = code(serial: 7, SyntheticCode.Faults(rawValue: fault))
        #expect(await exchanger(transport).exchange(code: code.text, appid: Self.appid, jobTimestamp: now) == .phone(code.phone))
    }

    @Test("forged answers are refused and retried; every job still gets its genuine number, none the forger's")
    func forged() async {
        let transport = transport { $0.forgeShare = 0.5 }
        let exchanger = exchanger(transport)
        for serial in UInt64(1)...40 {
            let code = code(serial: serial)
            let result = await exchanger.exchange(code: code.text, appid: Self.appid, jobTimestamp: now)
            #expect(result == .phone(code.phone), "code \(serial)")
        }
        let stats = transport.state.withLockedValue { $0.stats }
        #expect(stats.forgedAnswers >= 5, "the stand-in forged some answers: \(stats.forgedAnswers)")
        #expect(stats.codesSpent == 40)
    }

    @Test("a wrong private key: every job wechat_error 40234, logged once with what to fix, no retry loop")
    func wrongPrivateKey() async throws {
        let transport = transport()
        let genuine = Self.app.workerKeys
        let wrong = APISecurityKeys(
            appid: Self.appid, symmetricKey: genuine.symmetricKey, symmetricKeySn: genuine.symmetricKeySn, privateKey: Self.app.forgerKey,
            privateKeySn: genuine.privateKeySn, platformCertificates: genuine.platformCertificates)
        let logs = RecordingLogHandler()
        let exchanger = exchanger(transport, keys: wrong, logs: logs)
        for serial in UInt64(1)...5 {
            let result = await exchanger.exchange(code: code(serial: serial).text, appid: Self.appid, jobTimestamp: now)
            guard case .failure(let failure) = result else {
                Issue.record("\(result)")
                continue
            }
            #expect(failure.reason == .wechatError && failure.detail.hasPrefix("errcode 40234 (API security mode)"))
        }
        #expect(transport.state.withLockedValue { $0.stats.codesSpent } == 0, "no code reached the exchange")
        let errors = logs.lines.filter { $0.contains("API security mode is misconfigured") }
        #expect(errors.count == 1, "one error log per appid and errcode: \(logs.lines)")
        #expect(errors.first?.contains("privateKey") == true)
        #expect(!logs.lines.joined().contains("BEGIN"), "no key material logged")
    }

    @Test("a clock more than 300 s off: wechat_error 40240, and the log says to check the clock")
    func skewedClock() async {
        let transport = transport { $0.clockSkew = 400 }
        let logs = RecordingLogHandler()
        let result = await exchanger(transport, logs: logs).exchange(code: code(serial: 1).text, appid: Self.appid, jobTimestamp: now)
        guard case .failure(let failure) = result else {
            Issue.record("\(result)")
            return
        }
        #expect(failure.reason == .wechatError && failure.detail.hasPrefix("errcode 40240"))
        #expect(logs.lines.contains { $0.contains("clock") })
    }

    @Test("answers signed a little off the clock (within 300 s) are used")
    func smallSkew() async {
        let transport = transport { $0.clockSkew = -250 }
        let code = code(serial: 3)
        #expect(await exchanger(transport).exchange(code: code.text, appid: Self.appid, jobTimestamp: now) == .phone(code.phone))
    }

    @Test("certificate rotation mid-run: answers verify with the deprecated certificate, logged once, every number genuine")
    func rotation() async {
        let transport = transport { $0.rotateAfter = 3 }
        let logs = RecordingLogHandler()
        let exchanger = exchanger(transport, logs: logs)
        for serial in UInt64(1)...8 {
            let code = code(serial: serial)
            #expect(await exchanger.exchange(code: code.text, appid: Self.appid, jobTimestamp: now) == .phone(code.phone))
        }
        #expect(transport.state.withLockedValue { $0.stats.certificateRotated })
        #expect(logs.lines.filter { $0.contains("rotating its platform certificate") }.count == 1, "\(logs.lines)")
    }

    @Test("an appid without keys is still called plainly beside a sealed one")
    func plainBeside() async {
        var settings = DevWeChatState.Settings(secrets: [Self.appid: "s", "wxB": "t"])
        settings.sealed = [Self.appid: Self.app]
        let transport = StateTransport(DevWeChatState(settings: settings))
        var configuration = PhoneCodeExchanger.Configuration()
        configuration.initialRetryDelay = 0.001
        let exchanger = PhoneCodeExchanger(
            transport: transport, credentials: WeChatCredentials([Self.appid: "s", "wxB": "t"]), configuration: configuration,
            apiSecurity: [Self.appid: Self.app.workerKeys], logger: Logger(label: "test"))
        let sealed = code(serial: 1)
        let plain = SyntheticCode(appid: "wxB", issuedAt: Int64(Date().timeIntervalSince1970), serial: 2, faults: [])
        #expect(await exchanger.exchange(code: sealed.text, appid: Self.appid, jobTimestamp: now) == .phone(sealed.phone))
        #expect(await exchanger.exchange(code: plain.text, appid: "wxB", jobTimestamp: now) == .phone(plain.phone))
        #expect(transport.state.withLockedValue { $0.stats.sealedExchanges } == 1)
    }
}
