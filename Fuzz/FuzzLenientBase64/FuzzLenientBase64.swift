import Foundation
import FuzzDriver
import PhoneDecryption

/// libFuzzer target: a base64 field as it may arrive (damaged in transit). Properties: the lenient
/// decoder never writes past its bound; on canonical standard base64 (what a strict decoder accepts
/// and encodes back the same) it agrees with that strict decoder and repairs nothing.
func fuzzLenientBase64(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data else { return 0 }
    let input = UnsafeBufferPointer(start: data, count: size)
    var output = [UInt8](repeating: 0, count: LenientBase64.maxDecodedCount(size))
    var repairs: Base64Repairs = []
    let result = output.withUnsafeMutableBufferPointer { LenientBase64.decode(input, into: $0, repairs: &repairs) }
    if case .success(let count) = result { precondition(count <= output.count, "wrote past the bound") }
    let text = String(decoding: input, as: UTF8.self)
    if Array(text.utf8) == Array(input), let strict = Data(base64Encoded: text), strict.base64EncodedString() == text {
        guard case .success(let count) = result else { preconditionFailure("canonical base64 refused: \(result)") }
        precondition(Array(output.prefix(count)) == Array(strict), "canonical base64 decoded differently")
        precondition(repairs.isEmpty, "canonical base64 needed repairs: \(repairs)")
    }
    return 0
}

// The entry point (SwiftPM names it FuzzLenientBase64_main): libFuzzer runs the target from here.
exit(runFuzzer(CommandLine.argc, CommandLine.unsafeArgv) { data, size in fuzzLenientBase64(data, size) })
