import PhoneDecryption
import Testing

@Suite("WeChat's answers")
struct WeChatAnswerTests {
    let appid = "wx6ede2086ee29a89f"

    func phone(_ text: String) -> PhoneNumberAnswer {
        Array(text.utf8).withUnsafeBufferPointer { PhoneNumberAnswer.parse($0, expectedAppid: appid) }
    }

    func token(_ text: String) -> StableTokenAnswer {
        Array(text.utf8).withUnsafeBufferPointer { StableTokenAnswer.parse($0) }
    }

    @Test("a phone_info answer, countryCode as a string or a number")
    func phoneInfo() {
        let info =
            #"{"phoneNumber":"+86 13800138000","purePhoneNumber":"13800138000","countryCode":COUNTRY,"watermark":{"timestamp":1700000000,"appid":"wx6ede2086ee29a89f"}}"#
        for country in [#""86""#, "86"] {
            let answer = phone(#"{"errcode":0,"errmsg":"ok","phone_info":"# + info.replacingOccurrences(of: "COUNTRY", with: country) + "}")
            #expect(
                answer
                    == .phone(
                        PhonePayload(
                            phoneNumber: "+86 13800138000", purePhoneNumber: "13800138000", countryCode: "86",
                            watermarkTimestamp: 1_700_000_000)))
        }
        // errcode absent counts as 0; unknown members are ignored.
        let bare = phone(#"{"phone_info":"# + info.replacingOccurrences(of: "COUNTRY", with: "86") + #","x":[1,{"y":null}]}"#)
        #expect(
            bare
                == .phone(
                    PhonePayload(
                        phoneNumber: "+86 13800138000", purePhoneNumber: "13800138000", countryCode: "86", watermarkTimestamp: 1_700_000_000
                    )))
    }

    @Test(
        "phone_info is checked like a plaintext",
        arguments: [
            (#"{"errcode":0,"errmsg":"ok"}"#, PhoneNumberAnswer.invalidPhoneInfo("answer has no phone_info")),
            (#"{"errcode":0,"phone_info":null}"#, .invalidPhoneInfo("phone_info is not an object")),
            (
                #"{"errcode":0,"phone_info":{"purePhoneNumber":"1","countryCode":"86","watermark":{"timestamp":1,"appid":"wx6ede2086ee29a89f"}}}"#,
                .invalidPhoneInfo("phone_info: missing or empty phoneNumber")
            ),
            (
                #"{"errcode":0,"phone_info":{"phoneNumber":"1","purePhoneNumber":"1","countryCode":"86","watermark":{"timestamp":1,"appid":"wxother"}}}"#,
                .appidMismatch
            ),
            (
                #"{"errcode":0,"phone_info":{"phoneNumber":"1","purePhoneNumber":"1","countryCode":"86"}}"#,
                .invalidPhoneInfo("phone_info: missing watermark")
            ),
        ])
    func badPhoneInfo(_ text: String, _ expected: PhoneNumberAnswer) {
        #expect(phone(text) == expected)
    }

    @Test("errcodes, and answers that are not WeChat's")
    func errors() {
        #expect(phone(#"{"errcode":40029,"errmsg":"invalid code, rid: 1"}"#) == .error(errcode: 40029))
        #expect(phone(#"{"errcode":-1,"errmsg":"system error"}"#) == .error(errcode: -1))
        // A non-zero errcode wins over a phone_info.
        #expect(phone(#"{"errcode":45011,"phone_info":{}}"#) == .error(errcode: 45011))
        for text in [
            "", "<html>502 Bad Gateway</html>", "[]", #"{"errcode":"0"}"#, #"{"errcode":1.5}"#, #"{"errcode":0,"errcode":0}"#,
            #"{"errcode":0} x"#,
        ] {
            guard case .unreadable = phone(text) else {
                Issue.record("read as an answer: \(text)")
                continue
            }
        }
    }

    @Test("stable tokens")
    func stableTokens() {
        #expect(token(#"{"access_token":"ACCESS_TOKEN-x.y_z~1","expires_in":7200}"#) == .token("ACCESS_TOKEN-x.y_z~1", expiresIn: 7200))
        #expect(token(#"{"errcode":40125,"errmsg":"invalid appsecret"}"#) == .error(errcode: 40125))
        // Any printable ASCII is a token (base64 ones, say); it is percent-encoded into the query.
        #expect(token(#"{"access_token":"a+b/c=","expires_in":7200}"#) == .token("a+b/c=", expiresIn: 7200))
        #expect(StableTokenAnswer.queryValue("a+b/c=&d_-.~9") == "a%2Bb%2Fc%3D%26d_-.~9")
        for text in [
            #"{"access_token":"a b","expires_in":7200}"#, #"{"access_token":"a\u00e9","expires_in":7200}"#,
            #"{"access_token":"","expires_in":7200}"#,
            #"{"access_token":"t","expires_in":0}"#, #"{"access_token":"t"}"#, #"{"expires_in":10}"#,
            #"{"access_token":7,"expires_in":10}"#, "nope",
        ] {
            guard case .unreadable = token(text) else {
                Issue.record("read as a token: \(text)")
                continue
            }
        }
    }

    @Test("random bytes never crash a parser and give one of its cases")
    func noise() {
        var generator = SystemRandomNumberGenerator()
        let seeds = [
            #"{"errcode":0,"phone_info":{"phoneNumber":"1","purePhoneNumber":"1","countryCode":86,"watermark":{"timestamp":1,"appid":"wx6ede2086ee29a89f"}}}"#,
            #"{"access_token":"abc","expires_in":7200}"#,
        ].map { Array($0.utf8) }
        for iteration in 0..<20_000 {
            var bytes = seeds[iteration % 2]
            for _ in 0..<Int.random(in: 1...4, using: &generator) {
                let index = Int.random(in: 0..<bytes.count, using: &generator)
                bytes[index] = UInt8.random(in: 0...255, using: &generator)
            }
            let answer = bytes.withUnsafeBufferPointer { PhoneNumberAnswer.parse($0, expectedAppid: appid) }
            if case .phone(let payload) = answer { #expect(!payload.phoneNumber.isEmpty) }
            _ = bytes.withUnsafeBufferPointer { StableTokenAnswer.parse($0) }
        }
    }
}
