import Foundation
import FuzzDriver
import Locks
import MetricsEndpoint

/// libFuzzer target: the bytes a client sent the metrics server, through the server's own pipeline
/// (NIO's HTTP/1 parser and the endpoint's routing) on an embedded channel. Properties: the handler
/// is called at most once, only for GET or HEAD, with a path that has no query, break or space; an
/// answer, if any, is an HTTP/1.1 response.
func fuzzHTTPRequest(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data else { return 0 }
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    let calls = Mutex(0)
    let answer = HTTPEndpointServer.answer(to: bytes) { path in
        calls.withLock { $0 += 1 }
        precondition(
            !path.contains("?") && !path.contains("\r") && !path.contains("\n") && !path.contains(" "), "a path with a query or a break")
        return .init(status: 200, body: "ok\n")
    }
    precondition(calls.withLock { $0 } <= 1, "one request per connection")
    precondition(answer.isEmpty || answer.starts(with: Array("HTTP/1.1 ".utf8)), "an answer that is not HTTP/1.1")
    if calls.withLock({ $0 }) == 1 {
        // The parser skips empty lines before the request line, as RFC 9112 allows.
        let method = bytes.drop { $0 == 13 || $0 == 10 }.prefix { $0 != UInt8(ascii: " ") }
        precondition(method.elementsEqual("GET".utf8) || method.elementsEqual("HEAD".utf8), "routed a method other than GET or HEAD")
    }
    return 0
}

// The entry point (SwiftPM names it FuzzHTTPRequest_main): libFuzzer runs the target from here.
exit(runFuzzer(CommandLine.argc, CommandLine.unsafeArgv) { data, size in fuzzHTTPRequest(data, size) })
