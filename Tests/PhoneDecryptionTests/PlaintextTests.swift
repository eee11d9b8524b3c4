import PhoneDecryption
import Testing

/// Plaintext rules, exercised end to end: each plaintext is really encrypted, then decrypted.
@Suite("Plaintext verification")
struct PlaintextTests {
    static let watermark = #""watermark":{"timestamp":1700000000,"appid":"wx0123456789abcdef"}"#

    func outcome(_ plaintext: String) -> Result<PhonePayload, DecryptFailure> {
        var factory = PayloadFactory()
        let key = factory.key()
        let payload = factory.encrypt(plaintext, key: key)
        return PhoneDecryptor().decrypt(
            appid: PayloadFactory.appid, sessionKeys: [Base64Encoding.encode(key)],
            iv: payload.iv, encryptedData: payload.encryptedData
        )
    }

    @Test("countryCode as a number is kept as its text; escapes are decoded; extra members ignored")
    func accepted() throws {
        let payload = try outcome(
            #"{"phoneNumber":"\u002b86 13800138000","purePhoneNumber":"13800138000","countryCode":86,"#
                + #""extra":{"nested":[1,2,{"x":null}]},"# + Self.watermark + "}"
        ).get()
        #expect(payload.phoneNumber == "+86 13800138000")
        #expect(payload.countryCode == "86")
        #expect(payload.watermarkTimestamp == 1_700_000_000)
    }

    @Test(
        "rejected plaintexts are invalid_plaintext",
        arguments: [
            // a phone field twice: never guess which one is real
            #"{"phoneNumber":"1","phoneNumber":"2","purePhoneNumber":"1","countryCode":"86","# + watermark + "}",
            #"{"phoneNumber":13800138000,"purePhoneNumber":"1","countryCode":"86","# + watermark + "}",
            #"{"phoneNumber":"","purePhoneNumber":"1","countryCode":"86","# + watermark + "}",
            #"{"phoneNumber":"1","purePhoneNumber":"1","# + watermark + "}",
            #"{"phoneNumber":"1","purePhoneNumber":"1","countryCode":true,"# + watermark + "}",
            #"{"phoneNumber":"1","purePhoneNumber":"1","countryCode":"86"}"#,
            #"{"phoneNumber":"1","purePhoneNumber":"1","countryCode":"86","watermark":[]}"#,
            #"{"phoneNumber":"1","purePhoneNumber":"1","countryCode":"86","watermark":{"appid":"wx0123456789abcdef"}}"#,
            #"{"phoneNumber":"1","purePhoneNumber":"1","countryCode":"86","watermark":{"timestamp":1.5,"appid":"wx0123456789abcdef"}}"#,
            #"{"phoneNumber":"1","purePhoneNumber":"1","countryCode":"86","watermark":{"timestamp":-1,"appid":"wx0123456789abcdef"}}"#,
            #"{"phoneNumber":"1","purePhoneNumber":"1","countryCode":"86","watermark":{"timestamp":"1700000000","appid":"wx0123456789abcdef"}}"#,
            #"{"phoneNumber":"1","purePhoneNumber":"1","countryCode":"86","watermark":{"timestamp":99999999999999999999,"appid":"wx0123456789abcdef"}}"#,
            #"{"phoneNumber":"1","purePhoneNumber":"1","countryCode":"86","# + watermark + "} trailing",
            #"{"phoneNumber":"1","purePhoneNumber":"1","countryCode":"86","# + watermark + ",}",
            "[]", "null", "",
            // control characters in a stored field (a NUL would make PostgreSQL refuse the whole batch)
            #"{"phoneNumber":"138\u00000","purePhoneNumber":"1","countryCode":"86","# + watermark + "}",
            #"{"phoneNumber":"1","purePhoneNumber":"13\n8","countryCode":"86","# + watermark + "}",
            #"{"phoneNumber":"1","purePhoneNumber":"1","countryCode":"8\u007f6","# + watermark + "}",
            "{\"phoneNumber\":\"13\u{7F}8\",\"purePhoneNumber\":\"1\",\"countryCode\":\"86\"," + watermark + "}",  // raw DEL: legal JSON
        ])
    func rejected(_ plaintext: String) {
        #expect(outcome(plaintext).failureReason == .invalidPlaintext)
    }

    @Test("watermark appid must equal the expected one exactly")
    func appid() {
        let base = #"{"phoneNumber":"1","purePhoneNumber":"1","countryCode":"86","watermark":{"timestamp":1,"appid":"#
        #expect(outcome(base + #""wx0123456789abcdeF"}}"#).failureReason == .appidMismatch)
        #expect(outcome(base + #""wx0123456789abcdef "}}"#).failureReason == .appidMismatch)
        #expect(outcome(base + #""wx0123456789abcde\u0066"}}"#).failureReason == nil)
    }
}
