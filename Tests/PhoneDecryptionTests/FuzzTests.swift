import DecryptdTestSupport
import Foundation
import PhoneDecryption
import SyntheticLoad
import Testing

/// Random and mutated inputs through every parser and the core: no crash, no hang, and every
/// result is a value or a documented code. Seeds are fixed so a failure reproduces; scale with
/// DECRYPTD_FUZZ_SCALE (default 1 = a little over a million inputs in all).
@Suite("Fuzz and properties", .ownThread(minutes: 10))
struct FuzzTests {
    static let scale = Int(ProcessInfo.processInfo.environment["DECRYPTD_FUZZ_SCALE"] ?? "") ?? 1
    static let interesting: [UInt8] =
        Array(#"{}[],:"\ 0123456789eE.-+utrfnl/_="#.utf8) + [0x00, 0x0A, 0x1F, 0x7F, 0x80, 0xBF, 0xC3, 0xE0, 0xED, 0xF4, 0xFF]

    static func mutate(_ input: [UInt8], using generator: inout SplitMix64) -> [UInt8] {
        var bytes = input
        for _ in 0..<Int.random(in: 1...4, using: &generator) {
            let position = bytes.isEmpty ? 0 : Int.random(in: 0..<bytes.count, using: &generator)
            switch Int.random(in: 0..<7, using: &generator) {
            case 0 where !bytes.isEmpty: bytes[position] ^= 1 << UInt8.random(in: 0..<8, using: &generator)
            case 1 where !bytes.isEmpty: bytes[position] = interesting.randomElement(using: &generator)!
            case 2: bytes.insert(interesting.randomElement(using: &generator)!, at: position)
            case 3 where !bytes.isEmpty: bytes.remove(at: position)
            case 4 where !bytes.isEmpty:
                let end = min(bytes.count, position + Int.random(in: 1...12, using: &generator))
                bytes.insert(contentsOf: bytes[position..<end], at: Int.random(in: 0...bytes.count, using: &generator))
            case 5: bytes = Array(bytes.prefix(position))
            default: bytes.insert(UInt8.random(in: 0...255, using: &generator), at: position)
            }
        }
        return bytes
    }

    @Test("200k mutated WeChat answers: a phone_info or token that round-trips, or one of the parsers' cases")
    func wechatAnswers() throws {
        var generator = SplitMix64(seed: 3)
        let appid = "wx6ede2086ee29a89f"
        let seeds = [
            #"{"errcode":0,"errmsg":"ok","phone_info":{"phoneNumber":"+86 13800138000","purePhoneNumber":"13800138000","countryCode":"86","watermark":{"timestamp":1700000000,"appid":"wx6ede2086ee29a89f"}}}"#,
            #"{"phone_info":{"phoneNumber":"1","purePhoneNumber":"1","countryCode":86,"watermark":{"appid":"wx6ede2086ee29a89f","timestamp":0}},"errcode":0}"#,
            #"{"errcode":40029,"errmsg":"invalid code, rid: 6560e4b6-0f4a1a63-1b1e3d4c"}"#,
            #"{"access_token":"ACCESS_TOKEN-abc_123","expires_in":7200}"#,
        ].map { Array($0.utf8) }
        var phones = 0
        var tokens = 0
        for iteration in 0..<(200_000 * Self.scale) {
            let input = Self.mutate(seeds[iteration % seeds.count], using: &generator)
            let answer = input.withUnsafeBufferPointer { PhoneNumberAnswer.parse($0, expectedAppid: appid) }
            if case .phone(let payload) = answer {
                phones += 1
                var writer = JSONWriter()
                writer.beginObject()
                writer.key("phone_info")
                writer.beginObject()
                writer.field("phoneNumber", payload.phoneNumber)
                writer.field("purePhoneNumber", payload.purePhoneNumber)
                writer.field("countryCode", payload.countryCode)
                writer.key("watermark")
                writer.beginObject()
                writer.field("timestamp", payload.watermarkTimestamp)
                writer.field("appid", appid)
                writer.endObject()
                writer.endObject()
                writer.endObject()
                let again = Array(writer.text.utf8).withUnsafeBufferPointer { PhoneNumberAnswer.parse($0, expectedAppid: appid) }
                #expect(again == answer, "a phone_info re-encoded parses to the same number")
                #expect(!payload.phoneNumber.isEmpty && !payload.purePhoneNumber.isEmpty)
            }
            if case .token(let token, let expiresIn) = input.withUnsafeBufferPointer({ StableTokenAnswer.parse($0) }) {
                tokens += 1
                #expect(expiresIn > 0 && !token.isEmpty && token.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F })
                var writer = JSONWriter()
                writer.beginObject()
                writer.field("access_token", token)
                writer.field("expires_in", expiresIn)
                writer.endObject()
                let again = Array(writer.text.utf8).withUnsafeBufferPointer { StableTokenAnswer.parse($0) }
                #expect(again == .token(token, expiresIn: expiresIn))
            }
        }
        #expect(phones > 1000 && tokens > 1000)  // the mutator must not only produce garbage
    }

    @Test("400k mutated job messages: a job that round-trips, or malformed_job")
    func jobs() throws {
        var generator = SplitMix64(seed: 1)
        let seeds = [
            #"{"openid":"oNzLenSwhQ5621p5e419ib-6VqeM","encryptedData":"GEIaxkQB+fxSmdQ58vDg==","iv":"KyqYXWRZWJrmHT5o6xN4FA==","appid":"wx6ede2086ee29a89f","requestId":"r-9","x":[1.5e3,true,null,{"y":"\u00e9"}]}"#,
            #"{"iv":"a","openid":"b","encryptedData":"c"}"#,
            #"{"openid":"oNzLenSwhQ5621p5e419ib-6VqeM","code":"0-smk2tc-1-0123456789abcdef","appid":"wx6ede2086ee29a89f"}"#,
        ].map { Array($0.utf8) }
        var accepted = 0
        for iteration in 0..<(400_000 * Self.scale) {
            let input = Self.mutate(seeds[iteration % seeds.count], using: &generator)
            switch DecryptJob.parse(input) {
            case .success(let job):
                accepted += 1
                #expect(try DecryptJob.parse(job.jsonValue).get() == job)
            case .failure(let failure):
                #expect(failure.reason == .malformedJob)
            }
        }
        #expect(accepted > 1000)  // the mutator must not only produce garbage
    }

    @Test("300k mutated plaintexts, really encrypted: a payload, invalid_plaintext or appid_mismatch")
    func plaintexts() {
        var generator = SplitMix64(seed: 2)
        let encryptor = PhoneEncryptor()
        let decryptor = PhoneDecryptor()
        let key = PhoneEncryptor.randomBlock(using: &generator)
        let keyText = Base64Encoding.encode(key)
        let appid = "wx6ede2086ee29a89f"
        let original = PhoneEncryptor.plaintext(
            phoneNumber: "+852 51234567", purePhoneNumber: "51234567", countryCode: "852", timestamp: 1_700_000_000, appid: appid
        )
        var outcomes: [String: Int] = [:]
        for _ in 0..<(300_000 * Self.scale) {
            let plaintext = Self.mutate(original, using: &generator)
            let payload = encryptor.encrypt(plaintext: plaintext, key: key, iv: PhoneEncryptor.randomBlock(using: &generator))
            switch decryptor.decrypt(appid: appid, sessionKeys: [keyText], iv: payload.iv, encryptedData: payload.encryptedData) {
            case .success(let phone):
                outcomes["ok", default: 0] += 1
                #expect(JSONScannerTests.accepts(plaintext))
                #expect(!phone.phoneNumber.isEmpty && !phone.purePhoneNumber.isEmpty)
            case .failure(let failure):
                outcomes[failure.reason.rawValue, default: 0] += 1
                #expect(failure.reason == .invalidPlaintext || failure.reason == .appidMismatch)
                #expect(!failure.detail.contains("51234567"))
            }
        }
        #expect(outcomes["ok", default: 0] > 1000)
        #expect(outcomes["invalid_plaintext", default: 0] > 1000)
        #expect(outcomes["appid_mismatch", default: 0] > 100)
    }

    @Test("200k damaged base64 fields: a payload equal to the original, or a code")
    func base64Fields() {
        var generator = SplitMix64(seed: 3)
        var factory = PayloadFactory(generator: SplitMix64(seed: 4))
        let key = factory.key()
        let payload = factory.payload(key: key, phone: "15213350586")
        let keyText = Base64Encoding.encode(key)
        let decryptor = PhoneDecryptor()
        let fields = [Array(payload.iv.utf8), Array(payload.encryptedData.utf8), Array(keyText.utf8)]
        var successes = 0
        for iteration in 0..<(200_000 * Self.scale) {
            var values = fields
            let target = iteration % 3
            values[target] = Self.mutate(values[target], using: &generator)
            let strings = values.map { String(decoding: $0, as: UTF8.self) }
            switch decryptor.decrypt(appid: PayloadFactory.appid, sessionKeys: [strings[2]], iv: strings[0], encryptedData: strings[1]) {
            case .success(let phone):
                successes += 1
                #expect(phone.phoneNumber == "15213350586")
            case .failure(let failure):
                #expect(failure.reason != .malformedJob && failure.reason != .sessionNotFound)
                #expect(!failure.detail.contains(keyText))
            }
        }
        #expect(successes > 100)  // repairs (spaces, '-', '_', CR/LF, padding) must keep working
    }

    @Test("150k random byte strings through the scanner, job parser and tool-line parser")
    func randomBytes() {
        var generator = SplitMix64(seed: 5)
        for _ in 0..<(150_000 * Self.scale) {
            let count = Int.random(in: 0..<64, using: &generator)
            let bytes = (0..<count).map { _ in
                Bool.random(using: &generator)
                    ? Self.interesting.randomElement(using: &generator)! : UInt8.random(in: 0...255, using: &generator)
            }
            _ = JSONScannerTests.accepts(bytes)
            #expect(DecryptJob.parse(bytes).failureReason == .malformedJob || bytes.contains(UInt8(ascii: "{")))
            let line = bytes.withUnsafeBufferPointer { DecryptRequest.parse($0, defaultAppid: "wx") }
            if case .failure(let failure) = line { #expect(failure.reason == .malformedJob) }
        }
    }
}
