public import Foundation
public import OpenSSLRSA
import PhoneDecryption

/// One appid's keys for WeChat's API security mode (SPEC "Code jobs" → "API security mode"): the
/// symmetric key and its number, the private key and its number, and WeChat's platform
/// certificates by number. Never printed: `description` names the appid and the numbers only.
public struct APISecurityKeys: Sendable, CustomStringConvertible {
    public let appid: String
    public let symmetricKey: [UInt8]
    public let symmetricKeySn: String
    public let privateKey: RSAPrivateKey
    public let privateKeySn: String
    /// Platform certificates' public keys by serial number.
    public let platformCertificates: [String: RSAPublicKey]

    public init(
        appid: String, symmetricKey: [UInt8], symmetricKeySn: String, privateKey: RSAPrivateKey, privateKeySn: String,
        platformCertificates: [String: RSAPublicKey]
    ) {
        self.appid = appid
        self.symmetricKey = symmetricKey
        self.symmetricKeySn = symmetricKeySn
        self.privateKey = privateKey
        self.privateKeySn = privateKeySn
        self.platformCertificates = platformCertificates
    }

    public var description: String {
        "API security keys of \(appid) (symmetric key \(symmetricKeySn), private key \(privateKeySn), certificates "
            + platformCertificates.keys.sorted().joined(separator: ", ") + ")"
    }
}

/// `WECHAT_API_SECURITY_FILE`: a JSON object keyed by appid, each `{"symmetricKey", "symmetricKeySn",
/// "privateKey", "privateKeySn", "platformCertificates": {sn: PEM}}`. Errors name the file, the
/// appid and the field, never a key.
public enum APISecurityFile {
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    /// The keys, and a warning when the file can be read by its group or by anyone.
    public static func load(path: String) throws(Failure) -> (keys: [String: APISecurityKeys], warning: String?) {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw Failure(description: "cannot read API security file \(path): \((error as NSError).localizedDescription)")
        }
        var warning: String?
        var status = stat()
        if stat(path, &status) == 0, status.st_mode & 0o044 != 0 {
            warning =
                "API security file \(path) can be read by its group or by anyone (mode \(String(status.st_mode & 0o777, radix: 8))): "
                + "it holds private keys; chmod 600 it"
        }
        return (try parse(data, source: "API security file \(path)"), warning)
    }

    public static func parse(_ data: Data, source: String) throws(Failure) -> [String: APISecurityKeys] {
        guard let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw Failure(description: "\(source) is not a JSON object keyed by appid")
        }
        var keys: [String: APISecurityKeys] = [:]
        for appid in object.keys.sorted() {
            let place = "\(source): appid \(appid)"
            guard !appid.isEmpty, appid.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: "|") }) else {
                throw Failure(description: "\(source): an appid is empty or not printable ASCII")
            }
            guard let entry = object[appid] as? [String: Any] else { throw Failure(description: "\(place) is not an object") }
            func text(_ field: String) throws(Failure) -> String {
                guard let value = entry[field] as? String, !value.isEmpty else {
                    throw Failure(description: "\(place): \(field) is missing or not a non-empty string")
                }
                return value
            }
            func serial(_ field: String) throws(Failure) -> String {
                let value = try text(field)
                guard value.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: "|") }) else {
                    throw Failure(description: "\(place): \(field) is not printable ASCII without '|'")
                }
                return value
            }
            guard let symmetricKey = LenientBase64.decodeStrictly(try text("symmetricKey")) else {
                throw Failure(description: "\(place): symmetricKey is not base64")
            }
            guard symmetricKey.count == 32 else {
                throw Failure(description: "\(place): symmetricKey is \(symmetricKey.count) bytes, not 32 (AES-256)")
            }
            let privateKeyPEM = try text("privateKey")
            let privateKey: RSAPrivateKey
            do {
                privateKey = try RSAPrivateKey(pem: privateKeyPEM)
            } catch {
                throw Failure(description: "\(place): privateKey \(error)")
            }
            guard let certificates = entry["platformCertificates"] as? [String: Any], !certificates.isEmpty else {
                throw Failure(description: "\(place): platformCertificates is missing or not an object of serial → PEM")
            }
            var publicKeys: [String: RSAPublicKey] = [:]
            for sn in certificates.keys.sorted() {
                guard let pem = certificates[sn] as? String else {
                    throw Failure(description: "\(place): platformCertificates \(sn) is not a string")
                }
                do {
                    publicKeys[sn] = try RSAPublicKey(certificatePEM: pem)
                } catch {
                    throw Failure(description: "\(place): platformCertificates \(sn) \(error)")
                }
            }
            keys[appid] = APISecurityKeys(
                appid: appid, symmetricKey: symmetricKey, symmetricKeySn: try serial("symmetricKeySn"), privateKey: privateKey,
                privateKeySn: try serial("privateKeySn"), platformCertificates: publicKeys)
        }
        return keys
    }

    /// The file's text for one appid's keys (what `dev-wechat --api-security` writes).
    public static func render(
        appid: String, symmetricKey: [UInt8], symmetricKeySn: String, privateKeyPEM: String, privateKeySn: String,
        certificates: [String: String]
    ) -> String {
        var writer = JSONWriter()
        writer.beginObject()
        writer.key(appid)
        writer.beginObject()
        writer.field("symmetricKey", Base64Encoding.encode(symmetricKey))
        writer.field("symmetricKeySn", symmetricKeySn)
        writer.field("privateKey", privateKeyPEM)
        writer.field("privateKeySn", privateKeySn)
        writer.key("platformCertificates")
        writer.beginObject()
        for (sn, pem) in certificates.sorted(by: { $0.key < $1.key }) { writer.field(sn, pem) }
        writer.endObject()
        writer.endObject()
        writer.endObject()
        return writer.text + "\n"
    }
}
