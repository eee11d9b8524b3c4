import Foundation
import PhoneDecryption
import SyntheticLoad
import Testing

@Suite("Lenient base64")
struct LenientBase64Tests {
    func decode(_ text: String) -> (bytes: [UInt8], repairs: Base64Repairs)? {
        try? LenientBase64.decode(text).get()
    }

    @Test("canonical input decodes with no repair")
    func canonical() {
        #expect(decode("aGVsbG8=")?.bytes == Array("hello".utf8))
        #expect(decode("aGVsbG8=")?.repairs == [])
        #expect(decode("")?.bytes == [])
    }

    @Test(
        "each repair SPEC.md lists is made and reported",
        arguments: [
            ("+/+/", "+/+/", Base64Repairs()),
            (" /+/", "+/+/", .spaceAsPlus),
            ("-_-_", "+/+/", .urlSafeAlphabet),
            ("+/\r\n+/\t", "+/+/", .whitespaceRemoved),
            ("aGVsbG8", "aGVsbG8=", .paddingRestored),
            ("aGVsbA", "aGVsbA==", .paddingRestored),
            ("aGVsbA=", "aGVsbA==", .paddingRestored),
            (" _\n-/", "+/+/", [.spaceAsPlus, .urlSafeAlphabet, .whitespaceRemoved]),
        ] as [(String, String, Base64Repairs)])
    func repairs(_ example: (String, String, Base64Repairs)) throws {
        let (damaged, canonical, expected) = example
        let repaired = try #require(decode(damaged))
        #expect(repaired.bytes == decode(canonical)?.bytes)
        #expect(repaired.repairs == expected)
    }

    @Test(
        "after repair, decoding is strict",
        arguments: [
            "a", "abcde", "ab*d", "aGVs=bG8", "aGVsbG8==", "aGVsbA===", "====", "=", "aGVsbG9=",  // last: non-zero trailing bits
            "aGVsbB==", "ab\u{0}c", "abc\u{80}",
        ])
    func rejects(_ text: String) {
        #expect(decode(text) == nil)
    }

    @Test("agrees with Foundation on 20,000 random byte strings")
    func roundTrip() throws {
        var generator = SplitMix64(seed: 7)
        for length in 0..<20_000 {
            let bytes = (0..<(length % 97)).map { _ in UInt8.random(in: 0...255, using: &generator) }
            let encoded = Data(bytes).base64EncodedString()
            #expect(Base64Encoding.encode(bytes) == encoded)
            let decoded = try #require(decode(encoded))
            #expect(decoded.bytes == bytes)
            #expect(decoded.repairs.isEmpty)
        }
    }

    @Test("failure descriptions never quote the input")
    func descriptionsAreSafe() {
        guard case .failure(let failure) = LenientBase64.decode("secret*secret") else {
            Issue.record("expected a failure")
            return
        }
        #expect(!failure.description.contains("secret"))
        #expect(failure == .invalidByte(offset: 6))
    }
}

@Suite("PKCS#7")
struct PKCS7Tests {
    func unpad(_ bytes: [UInt8]) -> Int? { bytes.withUnsafeBufferPointer { PKCS7.unpaddedCount($0) } }

    @Test("valid paddings 1...16")
    func valid() {
        for pad in 1...16 {
            let block = [UInt8](repeating: 0x41, count: 32 - pad) + [UInt8](repeating: UInt8(pad), count: pad)
            #expect(unpad(block) == 32 - pad)
        }
    }

    @Test("zero, too large, inconsistent, empty")
    func invalid() {
        #expect(unpad([UInt8](repeating: 0, count: 16)) == nil)
        #expect(unpad([UInt8](repeating: 17, count: 32)) == nil)
        #expect(unpad([UInt8](repeating: 0x41, count: 13) + [2, 3, 3]) == nil)
        #expect(unpad([UInt8](repeating: 0x41, count: 12) + [3, 4, 4, 4]) == nil)
        #expect(unpad([]) == nil)
    }
}
