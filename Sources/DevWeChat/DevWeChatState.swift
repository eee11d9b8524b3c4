import Foundation
import OpenSSLDigest
import PhoneDecryption
import SyntheticLoad

/// What `decryptd dev-wechat` knows and decides: WeChat's two endpoints (stable token, phone-number
/// code exchange) over in-memory state. Pure: no sockets, no clocks but the one given, so tests can
/// drive it directly; ``DevWeChatServer`` puts it behind HTTP.
///
/// It honours the codes ``SyntheticCode`` makes (genuine for one appid, valid for 5 minutes, once),
/// checks the app secret and the token, and answers as WeChat documents: errcode 40013 (unknown
/// appid), 40125 (wrong secret), 40001 (unknown token), 42001 (expired token), 40029 (a wrong, spent
/// or expired code), -1, 45011 and 47001 on request.
public struct DevWeChatState: Sendable {
    public struct Settings: Sendable {
        /// appid → secret: the apps it knows.
        public var secrets: [String: String]
        /// Lifetime of a token it issues, seconds. Default: 7200 (WeChat's).
        public var tokenLifetime: Int64 = 7200
        /// Shares of exchanges answered transiently at random, on top of the codes' own faults.
        public var busyShare = 0.0
        public var quotaShare = 0.0
        public var serverErrorShare = 0.0
        public var resetShare = 0.0
        /// appid → its API security mode keys: these apps' exchanges must be sealed.
        public var sealed: [String: DevSealedApp] = [:]
        /// Share of sealed exchanges answered by a forger (signed with a key that is not WeChat's;
        /// the code is not spent, as WeChat never saw the call).
        public var forgeShare = 0.0
        /// Seconds added to the stand-in's clock (sealed calls: a request or answer more than 300 s
        /// off is refused).
        public var clockSkew: Int64 = 0
        /// Rotate the platform certificate after this many sealed exchanges: answers are then signed by
        /// the next certificate, with the old one's signature in the `-Deprecated` headers.
        public var rotateAfter: Int?

        public init(secrets: [String: String]) { self.secrets = secrets }
    }

    /// How to answer one request.
    public enum Answer: Sendable, Equatable {
        case json(status: Int, body: String)
        /// A sealed answer: its body and `Wechatmp-*` headers.
        case signed(status: Int, body: [UInt8], headers: [String: String])
        /// Close the connection without an answer.
        case reset
    }

    /// Counts for tests and the curious (`GET /dev/stats`).
    public struct Stats: Sendable, Codable, Equatable {
        public var tokenFetches: [String: Int] = [:]
        public var tokensIssued: [String: Int] = [:]
        public var exchanges = 0
        public var exchangesAnswered: [String: Int] = [:]
        public var codesSpent = 0
        /// Exchanges of a code that was already spent: a worker that exchanged a code twice.
        public var codesReused = 0
        public var tokensInvalidated = 0
        /// Sealed exchanges received, answers forged, and gateway errors by errcode.
        public var sealedExchanges = 0
        public var forgedAnswers = 0
        public var gatewayErrors: [String: Int] = [:]
        /// Whether answers are signed by the rotated certificate.
        public var certificateRotated = false
        /// checksession answers by errcode ("0", "87009", ...).
        public var checksessions: [String: Int] = [:]
    }

    private struct IssuedToken {
        var appid: String
        var expiresAt: Double
    }

    public let settings: Settings
    public private(set) var stats = Stats()
    private var current: [String: String] = [:]
    private var tokens: [String: IssuedToken] = [:]
    private var spent: Set<String> = []
    /// appid → openid → the session key WeChat holds as the user's current one (checksession).
    private var sessionKeys: [String: [String: String]] = [:]
    private var faulted: Set<String> = []
    private var generation = 0
    private var random: UInt64

    public init(settings: Settings, seed: UInt64 = 1) {
        self.settings = settings
        random = seed
    }

    // MARK: - Endpoints

    /// Answers one request. `headers` are the request's, names lowercased; `urlBase` is the scheme
    /// and host the caller used (sealed calls sign the full URL path).
    public mutating func answer(
        method: String, path: String, query: [String: String], body: [UInt8], now: Double, headers: [String: String] = [:],
        urlBase: String = ""
    ) -> Answer {
        switch (method, path) {
        case ("POST", "/cgi-bin/stable_token"): return stableToken(body, now: now)
        case ("POST", "/wxa/business/getuserphonenumber"):
            return exchange(token: query["access_token"], body: body, now: now, headers: headers, urlpath: urlBase + path)
        case ("GET", "/wxa/checksession"): return checkSession(query, now: now)
        case ("POST", "/dev/session-keys"):
            guard let object = Self.object(body) as? [String: [String: String]] else {
                return .json(status: 400, body: #"{"errcode":47001,"errmsg":"want {appid: {openid: session_key}}"}"#)
            }
            var count = 0
            for (appid, users) in object {
                for (openid, key) in users {
                    sessionKeys[appid, default: [:]][openid] = key
                    count += 1
                }
            }
            return .json(status: 200, body: #"{"registered":\#(count)}"#)
        case ("POST", "/dev/rotate-certificate"):
            stats.certificateRotated = true
            return .json(status: 200, body: #"{"rotated":true}"#)
        case ("GET", "/dev/stats"): return .json(status: 200, body: statsJSON)
        case ("POST", "/dev/invalidate-tokens"):
            let count = invalidateTokens()
            return .json(status: 200, body: #"{"invalidated":\#(count)}"#)
        default: return .json(status: 404, body: #"{"errcode":404,"errmsg":"no such endpoint"}"#)
        }
    }

    /// Tells the stand-in which session key WeChat holds as each user's current one (what loadgen's
    /// expectation lists as `currentKeys`); checksession compares signatures with it.
    public mutating func registerSessionKeys(_ keys: [(appid: String, openid: String, sessionKey: String)]) {
        for key in keys { sessionKeys[key.appid, default: [:]][key.openid] = key.sessionKey }
    }

    /// `GET /wxa/checksession?access_token&openid&signature&sig_method=hmac_sha256`: 0 when the
    /// signature is the HMAC-SHA256 of the empty message keyed with the user's current key, 87009
    /// when it is not; 40003 for a user it was never told of.
    private mutating func checkSession(_ query: [String: String], now: Double) -> Answer {
        let answer: Answer
        if let token = query["access_token"], let issued = tokens[token] {
            if issued.expiresAt <= now {
                answer = Self.error(42001, "access_token expired")
            } else if query["sig_method"] != "hmac_sha256" {
                answer = Self.error(40097, "invalid args: sig_method")
            } else if let openid = query["openid"], let current = sessionKeys[issued.appid]?[openid] {
                let expected = SHA256Digest.hmacHex(key: Array(current.utf8), message: [UInt8]())
                answer =
                    query["signature"] == expected
                    ? .json(status: 200, body: #"{"errcode":0,"errmsg":"ok"}"#) : Self.error(87009, "invalid signature")
            } else {
                answer = Self.error(40003, "invalid openid")
            }
        } else {
            answer = Self.error(40001, "invalid credential, access_token is invalid or not latest")
        }
        if case .json(_, let body) = answer {
            let errcode = body.dropFirst(11).prefix { $0 != "," }
            stats.checksessions[String(errcode), default: 0] += 1
        }
        return answer
    }

    /// Makes every issued token invalid (as a `force_refresh` by another caller would); returns how many.
    public mutating func invalidateTokens() -> Int {
        let count = current.count
        current.removeAll()
        tokens.removeAll()
        stats.tokensInvalidated += count
        return count
    }

    public var statsJSON: String {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.outputFormatting = .sortedKeys
        return (try? encoder.encode(stats)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
    }

    private mutating func stableToken(_ body: [UInt8], now: Double) -> Answer {
        guard let request = Self.object(body) else { return Self.error(47001, "data format error") }
        guard request["grant_type"] as? String == "client_credential" else { return Self.error(40002, "invalid grant_type") }
        guard let appid = request["appid"] as? String, let secret = settings.secrets[appid] else {
            return Self.error(40013, "invalid appid")
        }
        stats.tokenFetches[appid, default: 0] += 1
        guard request["secret"] as? String == secret else { return Self.error(40125, "invalid appsecret") }
        let force = request["force_refresh"] as? Bool ?? false
        if !force, let token = current[appid], let issued = tokens[token], issued.expiresAt > now {
            return .json(status: 200, body: #"{"access_token":"\#(token)","expires_in":\#(Int64(issued.expiresAt - now))}"#)
        }
        if let old = current[appid] { tokens[old] = nil }
        generation += 1
        let token = "devtoken\(generation)x\(String(next(), radix: 36))"
        current[appid] = token
        tokens[token] = IssuedToken(appid: appid, expiresAt: now + Double(settings.tokenLifetime))
        stats.tokensIssued[appid, default: 0] += 1
        return .json(status: 200, body: #"{"access_token":"\#(token)","expires_in":\#(settings.tokenLifetime)}"#)
    }

    /// What a code exchange's sealing asks for. The RSA and AES work happens outside the state (see
    /// ``DevWeChatServer``, which keeps it out of its lock): the state only decides and counts.
    enum SealedStep: Sendable {
        /// The token's app is not in API security mode (or the token is unknown): answer plainly.
        case plain
        /// Answer with a forgery, signed by `signer`'s serial (0 or 1: before or after the rotation).
        case forge(DevSealedApp, signer: Int, clock: Int64)
        /// Open the request, answer, seal the answer.
        case open(DevSealedApp, signer: Int, clock: Int64)
    }

    /// Decides how a code exchange with `token` is sealed, counting it.
    mutating func beginExchange(token: String?, now: Double) -> SealedStep {
        stats.exchanges += 1
        guard let token, let issued = tokens[token], issued.expiresAt > now, let app = settings.sealed[issued.appid] else { return .plain }
        stats.sealedExchanges += 1
        if let after = settings.rotateAfter, stats.sealedExchanges > after { stats.certificateRotated = true }
        let clock = Int64(now) + settings.clockSkew
        let signer = stats.certificateRotated ? 1 : 0
        if roll(settings.forgeShare) {
            stats.forgedAnswers += 1
            stats.exchangesAnswered["forged", default: 0] += 1
            return .forge(app, signer: signer, clock: clock)
        }
        return .open(app, signer: signer, clock: clock)
    }

    /// The gateway refused a sealed request.
    mutating func refuse(_ errcode: Int, _ message: String) -> Answer {
        stats.gatewayErrors[String(errcode), default: 0] += 1
        stats.exchangesAnswered[String(errcode), default: 0] += 1
        return Self.error(errcode, message)
    }

    /// The whole sealed exchange in one step, for callers without a lock to keep short (tests).
    private mutating func exchange(token: String?, body: [UInt8], now: Double, headers: [String: String], urlpath: String) -> Answer {
        DevGateway.exchange(
            urlpath: urlpath, headers: headers, body: body, begin: { beginExchange(token: token, now: now) },
            plain: { exchangeCounted(token: token, body: $0, now: now) }, refuse: { refuse($0.errcode, $0.message) })
    }

    /// A plain exchange (or a sealed one's opened plaintext), counted by its answer.
    mutating func exchangeCounted(token: String?, body: [UInt8], now: Double) -> Answer {
        let answer = exchangeAnswer(token: token, body: body, now: now)
        let key: String
        switch answer {
        case .reset: key = "reset"
        case .json(let status, _) where status != 200: key = "http_\(status)"
        case .json(_, let body):
            key =
                body.hasPrefix(#"{"errcode":0,"#)
                ? (body.contains("phone_info") ? "ok" : "no_phone_info") : String(body.dropFirst(11).prefix { $0 != "," })
        case .signed: key = "signed"
        }
        stats.exchangesAnswered[key, default: 0] += 1
        return answer
    }

    private mutating func exchangeAnswer(token: String?, body: [UInt8], now: Double) -> Answer {
        guard let token, let issued = tokens[token] else {
            return Self.error(40001, "invalid credential, access_token is invalid or not latest")
        }
        guard issued.expiresAt > now else { return Self.error(42001, "access_token expired") }
        if roll(settings.resetShare) { return .reset }
        if roll(settings.serverErrorShare) { return .json(status: 503, body: "{}") }
        if roll(settings.busyShare) { return Self.error(-1, "system error") }
        if roll(settings.quotaShare) { return Self.error(45011, "api minute-quota reach limit") }
        guard let request = Self.object(body), let text = request["code"] as? String else { return Self.error(47001, "data format error") }
        let appid = issued.appid
        guard let code = SyntheticCode.parse(text, appid: appid), now - Double(code.issuedAt) < Double(SyntheticCode.lifetime) else {
            return Self.error(40029, "invalid code")
        }
        // A code's own transient fault, on its first exchange only.
        if let fault = SyntheticCode.Faults.transient.first(where: { code.faults.contains($0) }), faulted.insert(text).inserted {
            switch fault {
            case .busyOnce: return Self.error(-1, "system error")
            case .quotaOnce: return Self.error(45011, "api minute-quota reach limit")
            case .serverErrorOnce: return .json(status: 503, body: "{}")
            case .resetOnce: return .reset
            default:
                // The token stops working, as when another caller forced a refresh.
                current[appid] = nil
                tokens[token] = nil
                stats.tokensInvalidated += 1
                return Self.error(40001, "invalid credential, access_token is invalid or not latest")
            }
        }
        guard spent.insert(text).inserted else {
            stats.codesReused += 1
            return Self.error(40029, "invalid code")
        }
        stats.codesSpent += 1
        if code.faults.contains(.otherErrcode) { return Self.error(47001, "data format error") }
        if code.faults.contains(.noPhoneInfo) { return .json(status: 200, body: #"{"errcode":0,"errmsg":"ok"}"#) }
        let phone = code.phone
        // countryCode as WeChat sends it: a string, and a number now and then.
        let country = code.serial % 2 == 0 ? "\"\(phone.countryCode)\"" : phone.countryCode
        return .json(
            status: 200,
            body: """
                {"errcode":0,"errmsg":"ok","phone_info":{"phoneNumber":"\(phone.phoneNumber)","purePhoneNumber":"\(phone.purePhoneNumber)",\
                "countryCode":\(country),"watermark":{"timestamp":\(phone.watermarkTimestamp),"appid":"\(code.watermarkAppid)"}}}
                """)
    }

    // MARK: - Helpers

    private static func error(_ errcode: Int, _ message: String) -> Answer {
        .json(status: 200, body: #"{"errcode":\#(errcode),"errmsg":"\#(message)"}"#)
    }

    private static func object(_ body: [UInt8]) -> [String: Any]? {
        (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any]
    }

    private mutating func next() -> UInt64 {
        random &+= 0x9E37_79B9_7F4A_7C15
        var z = random
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    private mutating func roll(_ share: Double) -> Bool {
        share > 0 && Double(next() >> 11) / Double(1 << 53) < share
    }
}
