import Foundation
import FuzzDriver
import OpenSSLAES
import PhoneDecryption

/// libFuzzer target: the input as a decrypted plaintext (really encrypted with a fixed key, so the
/// whole decrypt path runs). Property: the result is a payload or one of the codes a plaintext can
/// earn (`invalid_plaintext`, `appid_mismatch`); a payload has a phone number and, written again
/// as WeChat writes it, decrypts to the same payload.
// Top-level state: libFuzzer runs the target on one thread.
nonisolated(unsafe) let appid = "wx6ede2086ee29a89f"
nonisolated(unsafe) let key = [UInt8](repeating: 7, count: 16)
nonisolated(unsafe) let iv = [UInt8](repeating: 9, count: 16)
nonisolated(unsafe) let encryptor = EVPAES128CBC(.encrypt)
nonisolated(unsafe) let decryptor = PhoneDecryptor()

func decrypt(_ plaintext: [UInt8]) -> Result<PhonePayload, DecryptFailure> {
    guard let ciphertext = encryptor.encrypt(key: key, iv: iv, plaintext: plaintext) else { preconditionFailure("encryption failed") }
    return decryptor.decrypt(
        appid: appid, sessionKeys: [Data(key).base64EncodedString()], iv: Data(iv).base64EncodedString(),
        encryptedData: Data(ciphertext).base64EncodedString()
    )
}

func fuzzPlaintext(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data else { return 0 }
    switch decrypt(Array(UnsafeBufferPointer(start: data, count: size))) {
    case .failure(let failure):
        precondition([.invalidPlaintext, .appidMismatch].contains(failure.reason), "a plaintext earned \(failure.reason)")
    case .success(let payload):
        precondition(!payload.phoneNumber.isEmpty && !payload.purePhoneNumber.isEmpty, "a payload without a number")
        guard case .success(let again) = decrypt(payload.plaintext(appid: appid)) else {
            preconditionFailure("a re-encoded payload failed")
        }
        precondition(again == payload, "a re-encoded payload decrypted to other fields")
    }
    return 0
}

// The entry point (SwiftPM names it FuzzPlaintext_main): libFuzzer runs the target from here.
exit(runFuzzer(CommandLine.argc, CommandLine.unsafeArgv) { data, size in fuzzPlaintext(data, size) })
