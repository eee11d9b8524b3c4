import PhoneDecryption
import Testing

@Suite("Session-key fallback")
struct KeyFallbackTests {
    @Test("newest key stale, older key works: keyIndex names the older one")
    func olderKeyWorks() throws {
        var factory = PayloadFactory()
        let (stale, current) = (factory.key(), factory.key())
        let payload = factory.payload(key: current, phone: "13911112222")
        let result = try PhoneDecryptor().decrypt(
            appid: PayloadFactory.appid,
            sessionKeys: [Base64Encoding.encode(stale), Base64Encoding.encode(current)],
            iv: payload.iv, encryptedData: payload.encryptedData
        ).get()
        #expect(result.phoneNumber == "13911112222")
        #expect(result.keyIndex == 1)
    }

    @Test("every key stale: bad_padding (or, 1 time in 256, invalid_plaintext), never a phone number")
    func allStale() {
        var factory = PayloadFactory()
        var counts: [FailureReason: Int] = [:]
        let decryptor = PhoneDecryptor()
        for _ in 0..<2000 {
            let payload = factory.payload(key: factory.key())
            let keys = (0..<3).map { _ in Base64Encoding.encode(factory.key()) }
            switch decryptor.decrypt(appid: PayloadFactory.appid, sessionKeys: keys, iv: payload.iv, encryptedData: payload.encryptedData) {
            case .success: Issue.record("a wrong key produced a phone number")
            case .failure(let failure): counts[failure.reason, default: 0] += 1
            }
        }
        #expect(Set(counts.keys).isSubset(of: [.badPadding, .invalidPlaintext]))
        #expect(counts[.badPadding, default: 0] > 1900)
        // With 3 wrong keys about 1 payload in 85 passes padding with some key; JSON must still reject it.
        #expect(counts[.invalidPlaintext, default: 0] > 0)
    }

    @Test("an unusable key is skipped when a later key works")
    func invalidKeyThenGoodKey() throws {
        var factory = PayloadFactory()
        let key = factory.key()
        let payload = factory.payload(key: key)
        let result = try PhoneDecryptor().decrypt(
            appid: PayloadFactory.appid, sessionKeys: ["not-a-key!", "AAAA", Base64Encoding.encode(key)],
            iv: payload.iv, encryptedData: payload.encryptedData
        ).get()
        #expect(result.keyIndex == 2)
    }

    @Test("the failure that got furthest wins: appid_mismatch over bad_padding")
    func furthestFailureWins() {
        var factory = PayloadFactory()
        let key = factory.key()
        let payload = factory.payload(key: key, appid: "wxsomebodyelse00000")
        let result = PhoneDecryptor().decrypt(
            appid: PayloadFactory.appid,
            sessionKeys: [Base64Encoding.encode(factory.key()), Base64Encoding.encode(key), "bad"],
            iv: payload.iv, encryptedData: payload.encryptedData
        )
        #expect(result.failureReason == .appidMismatch)
    }

    @Test("only unusable keys: invalid_session_key; no keys: session_not_found")
    func noUsableKey() {
        var factory = PayloadFactory()
        let payload = factory.payload(key: factory.key())
        let decryptor = PhoneDecryptor()
        #expect(
            decryptor.decrypt(
                appid: PayloadFactory.appid, sessionKeys: ["AAAA", "%%"], iv: payload.iv, encryptedData: payload.encryptedData
            ).failureReason == .invalidSessionKey)
        #expect(
            decryptor.decrypt(appid: PayloadFactory.appid, sessionKeys: [], iv: payload.iv, encryptedData: payload.encryptedData)
                .failureReason == .sessionNotFound)
    }

    @Test("the job's own fields are checked before any key")
    func jobFieldsFirst() {
        var factory = PayloadFactory()
        let payload = factory.payload(key: factory.key())
        let decryptor = PhoneDecryptor()
        #expect(
            decryptor.decrypt(appid: PayloadFactory.appid, sessionKeys: ["bad"], iv: "AAAA", encryptedData: payload.encryptedData)
                .failureReason == .invalidIV)
        #expect(
            decryptor.decrypt(appid: PayloadFactory.appid, sessionKeys: [], iv: payload.iv, encryptedData: "AAAA").failureReason
                == .invalidCiphertext)
    }
}

extension Result where Failure == DecryptFailure {
    var failureReason: FailureReason? {
        if case .failure(let failure) = self { return failure.reason }
        return nil
    }
}
