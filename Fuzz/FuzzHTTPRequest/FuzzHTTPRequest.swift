import Foundation
import FuzzDriver
import MetricsEndpoint

/// libFuzzer target: the bytes a client sent the metrics server. Property: a request is routed
/// only for GET or HEAD, to a path without its query, taken from the request line alone.
func fuzzHTTPRequest(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data else { return 0 }
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    let target = HTTPEndpointServer.RequestTarget(bytes)
    if let path = target.path {
        precondition(
            !path.contains("?") && !path.contains("\r") && !path.contains("\n") && !path.contains(" "), "a path with a query or a break")
        precondition(target.method == "GET" || target.method == "HEAD", "routed a \(target.method ?? "nil")")
    }
    return 0
}

// The entry point (SwiftPM names it FuzzHTTPRequest_main): libFuzzer runs the target from here.
exit(runFuzzer(CommandLine.argc, CommandLine.unsafeArgv) { data, size in fuzzHTTPRequest(data, size) })
