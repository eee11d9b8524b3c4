import DecryptdTestSupport
import PhoneDecryption
import Testing

@Suite("Known-answer vectors")
struct KnownAnswerTests {
    @Test("the vector file covers ok and every decryption failure code")
    func coverage() {
        let cases = VectorFile.loaded.cases
        #expect(cases.contains { $0.expect.ok != nil })
        let codes = Set(cases.compactMap(\.expect.error))
        let decryptionCodes: Set<String> = [
            "invalid_session_key", "invalid_iv", "invalid_ciphertext", "bad_padding", "invalid_plaintext", "appid_mismatch",
        ]
        #expect(decryptionCodes.isSubset(of: codes))
        #expect(codes.allSatisfy { FailureReason(rawValue: $0) != nil })
    }

    @Test("each vector decrypts to its expected outcome", arguments: VectorFile.loaded.cases)
    func vector(_ vector: VectorFile.Case) throws {
        let result = PhoneDecryptor().decrypt(
            appid: vector.appid, sessionKeys: [vector.sessionKey], iv: vector.iv, encryptedData: vector.encryptedData
        )
        if let ok = vector.expect.ok {
            let payload = try result.get()
            #expect(payload.phoneNumber == ok.phoneNumber)
            #expect(payload.purePhoneNumber == ok.purePhoneNumber)
            #expect(payload.countryCode == ok.countryCode)
            #expect(payload.watermarkTimestamp == ok.watermarkTimestamp)
            #expect(payload.keyIndex == 0)
            #expect(payload.repaired == vector.name.contains("lenient"))
        } else {
            guard case .failure(let failure) = result else {
                Issue.record("expected \(vector.expect.error ?? "?"), got success")
                return
            }
            #expect(failure.reason.rawValue == vector.expect.error)
            #expect(!failure.detail.isEmpty)
            #expect(!failure.detail.contains(vector.sessionKey))
        }
    }

    @Test("each vector through the decrypt tool's JSON-lines path", arguments: VectorFile.loaded.cases)
    func outputLine(_ vector: VectorFile.Case) {
        var writer = JSONWriter()
        writer.beginObject()
        writer.field("appid", vector.appid)
        writer.field("session_key", vector.sessionKey)
        writer.field("iv", vector.iv)
        writer.field("encryptedData", vector.encryptedData)
        writer.endObject()
        var line = writer.text
        let output = line.withUTF8 { PhoneDecryptor().outputLine(for: DecryptRequest.parse($0, defaultAppid: nil)) }
        if let ok = vector.expect.ok {
            #expect(output.hasPrefix("{\"ok\":true,\"phoneNumber\":\"\(ok.phoneNumber)\""))
            #expect(output.contains("\"watermarkTimestamp\":\(ok.watermarkTimestamp),\"keyIndex\":0,"))
        } else {
            #expect(output.hasPrefix("{\"ok\":false,\"reason\":\"\(vector.expect.error!)\",\"detail\":"))
        }
    }
}
