import OpenSSLAES
public import OpenSSLRSA
public import PhoneDecryption

/// One parameter of a sealed call's plaintext.
public enum SealedParameter: Sendable, Hashable {
    case string(String)
    case integer(Int64)
}

/// A sealed request: the body to POST and the four `Wechatmp-*` headers.
public struct SealedRequest: Sendable {
    public var body: [UInt8]
    public var headers: [(name: String, value: String)]
}

/// How an answer to a sealed call ended.
public enum OpenedAnswer: Sendable, Equatable {
    /// Verified and decrypted: the inner JSON (with `_n`, `_appid`, `_timestamp` and the answer's fields).
    /// `deprecatedSerial` is set when only the expiring certificate verified it (rotation under way).
    case verified(plaintext: [UInt8], deprecatedSerial: String?)
    /// An unsigned, plain JSON error of WeChat's gateway (or one a forger can make only to slow a job
    /// down, never to give it a number): the errcode.
    case gatewayError(errcode: Int64)
    /// Failed a check: never used.
    case rejected(AnswerRejection)
}

/// Why an answer was refused; the raw values label `decryptd_sealed_calls_total`.
public enum AnswerRejection: String, Sendable, CaseIterable {
    /// No signature, and not one of the errors the gateway sends unsigned.
    case unsigned
    /// Signed by a certificate number that is not configured.
    case unknownCertificate = "unknown_certificate"
    case badSignature = "bad_signature"
    /// `Wechatmp-Appid` is another appid.
    case wrongAppid = "wrong_appid"
    /// `Wechatmp-TimeStamp` missing, or more than 300 s from now.
    case stale
    /// The body is not `{"iv","data","authtag"}` with base64 values of the right sizes.
    case malformed
    /// AES-GCM's tag does not match.
    case undecryptable
    /// The plaintext's `_appid` or `_timestamp` differ from the headers.
    case innerMismatch = "inner_mismatch"
}

/// WeChat's API security mode for one appid, SPEC's seven steps: seals requests (AES-256-GCM, then
/// RSASSA-PSS over the signing string) and verifies and opens answers. Pure but for the randomness
/// of `_n`, the iv and the PSS salt; no clock (callers pass the time).
public struct SealedCall: Sendable {
    public let keys: APISecurityKeys

    /// The largest age (either way) of an answer's timestamp, seconds.
    public static let maximumSkew: Int64 = 300
    /// Errcodes WeChat's gateway answers in plain JSON: setup errors (40230–40240), token errors,
    /// busy and rate limits. A forger can send these too, but they never give a job a number.
    public static let unsignedErrcodes: Set<Int64> = Set(40230...40240).union([-1, 40001, 40014, 42001, 45009, 45011])

    public init(keys: APISecurityKeys) { self.keys = keys }

    /// `urlpath\nappid\ntimestamp\nbody`: four lines, no trailing newline.
    public static func signingString(urlpath: String, appid: String, timestamp: Int64, body: [UInt8]) -> [UInt8] {
        Array("\(urlpath)\n\(appid)\n\(timestamp)\n".utf8) + body
    }

    /// `urlpath|appid|timestamp|symmetricKeySn`.
    public func aad(urlpath: String, timestamp: Int64) -> [UInt8] {
        Array("\(urlpath)|\(keys.appid)|\(timestamp)|\(keys.symmetricKeySn)".utf8)
    }

    /// The plaintext: `_n`, `_appid`, `_timestamp`, then `parameters` in order, compact.
    public func plaintext(nonce: String, timestamp: Int64, parameters: [(String, SealedParameter)]) -> [UInt8] {
        var writer = JSONWriter()
        writer.beginObject()
        writer.field("_n", nonce)
        writer.field("_appid", keys.appid)
        writer.field("_timestamp", timestamp)
        for (name, value) in parameters {
            switch value {
            case .string(let text): writer.field(name, text)
            case .integer(let number): writer.field(name, number)
            }
        }
        writer.endObject()
        return Array(writer.text.utf8)
    }

    /// Seals a call to `urlpath` (scheme, host and path: no query). `nonce` and `iv` are random unless
    /// given (known-answer tests give them).
    public func seal(
        urlpath: String, timestamp: Int64, parameters: [(String, SealedParameter)], nonce: String? = nil, iv: [UInt8]? = nil
    ) -> SealedRequest {
        let nonce = nonce ?? Base64Encoding.encode(SystemRandomNumberGenerator.bytes(16))
        let iv = iv ?? SystemRandomNumberGenerator.bytes(EVPAES256GCM.ivSize)
        let plaintext = plaintext(nonce: nonce, timestamp: timestamp, parameters: parameters)
        guard
            let sealed = EVPAES256GCM.seal(
                key: keys.symmetricKey, iv: iv, aad: aad(urlpath: urlpath, timestamp: timestamp), plaintext: plaintext)
        else { fatalError("OpenSSL refused AES-256-GCM") }
        let body = Self.envelope(iv: iv, data: sealed.ciphertext, tag: sealed.tag)
        let signature = keys.privateKey.signPSS(Self.signingString(urlpath: urlpath, appid: keys.appid, timestamp: timestamp, body: body))
        return SealedRequest(
            body: body,
            headers: [
                ("Wechatmp-Appid", keys.appid), ("Wechatmp-TimeStamp", String(timestamp)),
                ("Wechatmp-Signature", Base64Encoding.encode(signature)), ("Wechatmp-Serial", keys.privateKeySn),
            ])
    }

    /// `{"iv":..,"data":..,"authtag":..}`, compact, in that order.
    public static func envelope(iv: [UInt8], data: [UInt8], tag: [UInt8]) -> [UInt8] {
        var writer = JSONWriter()
        writer.beginObject()
        writer.field("iv", Base64Encoding.encode(iv))
        writer.field("data", Base64Encoding.encode(data))
        writer.field("authtag", Base64Encoding.encode(tag))
        writer.endObject()
        return Array(writer.text.utf8)
    }

    /// Verifies and opens an answer to a call to `urlpath`; `header` looks a response header up by
    /// name (case-insensitively); `now` is Unix seconds.
    public func open(urlpath: String, header: (String) -> String?, body: [UInt8], now: Int64) -> OpenedAnswer {
        guard let signature = header("Wechatmp-Signature") else {
            // The gateway's own errors come unsigned, in plain JSON.
            if case .error(let errcode) = body.withUnsafeBufferPointer({ StableTokenAnswer.parse($0) }),
                Self.unsignedErrcodes.contains(errcode)
            {
                return .gatewayError(errcode: errcode)
            }
            return .rejected(.unsigned)
        }
        guard header("Wechatmp-Appid") == keys.appid else { return .rejected(.wrongAppid) }
        guard let stampText = header("Wechatmp-TimeStamp"), let timestamp = Int64(stampText), abs(now - timestamp) <= Self.maximumSkew
        else { return .rejected(.stale) }
        let signed = Self.signingString(urlpath: urlpath, appid: keys.appid, timestamp: timestamp, body: body)
        var deprecatedSerial: String?
        if let serial = header("Wechatmp-Serial"), let certificate = keys.platformCertificates[serial] {
            guard let bytes = LenientBase64.decodeStrictly(signature), certificate.verifyPSS(bytes, of: signed) else {
                return .rejected(.badSignature)
            }
        } else if let serial = header("Wechatmp-Serial-Deprecated"), let certificate = keys.platformCertificates[serial] {
            // WeChat is rotating its certificate and only the old one is configured here.
            guard let text = header("Wechatmp-Signature-Deprecated"), let bytes = LenientBase64.decodeStrictly(text),
                certificate.verifyPSS(bytes, of: signed)
            else { return .rejected(.badSignature) }
            deprecatedSerial = serial
        } else {
            return .rejected(.unknownCertificate)
        }
        guard case .sealed(let iv, let data, let tag) = SealedEnvelope.parse(body) else { return .rejected(.malformed) }
        guard
            let plaintext = EVPAES256GCM.open(
                key: keys.symmetricKey, iv: iv, aad: aad(urlpath: urlpath, timestamp: timestamp), ciphertext: data, tag: tag)
        else { return .rejected(.undecryptable) }
        guard case .stamp(let innerAppid, let innerTimestamp) = SealedEnvelope.stamp(plaintext), innerAppid == keys.appid,
            innerTimestamp == timestamp
        else { return .rejected(.innerMismatch) }
        return .verified(plaintext: plaintext, deprecatedSerial: deprecatedSerial)
    }
}

extension SystemRandomNumberGenerator {
    /// `count` bytes from the system's cryptographically secure generator.
    static func bytes(_ count: Int) -> [UInt8] {
        var generator = SystemRandomNumberGenerator()
        return (0..<count).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
    }
}
