import PhoneDecryption
import SyntheticLoad
import Testing

@Suite("Synthetic codes")
struct SyntheticCodeTests {
    @Test("a code is genuine for its appid only, and its fields come back")
    func roundTrip() throws {
        let code = SyntheticCode(appid: "wxA", issuedAt: 1_765_000_000, serial: 42, faults: [.noPhoneInfo, .busyOnce])
        let parsed = try #require(SyntheticCode.parse(code.text, appid: "wxA"))
        #expect(parsed == code)
        #expect(SyntheticCode.parse(code.text, appid: "wxB") == nil)
        #expect(SyntheticCode.parse(code.forgedText, appid: "wxA") == nil)
        #expect(SyntheticCode.parse("0-" + code.text.dropFirst(3), appid: "wxA") == nil, "faults are part of the check")
        #expect(SyntheticCode.parse("hello", appid: "wxA") == nil)
    }

    @Test("the number depends on the code; the watermark on the fault")
    func phone() {
        let a = SyntheticCode(appid: "wxA", issuedAt: 100, serial: 1)
        let b = SyntheticCode(appid: "wxA", issuedAt: 100, serial: 2)
        #expect(a.phone.phoneNumber.count == 11 && a.phone.phoneNumber.hasPrefix("1"))
        #expect(a.phone != b.phone)
        #expect(a.phone.watermarkTimestamp == 100)
        #expect(a.watermarkAppid == "wxA")
        #expect(SyntheticCode(appid: "wxA", issuedAt: 100, serial: 1, faults: .wrongWatermark).watermarkAppid != "wxA")
    }
}
