import PhoneDecryption
import Testing

@Suite("Job messages")
struct DecryptJobTests {
    func parse(_ text: String) -> Result<DecryptJob, DecryptFailure> { DecryptJob.parse(Array(text.utf8)) }

    @Test("a job with optional fields, unknown fields and null optionals")
    func valid() throws {
        let job = try parse(#"{"openid":"o1","encryptedData":"AAAA","iv":"BBBB","appid":"wx1","requestId":"r-1","future":{"x":[1]}}"#).get()
        #expect(job == DecryptJob(openid: "o1", encryptedData: "AAAA", iv: "BBBB", appid: "wx1", requestId: "r-1"))
        let minimal = try parse(#"{"iv":"BBBB","openid":"o\u00e9","encryptedData":"AAAA","appid":null}"#).get()
        #expect(minimal.openid == "oé")
        #expect(minimal.appid == nil)
    }

    @Test(
        "anything else is malformed_job",
        arguments: [
            "", "null", "[]", "\"job\"", #"{"openid":"o1","encryptedData":"AAAA"}"#,
            #"{"openid":1,"encryptedData":"AAAA","iv":"B"}"#, #"{"openid":null,"encryptedData":"AAAA","iv":"B"}"#,
            #"{"openid":"o","encryptedData":"AAAA","iv":"B","appid":7}"#,
            #"{"openid":"o","openid":"p","encryptedData":"AAAA","iv":"B"}"#,
            #"{"openid":"o","encryptedData":"AAAA","iv":"B"} {}"#, #"{"openid":"o\u0000","encryptedData":"AAAA","iv":"B"}"#,
            #"{"openid":"o","encryptedData":"AAAA","iv":"B","appid":"wx\u0000"}"#,
            "{\"openid\":\"o\u{0}\",\"encryptedData\":\"A\",\"iv\":\"B\"}",
        ])
    func malformed(_ text: String) {
        #expect(parse(text).failureReason == .malformedJob)
    }

    @Test(
        "the detail names the member at fault and quotes no content",
        arguments: [
            (#"{"openid":"o","encryptedData":"AAAA"}"#, "job has no iv"),
            (#"{"iv":"B","encryptedData":"AAAA"}"#, "job has no openid"),
            (#"{"openid":"o","iv":"B"}"#, "job has no encryptedData or code"),
            (#"{"openid":"o","code":"c1","encryptedData":"AAAA","iv":"B"}"#, "job has both code and encryptedData"),
            (#"{"openid":"o","code":""}"#, "job field code is empty"),
            (#"{"openid":"o","code":"c\u0000"}"#, "job field code contains a NUL character"),
            (#"{"openid":"o","code":7}"#, "job field code is not a string"),
            (#"{"openid":"o","code":"a","code":"b"}"#, "job has code twice"),
            (#"{"openid":"o","encryptedData":"AAAA","iv":"B","iv":"C"}"#, "job has iv twice"),
            (#"{"openid":"o","encryptedData":"AAAA","iv":"B","requestId":"r","requestId":null}"#, "job has requestId twice"),
            (#"{"openid":"o","encryptedData":["AAAA"],"iv":"B"}"#, "job field encryptedData is not a string"),
            (#"{"openid":"o","encryptedData":"AAAA","iv":null}"#, "job field iv is not a string"),
            (#"{"openid":"o\u0000x","encryptedData":"AAAA","iv":"B"}"#, "job field openid contains a NUL character"),
            (#"{"openid":"o","encryptedData":"AAAA","iv":"B","appid":"wx\u0000"}"#, "job field appid contains a NUL character"),
        ])
    func details(_ text: String, _ detail: String) {
        guard case .failure(let failure) = parse(text) else {
            Issue.record("parsed: \(text)")
            return
        }
        #expect(failure.reason == .malformedJob)
        #expect(failure.detail == detail)
    }

    @Test("a code job: openid and code, the optional fields, unknown fields ignored")
    func codeJob() throws {
        let job = try parse(#"{"openid":"o1","code":"0-abc-1-\/x","appid":"wx1","requestId":null,"iv":"ignored","x":[1]}"#).get()
        #expect(job == DecryptJob(openid: "o1", code: "0-abc-1-/x", appid: "wx1"))
        #expect(job.kind == .code)
        #expect(try parse(#"{"openid":"o1","encryptedData":"A","iv":"B"}"#).get().kind == .encrypted)
        let long = String(repeating: "c", count: DecryptJob.maximumCodeLength + 1)
        #expect(parse(#"{"openid":"o1","code":"\#(long)"}"#).failureReason == .malformedJob)
        #expect(try parse(#"{"openid":"o1","code":"\#(long.dropLast())"}"#).get().kind == .code)
    }

    @Test("the code length limit counts the code, not its escaped form: the same code escaped is the same job")
    func escapedCodeLength() throws {
        let longest = String(repeating: "c", count: DecryptJob.maximumCodeLength)
        let escaped = String(repeating: #"\u0063"#, count: DecryptJob.maximumCodeLength)
        #expect(try parse(#"{"openid":"o1","code":"\#(escaped)"}"#).get() == DecryptJob(openid: "o1", code: longest))
        #expect(parse(#"{"openid":"o1","code":"\#(escaped)\u0063"}"#).failureReason == .malformedJob)
    }

    @Test("member names and values are compared and taken after unescaping")
    func escapedNames() throws {
        let job = try parse(#"{"open\u0069d":"o\/1","encryptedData":"AA\/A","\u0069v":"B","requestId":"r\u0000"}"#).get()
        #expect(job == DecryptJob(openid: "o/1", encryptedData: "AA/A", iv: "B", requestId: "r\u{0}"))
    }

    @Test("random bytes are malformed_job")
    func randomBytes() {
        #expect(DecryptJob.parse([0xFF, 0x00, 0x7B]).failureReason == .malformedJob)
    }
}

@Suite("decrypt tool lines")
struct DecryptRequestTests {
    func line(_ text: String, defaultAppid: String? = nil) -> String {
        var text = text
        return text.withUTF8 { PhoneDecryptor().outputLine(for: DecryptRequest.parse($0, defaultAppid: defaultAppid)) }
    }

    @Test("session_keys list, default appid, and key index in the output")
    func sessionKeys() {
        var factory = PayloadFactory()
        let (stale, key) = (factory.key(), factory.key())
        let payload = factory.payload(key: key, phone: "13700001111")
        let output = line(
            #"{"session_keys":["\#(Base64Encoding.encode(stale))","\#(Base64Encoding.encode(key))"],"iv":"\#(payload.iv)","encryptedData":"\#(payload.encryptedData)"}"#,
            defaultAppid: PayloadFactory.appid
        )
        #expect(
            output
                == #"{"ok":true,"phoneNumber":"13700001111","purePhoneNumber":"13700001111","countryCode":"86","watermarkTimestamp":1700000000,"keyIndex":1,"repaired":false}"#
        )
    }

    @Test(
        "unusable lines are malformed_job, with a detail",
        arguments: [
            "not json", #"{"appid":"wx","iv":"a","encryptedData":"b"}"#, #"{"appid":"wx","session_key":"k","encryptedData":"b"}"#,
            #"{"appid":"wx","session_key":"k","session_keys":["k"],"iv":"a","encryptedData":"b"}"#,
            #"{"session_key":"k","iv":"a","encryptedData":"b"}"#, #"{"appid":"wx","session_keys":"k","iv":"a","encryptedData":"b"}"#,
        ])
    func malformed(_ text: String) {
        #expect(line(text).hasPrefix(#"{"ok":false,"reason":"malformed_job","detail":""#))
    }

    @Test("an empty session_keys list means no session")
    func emptyKeys() {
        #expect(
            line(#"{"appid":"wx","session_keys":[],"iv":"AAAAAAAAAAAAAAAAAAAAAA==","encryptedData":"AAAAAAAAAAAAAAAAAAAAAA=="}"#)
                .hasPrefix(#"{"ok":false,"reason":"session_not_found""#))
    }
}
