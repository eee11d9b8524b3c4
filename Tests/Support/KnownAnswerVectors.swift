public import Foundation

/// The known-answer vectors in ../shared/testdata/decrypt-vectors.json (or $DECRYPTD_VECTORS), for
/// every test that checks a decryption path against them.
public struct VectorFile: Decodable, Sendable {
    public struct Case: Decodable, Sendable {
        public struct Expectation: Decodable, Sendable {
            public struct OK: Decodable, Sendable {
                public var phoneNumber: String
                public var purePhoneNumber: String
                public var countryCode: String
                public var watermarkTimestamp: Int64
            }
            public var ok: OK?
            public var error: String?
        }
        public var name: String
        public var appid: String
        public var openid: String
        public var sessionKey: String
        public var iv: String
        public var encryptedData: String
        public var expect: Expectation

        enum CodingKeys: String, CodingKey {
            case name, appid, openid, iv, encryptedData, expect
            case sessionKey = "session_key"
        }
    }

    public var appid: String
    public var cases: [Case]

    public static let url: URL = {
        if let path = ProcessInfo.processInfo.environment["DECRYPTD_VECTORS"] { return URL(fileURLWithPath: path) }
        // Tests/Support/KnownAnswerVectors.swift -> repository root -> ../shared
        return URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("../shared/testdata/decrypt-vectors.json").standardized
    }()

    public static let loaded: VectorFile = {
        do {
            return try JSONDecoder().decode(VectorFile.self, from: Data(contentsOf: url))
        } catch {
            fatalError("cannot read the known-answer vectors at \(url.path): \(error)")
        }
    }()
}
