import Foundation
import FuzzDriver
import PhoneDecryption

/// libFuzzer target: a body as WeChat's phone-number, stable-token and checksession endpoints may answer.
/// Properties: a phone answer has a number and the expected watermark appid's payload; a token is
/// non-empty printable text with a positive lifetime, and percent-encodes to query-safe text.
func fuzzWeChatAnswers(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data else { return 0 }
    let body = UnsafeBufferPointer(start: data, count: size)
    if case .phone(let payload) = PhoneNumberAnswer.parse(body, expectedAppid: "wx6ede2086ee29a89f") {
        precondition(!payload.phoneNumber.isEmpty && !payload.purePhoneNumber.isEmpty, "a phone answer without a number")
    }
    if case .token(let token, let expiresIn) = StableTokenAnswer.parse(body) {
        precondition(!token.isEmpty && expiresIn > 0, "an empty token or a lifetime of \(expiresIn)")
        let query = StableTokenAnswer.queryValue(token)
        precondition(
            query.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: "&") && $0 != UInt8(ascii: "#") }, "unsafe query text")
    }
    // checksession's answer: 0 and 87009 only from an errcode of that value.
    switch CheckSessionAnswer.parse(body) {
    case .current: precondition(StableTokenAnswer.parse(body) != .error(errcode: 0), "errcode 0 is not an error")
    case .stale: precondition(StableTokenAnswer.parse(body) == .error(errcode: 87009), "stale without errcode 87009")
    case .error(let errcode): precondition(errcode != 0 && errcode != 87009, "errcode \(errcode) as another case")
    case .unreadable: break
    }
    return 0
}

// The entry point (SwiftPM names it FuzzWeChatAnswers_main): libFuzzer runs the target from here.
exit(runFuzzer(CommandLine.argc, CommandLine.unsafeArgv) { data, size in fuzzWeChatAnswers(data, size) })
