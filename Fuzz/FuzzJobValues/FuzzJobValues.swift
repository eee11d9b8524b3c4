import Foundation
import FuzzDriver
import PhoneDecryption

/// libFuzzer target: a Kafka message value as a job. Property: what the parser accepts, written
/// again as SPEC's JSON object, parses to the same fields; what it refuses is `malformed_job`.
func fuzzJobValues(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data else { return 0 }
    let value = UnsafeBufferPointer(start: data, count: size)
    switch DecryptJob.parse(value) {
    case .failure(let failure):
        precondition(failure.reason == .malformedJob, "a job value fails only as malformed_job, not \(failure.reason)")
    case .success(let job):
        let again = job.jsonValue.withUnsafeBufferPointer { DecryptJob.parse($0) }
        guard case .success(let reparsed) = again else { preconditionFailure("a re-encoded job did not parse: \(again)") }
        precondition(reparsed == job, "a re-encoded job parsed to other fields")
    }
    return 0
}

// The entry point (SwiftPM names it FuzzJobValues_main): libFuzzer runs the target from here.
exit(runFuzzer(CommandLine.argc, CommandLine.unsafeArgv) { data, size in fuzzJobValues(data, size) })
