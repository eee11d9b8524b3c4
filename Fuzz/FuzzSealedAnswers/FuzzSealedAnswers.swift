import Foundation
import FuzzDriver
import OpenSSLRSA
import PhoneDecryption
import WeChatAPISecurity

/// libFuzzer target: a body answering a sealed call (API security mode), opened with the genuine
/// headers of one known answer (WeChat's worked example, re-signed by a platform key made at start),
/// and the envelope and stamp parsers on their own.
/// Properties: an answer is used only when its body is the genuine one, byte for byte; a parsed
/// envelope has a 12-byte iv, a non-empty ciphertext and a 16-byte tag; nothing crashes.
enum Fixture {
    static let appid = "wxba6223c06417af7b"
    static let urlpath = "https://api.weixin.qq.com/wxa/getuserriskrank"
    static let timestamp: Int64 = 1_635_927_956
    static let platform = RSAPrivateKey.generate()
    static let genuine = SealedCall.envelope(
        iv: decode("r2WDQt56rEAmMuoR"),
        data: decode(
            "HExs66Ik3el+iM4IpeQ7SMEN934FRLFYOd3EmeaIrpP4EPTHckoco6O+PaoRZRa3lqaPRZT7r52f7LUok6gLxc6cdR8C4vpIIfh4xfLC4L7FNy9GbuMK1hcoi8b7gkWJcwZMkuCFNEDmqn3T49oWzAQOrY4LZnnnykv6oUJotdAsnKvmoJkLK7hRh7M2B1d2UnTnRuoIyarXc5Iojwoghx4BOvnV"
        ),
        tag: decode("z2BFD8QctKXTuBlhICGOjQ=="))
    static let call = SealedCall(
        keys: APISecurityKeys(
            appid: appid, symmetricKey: decode("otUpngOjU+nVQaWJIC3D/yMLV17RKaP6t4Ot9tbnzLY="),
            symmetricKeySn: "fa05fe1e5bcc79b81ad5ad4b58acf787", privateKey: platform, privateKeySn: "app",
            platformCertificates: ["P": platform.publicKey]))
    static let headers: [String: String] = [
        "wechatmp-appid": appid, "wechatmp-timestamp": String(timestamp), "wechatmp-serial": "P",
        "wechatmp-signature": Base64Encoding.encode(
            platform.signPSS(SealedCall.signingString(urlpath: urlpath, appid: appid, timestamp: timestamp, body: genuine))),
    ]

    static func decode(_ text: String) -> [UInt8] {
        guard let decoded = LenientBase64.decodeStrictly(text) else { fatalError("fixture base64") }
        return decoded
    }
}

func fuzzSealedAnswers(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data else { return 0 }
    let body = Array(UnsafeBufferPointer(start: data, count: size))
    let opened = Fixture.call.open(
        urlpath: Fixture.urlpath, header: { Fixture.headers[$0.lowercased()] }, body: body, now: Fixture.timestamp)
    if case .verified = opened {
        precondition(body == Fixture.genuine, "an answer that is not the genuine one was used")
    }
    if case .sealed(let iv, let ciphertext, let tag) = SealedEnvelope.parse(body) {
        precondition(iv.count == 12 && !ciphertext.isEmpty && tag.count == 16, "an envelope of the wrong shape")
    }
    if case .stamp(let appid, let timestamp) = SealedEnvelope.stamp(body) {
        precondition(timestamp >= 0 && appid.utf8.count <= size, "a stamp not from its input")
    }
    return 0
}

// Checked once: the genuine answer opens (or the target would prove nothing).
guard
    case .verified = Fixture.call.open(
        urlpath: Fixture.urlpath, header: { Fixture.headers[$0.lowercased()] }, body: Fixture.genuine, now: Fixture.timestamp)
else { fatalError("the fixture's genuine answer does not open") }

// The entry point (SwiftPM names it FuzzSealedAnswers_main): libFuzzer runs the target from here.
exit(runFuzzer(CommandLine.argc, CommandLine.unsafeArgv) { data, size in fuzzSealedAnswers(data, size) })
