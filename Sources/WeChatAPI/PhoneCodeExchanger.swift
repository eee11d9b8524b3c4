public import Foundation
import Locks
import LogKeys
public import Logging
import OpenSSLDigest
public import PhoneDecryption
import Retries
public import WeChatAPISecurity

/// Exchanges phone-number codes with WeChat (`phonenumber.getPhoneNumber`), as SPEC's "Code jobs"
/// says: access tokens from the stable-token endpoint, cached per appid; transient answers (no
/// answer, a timeout, HTTP 5xx, errcode -1, 45009/45011, a token error that persists) retried with
/// capped, jittered backoff until they pass or the worker stops, never turned into failures; a token
/// WeChat rejects fetched again and the call retried at once; every other answer a result.
public final class PhoneCodeExchanger: Sendable {
    public struct Configuration: Sendable {
        /// Each call's limit. Default: 5 s.
        public var timeout: TimeInterval = 5
        /// Retry delays double from this. Default: 0.1 s.
        public var initialRetryDelay: TimeInterval = 0.1
        /// Longest pause between retries. Default: 5 s.
        public var maximumRetryDelay: TimeInterval = 5
        /// Calls in flight per appid at most (the pacing starts from here). Default: 64.
        public var concurrency = 64

        public init() {}

        /// The retries' delays: the one ``RetryPolicy`` every transient error in decryptd waits by.
        var retryPolicy: RetryPolicy { RetryPolicy(initialDelay: initialRetryDelay, maximumDelay: maximumRetryDelay) }
    }

    /// How an exchange ended.
    public enum Result: Sendable, Hashable {
        case phone(PhonePayload)
        case failure(DecryptFailure)
        /// Given up because its task was cancelled (the worker stops): the job stays unfinished
        /// (not committed).
        case stopped
    }

    public let configuration: Configuration
    private let transport: any WeChatTransport
    private let credentials: WeChatCredentials
    public let tokens: AccessTokenCache
    private let pacer: AppidPacer
    private let metrics: ExchangeMetrics
    private let logger: Logger
    private let trouble: TroubleLog
    /// Appids in API security mode, and how their calls are sealed.
    private let sealed: [String: SealedCall]
    /// (appid, errcode) pairs and rotated certificates already logged: each is logged once.
    private let loggedOnce = Mutex<Set<String>>([])

    /// `apiSecurity`: the keys of the appids in API security mode (their exchanges are sealed).
    public init(
        transport: any WeChatTransport, credentials: WeChatCredentials, configuration: Configuration = Configuration(),
        metrics: ExchangeMetrics = ExchangeMetrics(), apiSecurity: [String: APISecurityKeys] = [:], logger: Logger
    ) {
        self.transport = transport
        sealed = apiSecurity.mapValues { SealedCall(keys: $0) }
        self.credentials = credentials
        self.configuration = configuration
        self.metrics = metrics
        self.logger = logger
        // Shared by every exchange under way: a success between two failures is no recovery yet.
        trouble = TroubleLog("code exchanges", logger: logger, calm: 5)
        pacer = AppidPacer(maximum: configuration.concurrency)
        let timeout = configuration.timeout
        tokens = AccessTokenCache { [transport, credentials, metrics, logger] appid in
            try await Self.fetchToken(
                appid: appid, secret: credentials.secret(for: appid) ?? "", transport: transport, timeout: timeout, metrics: metrics,
                logger: logger)
        }
    }

    public func hasSecret(for appid: String) -> Bool { credentials.secret(for: appid) != nil }

    /// Closes the HTTP connections, waiting (call from a thread of its own, once no exchange is
    /// under way).
    public func close() { transport.close() }

    /// The errcodes that mean the access token is invalid or expired.
    static let tokenErrcodes: Set<Int64> = [40001, 40014, 42001]
    /// Quota and frequency limits: the appid slows down.
    static let rateErrcodes: Set<Int64> = [45009, 45011]
    /// A wrong or spent code.
    static let invalidCode: Int64 = 40029

    /// Exchanges `code` for a job of `appid` produced at `jobTimestamp` (ms since the epoch; nil when
    /// the broker gave none). Retries transient answers until it has a result, or until its task is
    /// cancelled (then `.stopped`, at once: a wait for the appid's pace or for a retry ends then).
    public func exchange(code: String, appid: String, jobTimestamp: Int64?) async -> Result {
        guard hasSecret(for: appid) else {
            metrics.exchange(FailureReason.exchangeNotConfigured.rawValue)
            return .failure(DecryptFailure(.exchangeNotConfigured, "no app secret is configured for appid \(appid)"))
        }
        var retries = 0
        var rejectedToken: String?
        while true {
            if Task.isCancelled { return .stopped }
            guard let attempt = await attemptOnce(code: code, appid: appid, jobTimestamp: jobTimestamp) else { return .stopped }
            switch attempt {
            case .done(let result):
                trouble.succeeded()
                return result
            case .tokenRejected(let token):
                tokens.invalidate(token, for: appid)
                // A token rejected for the first time is fetched again and the call retried at once;
                // the same token rejected twice is a token error that persists: backoff.
                if rejectedToken != token {
                    rejectedToken = token
                    continue
                }
                trouble.failed("WeChat keeps rejecting the access token of appid \(appid) (errcode 40001/40014/42001)")
            case .rateLimited(let errcode):
                trouble.failed("WeChat's quota or frequency limit for appid \(appid) (errcode \(errcode)); its exchanges slow down")
            case .transient(let why):
                trouble.failed(why)
            }
            retries += 1
            // The wait is the point of a backoff; cancellation ends it early.
            do { try await Task.sleep(for: .seconds(configuration.retryPolicy.delay(attempt: retries))) } catch { return .stopped }
        }
    }

    private enum Attempt {
        case done(Result)
        case tokenRejected(String)
        case rateLimited(Int64)
        case transient(String)
    }

    /// One call, once the appid's pace lets it go out; nil when cancelled while waiting for that.
    private func attemptOnce(code: String, appid: String, jobTimestamp: Int64?) async -> Attempt? {
        let token: AccessToken
        do {
            token = try await tokens.token(for: appid)
        } catch {
            return .transient("no access token for appid \(appid): \(error)")
        }
        guard await pacer.acquire(appid) else { return nil }
        let attempt = await call(code: code, appid: appid, token: token, jobTimestamp: jobTimestamp)
        switch attempt {
        case .done: pacer.release(appid, .succeeded)
        case .rateLimited: pacer.release(appid, .rateLimited)
        default: pacer.release(appid, .other)
        }
        return attempt
    }

    static let exchangePath = "/wxa/business/getuserphonenumber"

    private func call(code: String, appid: String, token: AccessToken, jobTimestamp: Int64?) async -> Attempt {
        var request = WeChatRequest(path: Self.exchangePath + "?access_token=\(StableTokenAnswer.queryValue(token.value))")
        let sealedCall = sealed[appid]
        // API security mode signs the URL actually called: base URL and path, no query.
        let urlpath = transport.baseURL + Self.exchangePath
        if let sealedCall {
            let sealedRequest = sealedCall.seal(
                urlpath: urlpath, timestamp: Int64(Date().timeIntervalSince1970), parameters: [("code", .string(code))])
            request.body = sealedRequest.body
            request.headers = sealedRequest.headers
        } else {
            var body = JSONWriter()
            body.beginObject()
            body.field("code", code)
            body.endObject()
            request.body = Array(body.text.utf8)
        }
        metrics.callStarted()
        let started = DispatchTime.now()
        let answer: WeChatAnswer
        do {
            answer = try await transport.send(request, timeout: configuration.timeout)
        } catch {
            metrics.callEnded()
            metrics.duration.recordNanoseconds(Int64(DispatchTime.now().uptimeNanoseconds - started.uptimeNanoseconds))
            metrics.exchange("no_answer")
            return .transient("the code exchange got no answer: \(Self.describe(error))")
        }
        metrics.callEnded()
        metrics.duration.recordNanoseconds(Int64(DispatchTime.now().uptimeNanoseconds - started.uptimeNanoseconds))
        guard answer.status == 200 else {
            metrics.exchange("http_error")
            return .transient("the code exchange answered HTTP \(answer.status)")
        }
        let age = Self.age(of: jobTimestamp)
        var body = answer.body
        if let sealedCall {
            switch sealedCall.open(urlpath: urlpath, header: answer.header, body: answer.body, now: Int64(Date().timeIntervalSince1970)) {
            case .verified(let plaintext, let deprecatedSerial):
                metrics.sealed(deprecatedSerial == nil ? "verified" : "verified_deprecated")
                if let deprecatedSerial { noteRotation(appid: appid, serial: deprecatedSerial) }
                body = plaintext
            case .gatewayError(let errcode) where Self.gatewayErrcodes.contains(errcode):
                metrics.sealed("gateway_error")
                metrics.errcode(errcode)
                metrics.exchange(FailureReason.wechatError.rawValue)
                logSetupError(appid: appid, errcode: errcode)
                return .done(.failure(DecryptFailure(.wechatError, "errcode \(errcode) (API security mode), \(age)")))
            case .gatewayError:
                // An unsigned token, busy or rate-limit error: handled as in plain mode below.
                metrics.sealed("gateway_error")
            case .rejected(let reason):
                metrics.sealed("rejected")
                metrics.rejectedAnswer(reason.rawValue)
                metrics.exchange("rejected_answer")
                return .transient("a sealed answer for appid \(appid) failed its check (\(reason.rawValue)): refused and retried")
            }
        }
        let parsed = body.withUnsafeBufferPointer { PhoneNumberAnswer.parse($0, expectedAppid: appid) }
        switch parsed {
        case .phone(let payload):
            metrics.exchange("ok")
            return .done(.phone(payload))
        case .appidMismatch:
            metrics.exchange(FailureReason.appidMismatch.rawValue)
            return .done(
                .failure(DecryptFailure(.appidMismatch, "phone_info watermark appid is not the job's appid \(appid) (errcode 0, \(age))")))
        case .invalidPhoneInfo(let detail):
            metrics.exchange(FailureReason.invalidPhoneInfo.rawValue)
            return .done(.failure(DecryptFailure(.invalidPhoneInfo, "\(detail) (errcode 0, \(age))")))
        case .unreadable(let detail):
            metrics.exchange("unreadable")
            return .transient("the code exchange answered something that is not WeChat's JSON: \(detail)")
        case .error(let errcode):
            metrics.errcode(errcode)
            if errcode == -1 {
                metrics.exchange("busy")
                return .transient("WeChat is busy (errcode -1)")
            }
            if Self.rateErrcodes.contains(errcode) {
                metrics.exchange("rate_limited")
                return .rateLimited(errcode)
            }
            if Self.tokenErrcodes.contains(errcode) {
                metrics.exchange("token_rejected")
                return .tokenRejected(token.value)
            }
            if errcode == Self.invalidCode {
                let expired = jobTimestamp.map { Self.ageSeconds($0) >= Double(DecryptJob.codeLifetime) } ?? false
                let reason: FailureReason = expired ? .codeExpired : .codeInvalid
                metrics.exchange(reason.rawValue)
                return .done(.failure(DecryptFailure(reason, "errcode 40029, \(age)")))
            }
            metrics.exchange(FailureReason.wechatError.rawValue)
            return .done(.failure(DecryptFailure(.wechatError, "errcode \(errcode), \(age)")))
        }
    }

    // MARK: - checksession

    /// Tells a job about to fail `bad_padding` apart (SPEC "Telling stale keys apart"): WeChat's
    /// `checksession` with `sessionKey` (the newest stored key, as stored). One call within the
    /// exchange timeout (and one more with a fresh token if WeChat rejects the token); never retried
    /// beyond that: the answer refines a failure, it does not decide whether the job fails.
    /// Returns `stale_session_key` (errcode 87009), or `failure` itself with a note saying what
    /// WeChat said or why it could not tell; `.stopped` when its task is cancelled (the worker stops).
    public func checkSession(appid: String, openid: String, sessionKey: String, failure: DecryptFailure) async -> Result {
        func unknown(_ result: String, _ why: String) -> Result {
            metrics.checkSession(result)
            return .failure(DecryptFailure(failure.reason, failure.detail + "; checksession could not tell: \(why)"))
        }
        guard hasSecret(for: appid) else { return unknown("not_configured", "no app secret for appid \(appid)") }
        let signature = SHA256Digest.hmacHex(key: Array(sessionKey.utf8), message: [UInt8]())
        var rejected = false
        while true {
            if Task.isCancelled { return .stopped }
            let token: AccessToken
            do {
                token = try await tokens.token(for: appid)
            } catch {
                if Task.isCancelled { return .stopped }
                return unknown("no_token", "no access token")
            }
            let path =
                "/wxa/checksession?access_token=\(StableTokenAnswer.queryValue(token.value))&openid=\(StableTokenAnswer.queryValue(openid))"
                + "&signature=\(signature)&sig_method=hmac_sha256"
            let answer: WeChatAnswer
            do {
                answer = try await transport.send(WeChatRequest(method: "GET", path: path), timeout: configuration.timeout)
            } catch {
                if Task.isCancelled { return .stopped }
                return unknown("no_answer", "WeChat did not answer within the exchange timeout")
            }
            guard answer.status == 200 else { return unknown("http_error", "HTTP \(answer.status)") }
            switch answer.body.withUnsafeBufferPointer({ CheckSessionAnswer.parse($0) }) {
            case .current:
                metrics.checkSession("current")
                return .failure(
                    DecryptFailure(
                        failure.reason,
                        failure.detail + "; checksession: the newest stored key is current, so the payload was not made with it"))
            case .stale:
                metrics.checkSession("stale")
                return .failure(
                    DecryptFailure(
                        .staleSessionKey,
                        failure.detail + "; checksession: the newest stored key is no longer the user's (errcode 87009)"))
            case .error(let errcode):
                metrics.errcode(errcode)
                if Self.tokenErrcodes.contains(errcode), !rejected {
                    rejected = true
                    tokens.invalidate(token.value, for: appid)
                    continue
                }
                return unknown("errcode", "errcode \(errcode)")
            case .unreadable:
                return unknown("unreadable", "an answer that is not WeChat's JSON")
            }
        }
    }

    /// WeChat's gateway errors of API security mode: the setup is wrong, not the job.
    static let gatewayErrcodes: ClosedRange<Int64> = 40230...40240

    /// What to fix, for each gateway errcode.
    static func setupHint(_ errcode: Int64) -> String {
        switch errcode {
        case 40234:
            "WeChat refused the signature: check privateKey and privateKeySn in the API security file against the key registered at WeChat"
        case 40235: "WeChat could not decrypt the body: check symmetricKey and symmetricKeySn in the API security file"
        case 40238, 40239:
            "API security keys are not configured at WeChat for this appid (or the numbers differ): register them at mp.weixin.qq.com, or remove the appid from the API security file"
        case 40240: "WeChat says the timestamp expired: this host's clock is more than 300 s off; check NTP"
        default: "a Wechatmp-* header was refused: check the API security file's entry for this appid"
        }
    }

    /// One error log per appid and gateway errcode: the jobs fail `wechat_error`, the log says what to fix.
    private func logSetupError(appid: String, errcode: Int64) {
        guard loggedOnce.withLock({ $0.insert("\(appid)|\(errcode)").inserted }) else { return }
        logger.error(
            "API security mode is misconfigured: code jobs of this appid fail wechat_error until it is fixed",
            metadata: [LogKey.appid: "\(appid)", "errcode": "\(errcode)", "fix": "\(Self.setupHint(errcode))"])
    }

    /// Once per appid and serial: WeChat is rotating its certificate and only the old one is configured.
    private func noteRotation(appid: String, serial: String) {
        guard loggedOnce.withLock({ $0.insert("\(appid)|deprecated|\(serial)").inserted }) else { return }
        logger.warning(
            "WeChat is rotating its platform certificate: answers verify only with the deprecated one; add the new certificate to the API security file",
            metadata: [LogKey.appid: "\(appid)", "deprecated_serial": "\(serial)"])
    }

    static func ageSeconds(_ timestamp: Int64) -> Double {
        Date().timeIntervalSince1970 - Double(timestamp) / 1000
    }

    /// "job age 12 s" (or "job age unknown").
    static func age(of timestamp: Int64?) -> String {
        guard let timestamp else { return "job age unknown" }
        return "job age \(max(0, Int(ageSeconds(timestamp).rounded()))) s"
    }

    /// A transport error in a few words: its type and case, never a URL (it would carry the token).
    static func describe(_ error: any Error) -> String {
        let text = String(describing: error)
        if text.contains("access_token") || text.count > 200 { return String(describing: type(of: error)) }
        return text
    }

    // MARK: - Tokens

    private static func fetchToken(
        appid: String, secret: String, transport: any WeChatTransport, timeout: TimeInterval, metrics: ExchangeMetrics, logger: Logger
    ) async throws -> AccessToken {
        var body = JSONWriter()
        body.beginObject()
        body.field("grant_type", "client_credential")
        body.field("appid", appid)
        body.field("secret", secret)
        // Never forced: forcing would invalidate every other worker's token (SPEC).
        body.field("force_refresh", false)
        body.endObject()
        let answer: (status: Int, body: [UInt8])
        do {
            answer = try await transport.post("/cgi-bin/stable_token", body: Array(body.text.utf8), timeout: timeout)
        } catch {
            metrics.tokenFetch(appid: appid, result: "no_answer")
            throw TokenError(description: "the stable-token call got no answer: \(describe(error))")
        }
        guard answer.status == 200 else {
            metrics.tokenFetch(appid: appid, result: "http_error")
            throw TokenError(description: "the stable-token call answered HTTP \(answer.status)")
        }
        switch answer.body.withUnsafeBufferPointer({ StableTokenAnswer.parse($0) }) {
        case .token(let token, let expiresIn):
            metrics.tokenFetch(appid: appid, result: "ok")
            logger.debug("fetched an access token", metadata: [LogKey.appid: "\(appid)", LogKey.expiresIn: "\(expiresIn)"])
            return AccessToken(value: token, expiresIn: TimeInterval(expiresIn))
        case .error(let errcode):
            metrics.tokenFetch(appid: appid, result: "errcode")
            metrics.errcode(errcode)
            throw TokenError(description: "the stable-token call answered errcode \(errcode)\(tokenHint(errcode))")
        case .unreadable(let detail):
            metrics.tokenFetch(appid: appid, result: "unreadable")
            throw TokenError(description: "the stable-token call answered something that is not WeChat's JSON: \(detail)")
        }
    }

    private static func tokenHint(_ errcode: Int64) -> String {
        switch errcode {
        case 40013: " (invalid appid)"
        case 40125: " (invalid app secret: check WECHAT_APP_SECRETS)"
        case 40164: " (this host's IP is not on the appid's allow list)"
        case -1: " (system busy)"
        default: ""
        }
    }

    struct TokenError: Error, CustomStringConvertible {
        var description: String
    }
}
