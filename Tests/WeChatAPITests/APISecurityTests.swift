import Foundation
import OpenSSLAES
import OpenSSLDigest
import OpenSSLRSA
import PhoneDecryption
import Testing
import WeChatAPISecurity

/// WeChat's worked example of API security mode (../shared/testdata/wechat-api-security-vectors.json)
/// reproduced byte for byte where the algorithm is deterministic (plaintext, AAD, ciphertext, tag,
/// body, signing string) and verified where it is not (RSASSA-PSS signatures carry a random salt).
@Suite("API security mode: WeChat's worked example, sealing and opening")
struct APISecurityTests {
    nonisolated(unsafe) static let vectors: [String: Any] = {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("../shared/testdata/wechat-api-security-vectors.json").standardized
        guard let data = try? Data(contentsOf: url), let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            fatalError("cannot read \(url.path)")
        }
        return object
    }()
    static var request: [String: Any] { vectors["req"] as! [String: Any] }
    static var response: [String: Any] { vectors["resp"] as! [String: Any] }
    static var appid: String { vectors["appid"] as! String }
    static var urlpath: String { vectors["urlpath"] as! String }

    static func bytes(_ base64: Any?) -> [UInt8] { Array(Data(base64Encoded: base64 as! String)!) }

    static func keys(certificates: [String: String]? = nil) throws -> APISecurityKeys {
        let file: [String: Any] = [
            appid: [
                "symmetricKey": vectors["sym_key"]!, "symmetricKeySn": vectors["sym_sn"]!, "privateKey": vectors["private_key"]!,
                "privateKeySn": vectors["asym_sn"]!,
                "platformCertificates": certificates ?? [vectors["cert_sn"] as! String: vectors["certificate"] as! String],
            ]
        ]
        return try #require(try APISecurityFile.parse(JSONSerialization.data(withJSONObject: file), source: "test")[appid])
    }

    /// The example's answer headers, as a lookup.
    static func answerHeaders(_ changes: [String: String?] = [:]) -> (String) -> String? {
        var headers: [String: String] = [
            "wechatmp-appid": appid, "wechatmp-timestamp": String(response["timestamp"] as! Int),
            "wechatmp-serial": vectors["cert_sn"] as! String, "wechatmp-signature": response["signature"] as! String,
            "wechatmp-serial-deprecated": response["serial_deprecated"] as! String,
            "wechatmp-signature-deprecated": response["signature_deprecated"] as! String,
        ]
        for (name, value) in changes { headers[name.lowercased()] = value }
        return { headers[$0.lowercased()] }
    }

    static var answerBody: [UInt8] {
        SealedCall.envelope(iv: bytes(response["iv"]), data: bytes(response["data"]), tag: bytes(response["authtag"]))
    }
    static var answerTime: Int64 { Int64(response["timestamp"] as! Int) }

    @Test("the request: plaintext, AAD, ciphertext, tag, body and its length exactly as the guide's")
    func requestKnownAnswer() throws {
        let call = SealedCall(keys: try Self.keys())
        let request = Self.request
        let params = request["params"] as! [String: Any]
        let parameters: [(String, SealedParameter)] = [
            ("appid", .string(params["appid"] as! String)), ("openid", .string(params["openid"] as! String)),
            ("scene", .integer(Int64(params["scene"] as! Int))), ("client_ip", .string(params["client_ip"] as! String)),
        ]
        let timestamp = Int64(request["timestamp"] as! Int)
        let nonce = request["nonce"] as! String
        #expect(
            String(decoding: call.plaintext(nonce: nonce, timestamp: timestamp, parameters: parameters), as: UTF8.self) == request[
                "plaintext"] as! String)
        #expect(String(decoding: call.aad(urlpath: Self.urlpath, timestamp: timestamp), as: UTF8.self) == request["aad"] as! String)
        let sealed = call.seal(
            urlpath: Self.urlpath, timestamp: timestamp, parameters: parameters, nonce: nonce, iv: Self.bytes(request["iv"]))
        let envelope = try #require(try JSONSerialization.jsonObject(with: Data(sealed.body)) as? [String: String])
        #expect(envelope["data"] == request["data"] as? String, "ciphertext")
        #expect(envelope["authtag"] == request["authtag"] as? String, "tag")
        #expect(envelope["iv"] == request["iv"] as? String)
        #expect(sealed.body.count == request["body_len"] as! Int)
        #expect(String(decoding: sealed.body, as: UTF8.self).hasPrefix(#"{"iv":""#), "the body's order is iv, data, authtag")
        let headers = Dictionary(uniqueKeysWithValues: sealed.headers.map { ($0.name, $0.value) })
        #expect(headers["Wechatmp-Appid"] == Self.appid && headers["Wechatmp-TimeStamp"] == String(timestamp))
        #expect(headers["Wechatmp-Serial"] == Self.vectors["asym_sn"] as? String)
        // PSS is randomized: our signature differs from the guide's, yet both verify under the key.
        let publicKey = try RSAPrivateKey(pem: Self.vectors["private_key"] as! String).publicKey
        let signing = SealedCall.signingString(urlpath: Self.urlpath, appid: Self.appid, timestamp: timestamp, body: sealed.body)
        let ours = Self.bytes(headers["Wechatmp-Signature"])
        #expect(publicKey.verifyPSS(ours, of: signing), "our signature verifies")
        #expect(
            publicKey.verifyPSS(Self.bytes(request["signature"]), of: signing), "the guide's signature verifies over our signing string")
        #expect(ours != Self.bytes(request["signature"]), "PSS salts are random")
        // A fifth line (WxJava's 40234 bug) breaks it.
        #expect(!publicKey.verifyPSS(Self.bytes(request["signature"]), of: signing + Array("\n".utf8)))
    }

    @Test("the answer: the guide's is verified with its certificate and decrypted to its plaintext")
    func answerKnownAnswer() throws {
        let call = SealedCall(keys: try Self.keys())
        let signing = SealedCall.signingString(urlpath: Self.urlpath, appid: Self.appid, timestamp: Self.answerTime, body: Self.answerBody)
        #expect(Self.answerBody.count == Self.response["body_len"] as! Int)
        let digest = SHA256Digest.hash(signing).map { String(format: "%02x", $0) }.joined()
        #expect(digest == Self.response["sha256_signing_string"] as? String)
        let opened = call.open(urlpath: Self.urlpath, header: Self.answerHeaders(), body: Self.answerBody, now: Self.answerTime + 10)
        #expect(opened == .verified(plaintext: Array((Self.response["plaintext"] as! String).utf8), deprecatedSerial: nil))
    }

    @Test("an answer failing any check is refused, each for its reason")
    func answerRejections() throws {
        let call = SealedCall(keys: try Self.keys())
        let now = Self.answerTime
        func open(_ changes: [String: String?] = [:], body: [UInt8] = Self.answerBody, at time: Int64 = now) -> OpenedAnswer {
            call.open(urlpath: Self.urlpath, header: Self.answerHeaders(changes), body: body, now: time)
        }
        #expect(open(at: now + 301) == .rejected(.stale))
        #expect(open(at: now - 301) == .rejected(.stale))
        #expect(open(["Wechatmp-TimeStamp": nil]) == .rejected(.stale))
        #expect(open(["Wechatmp-Appid": "wx0000000000000000"]) == .rejected(.wrongAppid))
        #expect(open(["Wechatmp-TimeStamp": String(now + 1)], at: now) == .rejected(.badSignature))
        #expect(open(["Wechatmp-Serial": "nope", "Wechatmp-Serial-Deprecated": "nope"]) == .rejected(.unknownCertificate))
        #expect(open(["Wechatmp-Signature": nil]) == .rejected(.unsigned))
        var changed = Self.answerBody
        changed[20] ^= 1
        #expect(open(body: changed) == .rejected(.badSignature))
        // Another URL path (an answer replayed from another endpoint).
        #expect(
            call.open(urlpath: "https://api.weixin.qq.com/wxa/other", header: Self.answerHeaders(), body: Self.answerBody, now: now)
                == .rejected(.badSignature))
        // Unsigned gateway errors are told apart from unsigned data.
        let gateway = Array(#"{"errcode":40234,"errmsg":"invalid signature"}"#.utf8)
        #expect(open(["Wechatmp-Signature": nil], body: gateway) == .gatewayError(errcode: 40234))
        let unsignedPhone = Array(#"{"errcode":0,"errmsg":"ok","phone_info":{}}"#.utf8)
        #expect(open(["Wechatmp-Signature": nil], body: unsignedPhone) == .rejected(.unsigned))
    }

    @Test("certificate rotation: only the old certificate configured, the deprecated signature is used and named")
    func rotation() throws {
        // Our own platform key pair: the guide's deprecated certificate is not published.
        let oldPlatform = RSAPrivateKey.generate()
        let newPlatform = RSAPrivateKey.generate()
        let oldPEM = RSAPublicKey.selfSignedCertificate(oldPlatform, commonName: "old", serial: 1, days: 1)
        let call = SealedCall(keys: try Self.keys(certificates: ["OLD": oldPEM]))
        let body = Self.answerBody
        let signing = SealedCall.signingString(urlpath: Self.urlpath, appid: Self.appid, timestamp: Self.answerTime, body: body)
        let headers = Self.answerHeaders([
            "Wechatmp-Serial": "NEW", "Wechatmp-Signature": Base64Encoding.encode(newPlatform.signPSS(signing)),
            "Wechatmp-Serial-Deprecated": "OLD", "Wechatmp-Signature-Deprecated": Base64Encoding.encode(oldPlatform.signPSS(signing)),
        ])
        let opened = call.open(urlpath: Self.urlpath, header: headers, body: body, now: Self.answerTime)
        #expect(opened == .verified(plaintext: Array((Self.response["plaintext"] as! String).utf8), deprecatedSerial: "OLD"))
        // A forged deprecated signature is still refused.
        let forged = Self.answerHeaders([
            "Wechatmp-Serial": "NEW", "Wechatmp-Serial-Deprecated": "OLD",
            "Wechatmp-Signature-Deprecated": Base64Encoding.encode(newPlatform.signPSS(signing)),
        ])
        #expect(call.open(urlpath: Self.urlpath, header: forged, body: body, now: Self.answerTime) == .rejected(.badSignature))
    }

    @Test("a sealed answer with any one byte of its body changed is refused, never used")
    func everyByteMatters() throws {
        let platform = RSAPrivateKey.generate()
        let call = SealedCall(
            keys: try Self.keys(certificates: ["P": RSAPublicKey.selfSignedCertificate(platform, commonName: "p", serial: 2, days: 1)]))
        let timestamp: Int64 = 1_700_000_000
        let plaintext = call.plaintext(nonce: "bm9uY2Vub25jZW5vbmNl", timestamp: timestamp, parameters: [("errcode", .integer(0))])
        let iv = [UInt8](repeating: 7, count: 12)
        let sealed = try #require(
            EVPAES256GCM.seal(
                key: call.keys.symmetricKey, iv: iv, aad: call.aad(urlpath: Self.urlpath, timestamp: timestamp), plaintext: plaintext))
        let body = SealedCall.envelope(iv: iv, data: sealed.ciphertext, tag: sealed.tag)
        func headers(for body: [UInt8]) -> (String) -> String? {
            let signature = Base64Encoding.encode(
                platform.signPSS(SealedCall.signingString(urlpath: Self.urlpath, appid: Self.appid, timestamp: timestamp, body: body)))
            let map = [
                "wechatmp-appid": Self.appid, "wechatmp-timestamp": String(timestamp), "wechatmp-serial": "P",
                "wechatmp-signature": signature,
            ]
            return { map[$0.lowercased()] }
        }
        let genuine = headers(for: body)
        #expect(
            call.open(urlpath: Self.urlpath, header: genuine, body: body, now: timestamp)
                == .verified(plaintext: plaintext, deprecatedSerial: nil))
        for index in body.indices {
            var changed = body
            changed[index] ^= 0x01
            // With the genuine signature: the signature check refuses it.
            if case .verified = call.open(urlpath: Self.urlpath, header: genuine, body: changed, now: timestamp) {
                Issue.record("byte \(index) changed, and the answer was used")
            }
        }
        // Re-signed by the platform after the change (a signature cannot be forged, but GCM must hold on its own).
        var data = sealed.ciphertext
        data[0] ^= 1
        let tampered = SealedCall.envelope(iv: iv, data: data, tag: sealed.tag)
        #expect(
            call.open(urlpath: Self.urlpath, header: headers(for: tampered), body: tampered, now: timestamp) == .rejected(.undecryptable))
        // Sealed for another appid inside: the stamp check refuses it.
        let other = try #require(
            EVPAES256GCM.seal(
                key: call.keys.symmetricKey, iv: iv, aad: call.aad(urlpath: Self.urlpath, timestamp: timestamp),
                plaintext: Array(#"{"_n":"x","_appid":"wxother","_timestamp":1700000000,"errcode":0}"#.utf8)))
        let otherBody = SealedCall.envelope(iv: iv, data: other.ciphertext, tag: other.tag)
        #expect(
            call.open(urlpath: Self.urlpath, header: headers(for: otherBody), body: otherBody, now: timestamp) == .rejected(.innerMismatch))
    }

    @Test("the key file: loaded from disk; readable by group or others, it loads with a warning to chmod 600")
    func keyFilePermissions() throws {
        let entry: [String: Any] = [
            Self.appid: [
                "symmetricKey": Self.vectors["sym_key"]!, "symmetricKeySn": "S", "privateKey": Self.vectors["private_key"]!,
                "privateKeySn": "P", "platformCertificates": ["C": Self.vectors["certificate"]!],
            ]
        ]
        let path = NSTemporaryDirectory() + "decryptd-keys-\(UUID().uuidString).json"
        try JSONSerialization.data(withJSONObject: entry).write(to: URL(fileURLWithPath: path))
        defer { try? FileManager.default.removeItem(atPath: path) }
        chmod(path, 0o600)
        let private600 = try APISecurityFile.load(path: path)
        #expect(private600.warning == nil && private600.keys[Self.appid]?.privateKeySn == "P")
        chmod(path, 0o644)
        let open644 = try APISecurityFile.load(path: path)
        #expect(open644.keys.count == 1)
        #expect(open644.warning?.contains("chmod 600") == true && open644.warning?.contains("644") == true, "\(open644.warning ?? "")")
        #expect(!String(describing: open644.keys[Self.appid]!).contains("MII"), "a key's description names numbers only")
    }

    @Test("the key file: each bad entry is refused naming the appid and the field, never the key")
    func keyFileErrors() throws {
        let good: [String: Any] = [
            "symmetricKey": Self.vectors["sym_key"]!, "symmetricKeySn": "S", "privateKey": Self.vectors["private_key"]!,
            "privateKeySn": "P",
            "platformCertificates": ["C": Self.vectors["certificate"]!],
        ]
        func refusal(_ change: (inout [String: Any]) -> Void) -> String? {
            var entry = good
            change(&entry)
            do {
                _ = try APISecurityFile.parse(JSONSerialization.data(withJSONObject: ["wxA": entry]), source: "f")
                return nil
            } catch {
                return String(describing: error)
            }
        }
        #expect(refusal { _ in } == nil)
        #expect(
            refusal { $0["symmetricKey"] = Base64Encoding.encode([UInt8](repeating: 1, count: 16)) }
                == "f: appid wxA: symmetricKey is 16 bytes, not 32 (AES-256)")
        #expect(refusal { $0["symmetricKey"] = "not base64!" } == "f: appid wxA: symmetricKey is not base64")
        #expect(
            refusal { $0["privateKey"] = Self.vectors["certificate"]! }
                == "f: appid wxA: privateKey is not a PEM private key (PKCS#8 or PKCS#1)")
        #expect(
            refusal { $0["platformCertificates"] = ["C": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----"] }
                == "f: appid wxA: platformCertificates C is not a PEM X.509 certificate")
        #expect(refusal { $0["privateKeySn"] = nil } == "f: appid wxA: privateKeySn is missing or not a non-empty string")
        // PKCS#8 is read as well as PKCS#1.
        let pkcs8 = try RSAPrivateKey(pem: Self.vectors["private_key"] as! String).pem
        #expect(pkcs8.hasPrefix("-----BEGIN PRIVATE KEY-----"))
        #expect(refusal { $0["privateKey"] = pkcs8 } == nil)
        for text in [refusal { $0["symmetricKey"] = "short" }, refusal { $0["privateKey"] = "x" }] {
            #expect(!(text ?? "").contains(Self.vectors["sym_key"] as! String) && !(text ?? "").contains("MII"))
        }
    }
}
