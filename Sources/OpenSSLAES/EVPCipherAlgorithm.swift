internal import CLibCrypto

/// The AES-128-CBC algorithm object, fetched from OpenSSL's default provider once per process.
///
/// `@unchecked Sendable`: an `EVP_CIPHER` returned by `EVP_CIPHER_fetch` is immutable and OpenSSL
/// documents it as safe to share between threads. It is never freed (it lives as long as the process).
final class EVPCipherAlgorithm: @unchecked Sendable {
    static let aes128CBC = EVPCipherAlgorithm(name: "AES-128-CBC")

    let pointer: OpaquePointer

    private init(name: String) {
        // EVP_CIPHER_fetch hands us a reference we own; we keep it for the process lifetime.
        guard let cipher = EVP_CIPHER_fetch(nil, name, nil) else {
            fatalError("OpenSSL does not provide \(name); libcrypto is unusable")
        }
        self.pointer = cipher
    }
}
