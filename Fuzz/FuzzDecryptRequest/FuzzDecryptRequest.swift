import Foundation
import FuzzDriver
import PhoneDecryption

/// libFuzzer target: one JSON line of `decryptd decrypt`, parsed and decrypted. Property: the
/// result is a payload or one of SPEC's failure codes, and its output line is one line.
// Top-level state: libFuzzer runs the target on one thread.
nonisolated(unsafe) let decryptor = PhoneDecryptor()
nonisolated(unsafe) let codes = Set(FailureReason.allCases)

func fuzzDecryptRequest(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data else { return 0 }
    let request = DecryptRequest.parse(UnsafeBufferPointer(start: data, count: size), defaultAppid: "wx6ede2086ee29a89f")
    let result = request.flatMap { request in
        decryptor.decrypt(appid: request.appid, sessionKeys: request.sessionKeys, iv: request.iv, encryptedData: request.encryptedData)
    }
    if case .failure(let failure) = result { precondition(codes.contains(failure.reason), "not one of SPEC's codes") }
    let line = PhoneDecryptor.outputLine(result)
    precondition(!line.contains("\n"), "an output line with a line break")
    return 0
}

// The entry point (SwiftPM names it FuzzDecryptRequest_main): libFuzzer runs the target from here.
exit(runFuzzer(CommandLine.argc, CommandLine.unsafeArgv) { data, size in fuzzDecryptRequest(data, size) })
