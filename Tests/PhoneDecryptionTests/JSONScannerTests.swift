import PhoneDecryption
import Testing

@Suite("Strict JSON scanner")
struct JSONScannerTests {
    /// Validates a whole document by skipping its value.
    static func accepts(_ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBufferPointer { buffer in
            var scanner = JSONScanner(buffer)
            do throws(JSONSyntaxError) {
                try scanner.skipValue()
                try scanner.finish()
                return true
            } catch {
                return false
            }
        }
    }

    static func accepts(_ text: String) -> Bool { accepts(Array(text.utf8)) }

    @Test(
        "accepts RFC 8259 documents",
        arguments: [
            #"{}"#, #"[]"#, #" {"a" : [1, -0, 0.5, 1e5, -1.25E-3, true, false, null, "x"]} "#,
            #""\u00e9\ud83d\ude00\"\\\/\b\f\n\r\t""#, "\"é😀\"", #"{"a":{"b":{"c":[[[]]]}}}"#, "0", "-12",
        ])
    func accepts(_ text: String) {
        #expect(Self.accepts(text))
    }

    @Test(
        "rejects what RFC 8259 rejects",
        arguments: [
            "", " ", "{", "}", #"{"a"}"#, #"{"a":}"#, #"{"a":1,}"#, "[1,]", "[1 2]", #"{'a':1}"#, #"{a:1}"#,
            "01", "1.", ".5", "1e", "+1", "-", "0x10", "NaN", "Infinity", "tru", "nul", "True",
            #""\x""#, #""\u12""#, #""\u12G4""#, #""\ud800""#, #""\udc00""#, #""\ud800\u0041""#,
            "\"a\u{01}b\"", "\"tab\there\"", #""unterminated"#, "{} x", "[] []", "{}{}", "\"a\"\"b\"",
        ])
    func rejects(_ text: String) {
        #expect(!Self.accepts(text))
    }

    @Test(
        "rejects invalid UTF-8 inside strings and any non-ASCII outside them",
        arguments: [
            [0x22, 0xC0, 0x80, 0x22],  // overlong NUL
            [0x22, 0xE0, 0x80, 0x80, 0x22],  // overlong
            [0x22, 0xED, 0xA0, 0x80, 0x22],  // UTF-16 surrogate encoded in UTF-8
            [0x22, 0xF4, 0x90, 0x80, 0x80, 0x22],  // above U+10FFFF
            [0x22, 0xC3, 0x22],  // truncated
            [0x22, 0x80, 0x22],  // lone continuation
            [0x22, 0xFF, 0x22],
            [0xEF, 0xBB, 0xBF, 0x7B, 0x7D],  // byte order mark before the document
        ] as [[UInt8]])
    func rejectsBadUTF8(_ bytes: [UInt8]) {
        #expect(!Self.accepts(bytes))
    }

    @Test("nesting deeper than the limit is rejected, not a stack overflow")
    func depth() {
        let limit = JSONScanner.maximumDepth
        #expect(Self.accepts(String(repeating: "[", count: limit) + String(repeating: "]", count: limit)))
        #expect(!Self.accepts(String(repeating: "[", count: limit + 1) + String(repeating: "]", count: limit + 1)))
        #expect(!Self.accepts(String(repeating: "[", count: 100_000)))
    }

    @Test("decodes escapes in string values")
    func decodesEscapes() throws {
        let text = Array(#""a\u00e9\ud83d\ude00\n\/""#.utf8)
        let decoded = text.withUnsafeBufferPointer { buffer -> String? in
            var scanner = JSONScanner(buffer)
            guard let token = try? scanner.readString() else { return nil }
            return scanner.string(token)
        }
        #expect(decoded == "aé😀\n/")
    }

    @Test("a token equals text byte for byte, after unescaping, not by Unicode equivalence")
    func tokenEqualsText() {
        let text = Array(#""caf\u00e9" "cafe\u0301" "wx1""#.utf8)
        text.withUnsafeBufferPointer { buffer in
            var scanner = JSONScanner(buffer)
            guard let composed = try? scanner.readString(), let decomposed = try? scanner.readString(),
                let plain = try? scanner.readString()
            else {
                Issue.record("not three strings")
                return
            }
            #expect(scanner.token(composed, equalsText: "caf\u{E9}"))
            #expect(!scanner.token(composed, equalsText: "cafe\u{301}"), "Swift calls them equal; the bytes differ")
            #expect(scanner.token(decomposed, equalsText: "cafe\u{301}"))
            #expect(scanner.token(plain, equalsText: "wx1"))
            #expect(!scanner.token(plain, equalsText: "wx"))
            #expect(!scanner.token(plain, equalsText: "wx12"))
        }
    }
}
