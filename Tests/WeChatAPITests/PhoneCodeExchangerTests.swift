import DevWeChat
import Foundation
import Logging
import NIOConcurrencyHelpers
import PhoneDecryption
import SyntheticLoad
import Testing

@testable import WeChatAPI

/// dev-wechat's state as a transport, in memory: no sockets.
final class StateTransport: WeChatTransport {
    let state: NIOLockedValueBox<DevWeChatState>
    let paths = NIOLockedValueBox<[String]>([])
    /// Answered instead of the state while non-empty (one each call).
    let scripted = NIOLockedValueBox<[(Int, String)?]>([])

    init(_ state: DevWeChatState) { self.state = NIOLockedValueBox(state) }

    let baseURL = "https://api.example.test"

    func send(_ request: WeChatRequest, timeout: TimeInterval) async throws -> WeChatAnswer {
        let path = request.path
        paths.withLockedValue { $0.append(path) }
        let next: (Int, String)?? = scripted.withLockedValue { $0.isEmpty ? .none : .some($0.removeFirst()) }
        if case .some(let scriptedAnswer) = next {
            guard let scriptedAnswer else { throw CancellationError() }  // nil: no answer
            return WeChatAnswer(status: scriptedAnswer.0, body: Array(scriptedAnswer.1.utf8))
        }
        let (route, query) = Self.split(path)
        let headers = Dictionary(request.headers.map { ($0.name.lowercased(), $0.value) }, uniquingKeysWith: { a, _ in a })
        let answer = state.withLockedValue {
            $0.answer(
                method: request.method, path: route, query: query, body: request.body, now: Date().timeIntervalSince1970, headers: headers,
                urlBase: baseURL)
        }
        switch answer {
        case .reset: throw CancellationError()
        case .json(let status, let text): return WeChatAnswer(status: status, body: Array(text.utf8))
        case .signed(let status, let body, let headers):
            return WeChatAnswer(status: status, headers: headers.map { ($0.key, $0.value) }, body: body)
        }
    }

    func shutdown() async {}

    static func split(_ path: String) -> (String, [String: String]) {
        let parts = path.split(separator: "?", maxSplits: 1)
        var query: [String: String] = [:]
        if parts.count == 2, let eq = parts[1].firstIndex(of: "=") {
            query[String(parts[1][..<eq])] = String(parts[1][parts[1].index(after: eq)...])
        }
        return (String(parts[0]), query)
    }
}

@Suite("Code exchange")
struct PhoneCodeExchangerTests {
    static let appid = "wxA"

    func exchanger(_ transport: StateTransport, secrets: [String: String] = [appid: "s"]) -> PhoneCodeExchanger {
        var configuration = PhoneCodeExchanger.Configuration()
        configuration.initialRetryDelay = 0.001
        configuration.maximumRetryDelay = 0.01
        return PhoneCodeExchanger(
            transport: transport, credentials: WeChatCredentials(secrets), configuration: configuration, logger: Logger(label: "test"))
    }

    func transport(tokenLifetime: Int64 = 7200) -> StateTransport {
        var settings = DevWeChatState.Settings(secrets: [Self.appid: "s"])
        settings.tokenLifetime = tokenLifetime
        return StateTransport(DevWeChatState(settings: settings))
    }

    func code(_ faults: SyntheticCode.Faults = [], issued: Int64 = Int64(Date().timeIntervalSince1970), serial: UInt64 = 1) -> SyntheticCode
    {
        SyntheticCode(appid: Self.appid, issuedAt: issued, serial: serial, faults: faults)
    }

    var now: Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    @Test("an ok code, then the same code again is code_invalid")
    func once() async {
        let transport = transport()
        let exchanger = exchanger(transport)
        let code = code()
        let first = await exchanger.exchange(code: code.text, appid: Self.appid, jobTimestamp: now)
        #expect(first == .phone(code.phone))
        let second = await exchanger.exchange(code: code.text, appid: Self.appid, jobTimestamp: now)
        guard case .failure(let failure) = second else {
            Issue.record("\(second)")
            return
        }
        #expect(failure.reason == .codeInvalid)
        #expect(failure.detail.hasPrefix("errcode 40029, job age "))
        #expect(!failure.detail.contains(code.text))
        #expect(transport.state.withLockedValue { $0.stats.codesReused } == 1)
        #expect(transport.paths.withLockedValue { $0.filter { $0 == "/cgi-bin/stable_token" }.count } == 1, "one token for both")
    }

    @Test("40029 for a job older than 5 minutes is code_expired")
    func expired() async {
        let transport = transport()
        let exchanger = exchanger(transport)
        let produced = now - 400_000
        let result = await exchanger.exchange(
            code: code(issued: produced / 1000).text, appid: Self.appid, jobTimestamp: produced)
        guard case .failure(let failure) = result else {
            Issue.record("\(result)")
            return
        }
        #expect(failure.reason == .codeExpired)
        // The age is measured when the answer came: 400 s and the call's own time.
        let age =
            failure.detail.hasPrefix("errcode 40029, job age ") && failure.detail.hasSuffix(" s")
            ? Int(failure.detail.dropFirst("errcode 40029, job age ".count).dropLast(2)) : nil
        #expect(age.map { (400...430).contains($0) } == true, "\(failure.detail)")
    }

    @Test("permanent answers: no phone_info, a wrong watermark, another errcode, no secret")
    func permanent() async {
        let transport = transport()
        let exchanger = exchanger(transport)
        func reason(_ faults: SyntheticCode.Faults, serial: UInt64, appid: String = Self.appid) async -> FailureReason? {
            let result = await exchanger.exchange(
                code: code(faults, serial: serial).text, appid: appid, jobTimestamp: now)
            if case .failure(let failure) = result { return failure.reason }
            return nil
        }
        #expect(await reason(.noPhoneInfo, serial: 1) == .invalidPhoneInfo)
        #expect(await reason(.wrongWatermark, serial: 2) == .appidMismatch)
        #expect(await reason(.otherErrcode, serial: 3) == .wechatError)
        #expect(await reason([], serial: 4, appid: "wxNoSecret") == .exchangeNotConfigured)
    }

    @Test("transient answers are retried to success", arguments: SyntheticCode.Faults.transient.map(\.rawValue))
    func transient(_ fault: UInt16) async {
        let transport = transport()
        let exchanger = exchanger(transport)
        let code = code(SyntheticCode.Faults(rawValue: fault))
        let result = await exchanger.exchange(code: code.text, appid: Self.appid, jobTimestamp: now)
        #expect(result == .phone(code.phone))
        #expect(transport.state.withLockedValue { $0.stats.exchanges } == 2)
    }

    @Test("no answer, 5xx and unreadable answers are retried; a cancellation gives up at once")
    func noAnswer() async throws {
        let transport = transport()
        let exchanger = exchanger(transport)
        let code = code()
        transport.scripted.withLockedValue {
            $0 = [(200, #"{"access_token":"tok","expires_in":7200}"#), nil, (502, "bad gateway"), (200, "<html>")]
        }
        // The scripted token is unknown to the state: the first real exchange answers 40001, the
        // token is fetched again (from the state) and the call retried.
        let result = await exchanger.exchange(code: code.text, appid: Self.appid, jobTimestamp: now)
        #expect(result == .phone(code.phone))
        transport.scripted.withLockedValue { $0 = Array(repeating: (200, #"{"errcode":-1}"#), count: 1000) }
        let spare = self.code(serial: 9).text
        let busy = Task { [now] in await exchanger.exchange(code: spare, appid: Self.appid, jobTimestamp: now) }
        try await Task.sleep(nanoseconds: 50_000_000)
        busy.cancel()
        let started = ContinuousClock.now
        #expect(await busy.value == .stopped, "cancelled while it retried")
        #expect(ContinuousClock.now - started < .seconds(1), "the backoff wait ends at the cancellation, not at its end")
    }

    @Test("a token WeChat rejects is fetched again once, not once per call")
    func tokenRenewal() async {
        let transport = transport()
        let exchanger = exchanger(transport)
        _ = await exchanger.exchange(code: code(serial: 100).text, appid: Self.appid, jobTimestamp: now)
        _ = transport.state.withLockedValue { $0.invalidateTokens() }
        let results = await withTaskGroup(of: PhoneCodeExchanger.Result.self) { group in
            for serial in 0..<50 {
                group.addTask {
                    await exchanger.exchange(
                        code: code(serial: UInt64(serial)).text, appid: Self.appid, jobTimestamp: now)
                }
            }
            return await group.reduce(into: [PhoneCodeExchanger.Result]()) { $0.append($1) }
        }
        #expect(results.allSatisfy { if case .phone = $0 { true } else { false } })
        #expect(transport.state.withLockedValue { $0.stats.tokensIssued[Self.appid] } == 2)
    }

    @Test("45011 halves the appid's calls in flight, successes bring them back")
    func pacing() async {
        let pacer = AppidPacer(maximum: 64)
        let start = Date()
        for _ in 0..<3 { #expect(await pacer.acquire("a")) }
        pacer.release("a", .rateLimited, now: start)
        #expect(pacer.limit("a") == 32)
        pacer.release("a", .rateLimited, now: start.addingTimeInterval(0.05))
        #expect(pacer.limit("a") == 32, "a burst counts once")
        pacer.release("a", .rateLimited, now: start.addingTimeInterval(0.3))
        #expect(pacer.limit("a") == 16)
        for _ in 0..<100 {
            #expect(await pacer.acquire("a"))
            pacer.release("a", .succeeded)
        }
        #expect(pacer.limit("a") == 64)
        #expect(pacer.limit("b") == 64)
    }

    @Test("calls over the limit wait for one to end")
    func waiting() async throws {
        let pacer = AppidPacer(maximum: 1)
        #expect(await pacer.acquire("a"))
        let entered = NIOLockedValueBox(false)
        let second = Task {
            let turn = await pacer.acquire("a")
            entered.withLockedValue { $0 = true }
            return turn
        }
        try await Task.sleep(nanoseconds: 50_000_000)
        #expect(!entered.withLockedValue { $0 })
        pacer.release("a", .other)
        #expect(await second.value, "its turn came")
        #expect(entered.withLockedValue { $0 })
    }

    @Test("a call cancelled while it waits for its turn stops waiting and takes no turn")
    func cancelledWhileWaiting() async throws {
        let pacer = AppidPacer(maximum: 1)
        #expect(await pacer.acquire("a"))
        let waiter = Task { await pacer.acquire("a") }
        try await Task.sleep(nanoseconds: 50_000_000)
        waiter.cancel()
        #expect(await waiter.value == false, "no turn after cancellation")
        pacer.release("a", .other)
        // The turn the cancelled call did not take is free for the next one at once.
        #expect(await pacer.acquire("a"))
        let cancelledFirst = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            return await pacer.acquire("b")
        }
        #expect(await cancelledFirst.value == false, "cancelled before it asked: no turn either")
    }
}
