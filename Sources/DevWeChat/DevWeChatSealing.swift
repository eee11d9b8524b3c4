import OpenSSLAES
public import OpenSSLRSA
import PhoneDecryption
public import WeChatAPISecurity

/// One app's API security mode at the stand-in: the keys WeChat holds for it (the symmetric key,
/// the app's public key) and its own platform keys. Made fresh by ``generate(appid:)``, whose key
/// file the worker reads.
public struct DevSealedApp: Sendable {
    public let appid: String
    public let symmetricKey: [UInt8]
    public let symmetricKeySn: String
    /// The app's key pair: the stand-in verifies requests with the public half; the private half
    /// goes into the key file for the worker.
    public let appKey: RSAPrivateKey
    public let appKeySn: String
    /// Platform keys, by serial, in the order they come into use: the first signs until a rotation,
    /// then the next signs and the one before it signs the `-Deprecated` pair.
    public let platformKeys: [(serial: String, key: RSAPrivateKey)]
    /// Not WeChat's: what signs forged answers (`--forge-share`).
    public let forgerKey: RSAPrivateKey

    public static func generate(appid: String) -> DevSealedApp {
        var generator = SystemRandomNumberGenerator()
        func serial() -> String { (0..<16).map { _ in String(format2: UInt8.random(in: 0...255, using: &generator)) }.joined() }
        return DevSealedApp(
            appid: appid, symmetricKey: (0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) }, symmetricKeySn: serial(),
            appKey: RSAPrivateKey.generate(), appKeySn: serial(),
            platformKeys: [(serial(), RSAPrivateKey.generate()), (serial(), RSAPrivateKey.generate())], forgerKey: RSAPrivateKey.generate())
    }

    /// The key file entry the worker needs: symmetric key, the app's private key, and the first
    /// platform certificate only (so that a rotation shows the worker falling back to the deprecated pair).
    public var keyFile: String {
        APISecurityFile.render(
            appid: appid, symmetricKey: symmetricKey, symmetricKeySn: symmetricKeySn, privateKeyPEM: appKey.pem, privateKeySn: appKeySn,
            certificates: [
                platformKeys[0].serial: RSAPublicKey.selfSignedCertificate(
                    platformKeys[0].key, commonName: "dev-wechat platform \(appid)", serial: 1, days: 365)
            ])
    }

    /// The keys as the worker sees them (tests use them directly).
    public var workerKeys: APISecurityKeys {
        APISecurityKeys(
            appid: appid, symmetricKey: symmetricKey, symmetricKeySn: symmetricKeySn, privateKey: appKey, privateKeySn: appKeySn,
            platformCertificates: [platformKeys[0].serial: platformKeys[0].key.publicKey])
    }
}

extension String {
    fileprivate init(format2 byte: UInt8) {
        let digits = Array("0123456789abcdef")
        self = String([digits[Int(byte >> 4)], digits[Int(byte & 15)]])
    }
}

/// What WeChat's gateway does with a sealed request and answer (the stand-in's side of SPEC's
/// seven steps). Its errcodes: 40230 a header missing or naming another appid, 40234 a signature
/// that does not verify, 40235 a body that does not decrypt (or whose stamp differs), 40239 a
/// private key number WeChat does not know, 40240 a timestamp more than 300 s from its clock.
public enum DevGateway {
    /// The code from a sealed request, or the gateway's errcode.
    static func open(
        _ app: DevSealedApp, urlpath: String, headers: [String: String], body: [UInt8], now: Int64
    ) -> Result<[UInt8], GatewayError> {
        guard let appid = headers["wechatmp-appid"], let stamp = headers["wechatmp-timestamp"],
            let signature = headers["wechatmp-signature"], let serial = headers["wechatmp-serial"], appid == app.appid,
            let timestamp = Int64(stamp)
        else { return .failure(GatewayError(40230, "missing or invalid Wechatmp-* header")) }
        guard abs(now - timestamp) <= SealedCall.maximumSkew else { return .failure(GatewayError(40240, "timestamp expired")) }
        guard serial == app.appKeySn else { return .failure(GatewayError(40239, "private key not configured")) }
        let signing = SealedCall.signingString(urlpath: urlpath, appid: appid, timestamp: timestamp, body: body)
        guard let decoded = LenientBase64.decodeStrictly(signature), app.appKey.publicKey.verifyPSS(decoded, of: signing)
        else { return .failure(GatewayError(40234, "invalid signature")) }
        let call = SealedCall(keys: app.workerKeys)
        guard case .sealed(let iv, let data, let tag) = SealedEnvelope.parse(body),
            let plaintext = EVPAES256GCM.open(
                key: app.symmetricKey, iv: iv, aad: call.aad(urlpath: urlpath, timestamp: timestamp), ciphertext: data, tag: tag),
            case .stamp(let innerAppid, let innerTimestamp) = SealedEnvelope.stamp(plaintext), innerAppid == appid,
            innerTimestamp == timestamp
        else { return .failure(GatewayError(40235, "invalid encryption")) }
        return .success(plaintext)
    }

    struct GatewayError: Error {
        var errcode: Int
        var message: String
        init(_ errcode: Int, _ message: String) {
            self.errcode = errcode
            self.message = message
        }
    }

    /// One code exchange from `begin` on: plain, forged, or opened, answered and sealed. `begin`,
    /// `plain` (the exchange of a plain body or an opened plaintext) and `refuse` are the state's
    /// steps (taken under its lock by the server); the RSA and AES work runs between them.
    static func exchange(
        urlpath: String, headers: [String: String], body: [UInt8], begin: () -> DevWeChatState.SealedStep,
        plain: ([UInt8]) -> DevWeChatState.Answer, refuse: (GatewayError) -> DevWeChatState.Answer
    ) -> DevWeChatState.Answer {
        switch begin() {
        case .plain: return plain(body)
        case .forge(let app, let signer, let clock): return forged(app, urlpath: urlpath, signer: signer, clock: clock)
        case .open(let app, let signer, let clock):
            switch open(app, urlpath: urlpath, headers: headers, body: body, now: clock) {
            case .failure(let refusal): return refuse(refusal)
            case .success(let plaintext):
                return sealAnswer(plain(plaintext), app: app, urlpath: urlpath, signer: signer, clock: clock)
            }
        }
    }

    /// A forged phone answer, signed by the forger's key under the genuine serial.
    static func forged(_ app: DevSealedApp, urlpath: String, signer: Int, clock: Int64) -> DevWeChatState.Answer {
        let forged = """
            {"errcode":0,"errmsg":"ok","phone_info":{"phoneNumber":"+86 13800000000","purePhoneNumber":"13800000000",\
            "countryCode":"86","watermark":{"timestamp":\(clock),"appid":"\(app.appid)"}}}
            """
        let sealed = seal(app, urlpath: urlpath, answer: forged, now: clock, signer: signer, forger: app.forgerKey)
        return .signed(status: 200, body: sealed.body, headers: sealed.headers)
    }

    /// A business answer of WeChat's (200 with a JSON object) sealed; any other answer (a reset, an
    /// HTTP error) as it is.
    public static func sealAnswer(_ answer: DevWeChatState.Answer, app: DevSealedApp, urlpath: String, signer: Int, clock: Int64)
        -> DevWeChatState.Answer
    {
        guard case .json(200, let text) = answer else { return answer }
        let sealed = seal(app, urlpath: urlpath, answer: text, now: clock, signer: signer, forger: nil)
        return .signed(status: 200, body: sealed.body, headers: sealed.headers)
    }

    /// Seals a business answer (a JSON object's text) as WeChat does: stamp, AES-256-GCM, signed by
    /// the platform key `signer` (and by `deprecated` too during a rotation). `forger`: sign with
    /// this key instead, under the genuine serial (a forged answer).
    static func seal(
        _ app: DevSealedApp, urlpath: String, answer: String, now: Int64, signer: Int, forger: RSAPrivateKey?
    ) -> (body: [UInt8], headers: [String: String]) {
        var generator = SystemRandomNumberGenerator()
        let nonce = Base64Encoding.encode((0..<16).map { _ in UInt8.random(in: 0...255, using: &generator) })
        var stamped = JSONWriter()
        stamped.beginObject()
        stamped.field("_n", nonce)
        stamped.field("_appid", app.appid)
        stamped.field("_timestamp", now)
        stamped.endObject()
        // The answer's members after the stamp: `{stamp}` + `,` + the answer without its `{`.
        let inner = answer.dropFirst().hasPrefix("}") ? stamped.text : String(stamped.text.dropLast()) + "," + answer.dropFirst()
        let iv = (0..<12).map { _ in UInt8.random(in: 0...255, using: &generator) }
        let call = SealedCall(keys: app.workerKeys)
        guard
            let sealed = EVPAES256GCM.seal(
                key: app.symmetricKey, iv: iv, aad: call.aad(urlpath: urlpath, timestamp: now), plaintext: Array(inner.utf8))
        else { fatalError("OpenSSL refused AES-256-GCM") }
        let body = SealedCall.envelope(iv: iv, data: sealed.ciphertext, tag: sealed.tag)
        let signing = SealedCall.signingString(urlpath: urlpath, appid: app.appid, timestamp: now, body: body)
        let current = app.platformKeys[signer]
        var headers = [
            "Wechatmp-Appid": app.appid, "Wechatmp-TimeStamp": String(now), "Wechatmp-Serial": current.serial,
            "Wechatmp-Signature": Base64Encoding.encode((forger ?? current.key).signPSS(signing)),
        ]
        if signer > 0 {
            let old = app.platformKeys[signer - 1]
            headers["Wechatmp-Serial-Deprecated"] = old.serial
            headers["Wechatmp-Signature-Deprecated"] = Base64Encoding.encode((forger ?? old.key).signPSS(signing))
        }
        return (body, headers)
    }
}
