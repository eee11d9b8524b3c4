import ArgumentParser
import Foundation
import WeChatAPI

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// `decryptd-bench http`: the two HTTP clients README weighs for the code exchange, side by side
/// against `decryptd dev-wechat --latency-ms L`: calls per second with C in flight, and the
/// process's CPU time per call. Each call is one exchange POST (answered 40001 after the latency).
struct HTTPClientBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "http", abstract: "async-http-client vs URLSession against dev-wechat.")

    enum Client: String, ExpressibleByArgument, CaseIterable { case ahc, urlsession }

    @Option(help: "dev-wechat's URL.") var url: String
    @Option(help: "ahc or urlsession.") var client: Client = .ahc
    @Option(help: "Calls in all.") var calls = 5000
    @Option(help: "Calls in flight.") var concurrency = 256

    func run() async throws {
        let transport: any WeChatTransport =
            switch client {
            case .ahc: try HTTPClientTransport(baseURL: url, connections: concurrency)
            case .urlsession: URLSessionTransport(baseURL: url, connections: concurrency)
            }
        let body = Array(#"{"code":"0-bench-1-0000000000000000"}"#.utf8)
        // Warm up: open the connections.
        try await run(transport, calls: concurrency, body: body)
        let cpuBefore = Self.cpuSeconds()
        let started = Date()
        let failures = try await run(transport, calls: calls, body: body)
        let elapsed = Date().timeIntervalSince(started)
        let cpu = Self.cpuSeconds() - cpuBefore
        await transport.shutdown()
        print(
            String(
                format: "http %@: %d calls, %d in flight: %.0f calls/s, %.1f µs CPU per call, %d failed",
                client.rawValue, calls, concurrency, Double(calls) / elapsed, cpu / Double(calls) * 1e6, failures))
    }

    @discardableResult
    func run(_ transport: any WeChatTransport, calls: Int, body: [UInt8]) async throws -> Int {
        try await withThrowingTaskGroup(of: Bool.self) { group in
            var started = 0
            var failed = 0
            func start() {
                group.addTask {
                    let answer = try? await transport.post("/wxa/business/getuserphonenumber?access_token=bench", body: body, timeout: 10)
                    return answer?.status == 200
                }
                started += 1
            }
            while started < min(calls, concurrency) { start() }
            while let ok = try await group.next() {
                if !ok { failed += 1 }
                if started < calls { start() }
            }
            return failed
        }
    }

    static func cpuSeconds() -> Double {
        var usage = rusage()
        getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
        return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
    }
}

/// The toolchain's own client (FoundationNetworking, libcurl underneath on Linux), as a transport.
/// `@unchecked Sendable`: its two properties never change, and URLSession is thread-safe (it is not
/// marked Sendable in FoundationNetworking).
final class URLSessionTransport: WeChatTransport, @unchecked Sendable {
    let baseURL: String
    let session: URLSession

    init(baseURL: String, connections: Int) {
        self.baseURL = baseURL
        let configuration = URLSessionConfiguration.ephemeral
        configuration.httpMaximumConnectionsPerHost = connections
        session = URLSession(configuration: configuration)
    }

    func send(_ call: WeChatRequest, timeout: TimeInterval) async throws -> WeChatAnswer {
        var request = URLRequest(url: URL(string: baseURL + call.path)!, timeoutInterval: timeout)
        request.httpMethod = call.method
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        for header in call.headers { request.setValue(header.value, forHTTPHeaderField: header.name) }
        if call.method == "POST" { request.httpBody = Data(call.body) }
        let (data, response) = try await session.data(for: request)
        let http = response as? HTTPURLResponse
        let headers = (http?.allHeaderFields ?? [:]).compactMap { name, value in (name as? String).map { ($0, "\(value)") } }
        return WeChatAnswer(status: http?.statusCode ?? 0, headers: headers, body: Array(data))
    }

    func shutdown() async { session.invalidateAndCancel() }
}
