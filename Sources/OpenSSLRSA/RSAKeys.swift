internal import CLibCrypto

/// Why a PEM text was refused. Never carries the text.
public struct RSAKeyError: Error, Sendable, Hashable, CustomStringConvertible {
    public var description: String
}

/// An RSA private key read from PEM (PKCS#8 `PRIVATE KEY` or PKCS#1 `RSA PRIVATE KEY`), for
/// RSASSA-PSS signatures as WeChat's API security mode wants them (SHA-256, MGF1-SHA-256, salt 32).
///
/// `@unchecked Sendable`: OpenSSL 3 documents an `EVP_PKEY` as safe to use from several threads at
/// once for signing, each call with its own `EVP_MD_CTX` (as here); it is never mutated after `init`.
public final class RSAPrivateKey: @unchecked Sendable {
    let key: OpaquePointer

    /// The shortest modulus accepted: WeChat issues 2048-bit keys.
    public static let minimumBits = 2048

    public init(pem: String) throws(RSAKeyError) {
        guard let key = readPEM(pem, { PEM_read_bio_PrivateKey($0, nil, noPassphrase, nil) }) else {
            throw RSAKeyError(description: "is not a PEM private key (PKCS#8 or PKCS#1)")
        }
        guard EVP_PKEY_get_base_id(key) == EVP_PKEY_RSA else {
            EVP_PKEY_free(key)
            throw RSAKeyError(description: "is not an RSA key")
        }
        guard EVP_PKEY_get_bits(key) >= Self.minimumBits else {
            EVP_PKEY_free(key)
            throw RSAKeyError(description: "is an RSA key shorter than \(Self.minimumBits) bits")
        }
        self.key = key
    }

    private init(owning key: OpaquePointer) { self.key = key }

    /// A new key of `bits` (for the local stand-in and tests).
    public static func generate(bits: Int = 2048) -> RSAPrivateKey {
        guard let context = EVP_PKEY_CTX_new_id(EVP_PKEY_RSA, nil) else { fatalError("OpenSSL: out of memory") }
        defer { EVP_PKEY_CTX_free(context) }
        var key: OpaquePointer?
        guard EVP_PKEY_keygen_init(context) == 1, EVP_PKEY_CTX_set_rsa_keygen_bits(context, Int32(bits)) == 1,
            EVP_PKEY_keygen(context, &key) == 1, let key
        else { fatalError("OpenSSL could not generate an RSA key") }
        return RSAPrivateKey(owning: key)
    }

    deinit { EVP_PKEY_free(key) }

    /// The key as PKCS#8 PEM.
    public var pem: String {
        writePEM { bio in PEM_write_bio_PrivateKey(bio, key, nil, nil, 0, nil, nil) }
    }

    /// Its public half.
    public var publicKey: RSAPublicKey {
        EVP_PKEY_up_ref(key)
        return RSAPublicKey(owning: key)
    }

    /// RSASSA-PSS over `message`: SHA-256, MGF1-SHA-256, salt length 32. Randomized (the salt), so
    /// two signatures of one message differ; both verify.
    public func signPSS(_ message: [UInt8]) -> [UInt8] {
        guard let digest = EVP_MD_CTX_new() else { fatalError("OpenSSL: out of memory") }
        defer { EVP_MD_CTX_free(digest) }
        var context: OpaquePointer?
        guard EVP_DigestSignInit(digest, &context, EVP_sha256(), nil, key) == 1, let context, configurePSS(context) else {
            fatalError("OpenSSL refused to set up RSASSA-PSS")
        }
        var length = 0
        guard EVP_DigestSign(digest, nil, &length, message, message.count) == 1 else { fatalError("OpenSSL refused to sign") }
        var signature = [UInt8](repeating: 0, count: length)
        guard EVP_DigestSign(digest, &signature, &length, message, message.count) == 1 else { fatalError("OpenSSL refused to sign") }
        return Array(signature.prefix(length))
    }
}

/// An RSA public key, from an X.509 certificate in PEM or from a private key; verifies RSASSA-PSS
/// signatures (SHA-256, MGF1-SHA-256, salt 32). `@unchecked Sendable` as ``RSAPrivateKey``.
public final class RSAPublicKey: @unchecked Sendable {
    let key: OpaquePointer

    fileprivate init(owning key: OpaquePointer) { self.key = key }

    /// The public key of a PEM certificate; throws unless it parses and holds an RSA key of 2048 bits or more.
    public init(certificatePEM pem: String) throws(RSAKeyError) {
        guard let certificate = readPEM(pem, { PEM_read_bio_X509($0, nil, noPassphrase, nil) }) else {
            throw RSAKeyError(description: "is not a PEM X.509 certificate")
        }
        defer { X509_free(certificate) }
        guard let key = X509_get_pubkey(certificate) else { throw RSAKeyError(description: "has no public key OpenSSL can read") }
        guard EVP_PKEY_get_base_id(key) == EVP_PKEY_RSA, EVP_PKEY_get_bits(key) >= RSAPrivateKey.minimumBits else {
            EVP_PKEY_free(key)
            throw RSAKeyError(description: "does not hold an RSA key of at least \(RSAPrivateKey.minimumBits) bits")
        }
        self.key = key
    }

    deinit { EVP_PKEY_free(key) }

    /// True only when `signature` is a valid RSASSA-PSS signature of `message` under this key.
    public func verifyPSS(_ signature: [UInt8], of message: [UInt8]) -> Bool {
        guard let digest = EVP_MD_CTX_new() else { return false }
        defer { EVP_MD_CTX_free(digest) }
        var context: OpaquePointer?
        guard EVP_DigestVerifyInit(digest, &context, EVP_sha256(), nil, key) == 1, let context, configurePSS(context) else {
            ERR_clear_error()
            return false
        }
        let ok = EVP_DigestVerify(digest, signature, signature.count, message, message.count) == 1
        ERR_clear_error()
        return ok
    }

    /// A self-signed X.509 certificate for this key, signed by `signer` (its private half), named
    /// `commonName`, valid for `days` from now, as PEM: what a local stand-in hands out as its
    /// "platform certificate".
    public static func selfSignedCertificate(_ signer: RSAPrivateKey, commonName: String, serial: Int, days: Int) -> String {
        guard let certificate = X509_new() else { fatalError("OpenSSL: out of memory") }
        defer { X509_free(certificate) }
        X509_set_version(certificate, 2)
        ASN1_INTEGER_set(X509_get_serialNumber(certificate), serial)
        X509_gmtime_adj(X509_getm_notBefore(certificate), -3600)
        X509_gmtime_adj(X509_getm_notAfter(certificate), days * 86400)
        X509_set_pubkey(certificate, signer.key)
        let name = X509_get_subject_name(certificate)
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, commonName, -1, -1, 0)
        X509_set_issuer_name(certificate, name)
        guard X509_sign(certificate, signer.key, EVP_sha256()) > 0 else { fatalError("OpenSSL could not sign a certificate") }
        return writePEM { bio in PEM_write_bio_X509(bio, certificate) }
    }
}

/// PSS with SHA-256 for MGF1 and a 32-byte salt, on a signing or verifying context.
private func configurePSS(_ context: OpaquePointer) -> Bool {
    EVP_PKEY_CTX_set_rsa_padding(context, RSA_PKCS1_PSS_PADDING) == 1 && EVP_PKEY_CTX_set_rsa_pss_saltlen(context, 32) == 1
        && EVP_PKEY_CTX_set_rsa_mgf1_md(context, EVP_sha256()) == 1
}

/// A passphrase callback that gives none: a key with a passphrase is refused, never prompted for
/// (OpenSSL's default callback would read the terminal).
private let noPassphrase: @convention(c) (UnsafeMutablePointer<CChar>?, Int32, Int32, UnsafeMutableRawPointer?) -> Int32 = { _, _, _, _ in
    0
}

/// Reads one PEM object with `read`; nil (and OpenSSL's error queue cleared) when it does not parse.
private func readPEM(_ pem: String, _ read: (OpaquePointer) -> OpaquePointer?) -> OpaquePointer? {
    let text = Array(pem.utf8)
    // The BIO reads the buffer in place: it must not outlive this closure.
    return text.withUnsafeBufferPointer { buffer in
        guard let base = buffer.baseAddress, let bio = BIO_new_mem_buf(base, Int32(buffer.count)) else { return nil }
        defer { BIO_free(bio) }
        let value = read(bio)
        ERR_clear_error()
        return value
    }
}

/// What `write` puts into a memory BIO, as text.
private func writePEM(_ write: (OpaquePointer) -> Int32) -> String {
    guard let bio = BIO_new(BIO_s_mem()) else { fatalError("OpenSSL: out of memory") }
    defer { BIO_free(bio) }
    guard write(bio) == 1 else { fatalError("OpenSSL could not write PEM") }
    var pointer: UnsafeMutablePointer<CChar>?
    let length = BIO_ctrl(bio, BIO_CTRL_INFO, 0, &pointer)
    guard let pointer, length > 0 else { return "" }
    return String(decoding: UnsafeRawBufferPointer(start: pointer, count: Int(length)), as: UTF8.self)
}
