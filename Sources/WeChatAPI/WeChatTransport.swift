import AsyncHTTPClient
public import Foundation
import Locks
import NIOCore
import NIOHTTP1
import NIOPosix

/// One call to WeChat's server API.
public struct WeChatRequest: Sendable {
    /// "GET" or "POST".
    public var method: String
    /// The path with its query, under the API's base URL.
    public var path: String
    public var headers: [(name: String, value: String)]
    /// The JSON body of a POST.
    public var body: [UInt8]

    public init(method: String = "POST", path: String, headers: [(name: String, value: String)] = [], body: [UInt8] = []) {
        self.method = method
        self.path = path
        self.headers = headers
        self.body = body
    }
}

/// WeChat's answer: a status, the headers (API security mode signs answers in them) and a body.
public struct WeChatAnswer: Sendable {
    public var status: Int
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]

    public init(status: Int, headers: [(name: String, value: String)] = [], body: [UInt8]) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// The first header of that name, compared case-insensitively (HTTP header names are).
    public func header(_ name: String) -> String? {
        headers.first { $0.name.caseInsensitiveCompare(name) == .orderedSame }?.value
    }
}

/// How decryptd reaches WeChat's server API: one request, answered by a status, headers and a
/// body. A protocol, so that tests can substitute an answer without a server.
public protocol WeChatTransport: Sendable {
    /// The base URL without a trailing slash (API security mode signs the full URL path).
    var baseURL: String { get }

    /// Sends `request` under the API's base URL within `timeout`. Throws when no answer came
    /// (refused, reset, timed out).
    func send(_ request: WeChatRequest, timeout: TimeInterval) async throws -> WeChatAnswer

    /// Closes the connections; no call may follow.
    func shutdown() async

    /// ``shutdown()`` for a caller on a thread of its own (never an event loop); once is enough.
    func close()
}

extension WeChatTransport {
    public func close() {}

    /// POSTs a JSON `body` to `path` (with its query); the answer's status and body.
    public func post(_ path: String, body: [UInt8], timeout: TimeInterval) async throws -> (status: Int, body: [UInt8]) {
        let answer = try await send(WeChatRequest(path: path, body: body), timeout: timeout)
        return (answer.status, answer.body)
    }
}

/// ``WeChatTransport`` over swift-server's async-http-client: a pool of kept-alive connections (as
/// many as exchanges may be in flight), certificates verified for https (the only way around that is
/// a plain http URL, for a local stand-in), no redirects followed, answers of at most 1 MiB.
public final class HTTPClientTransport: WeChatTransport {
    /// The base URL without a trailing slash, e.g. `https://api.weixin.qq.com`.
    public let baseURL: String
    private let client: HTTPClient
    private let closed = Mutex(false)

    public static let largestAnswer = 1 << 20

    /// Why a base URL cannot be used.
    public struct URLError: Error, CustomStringConvertible {
        public var description: String
    }

    /// Checks `text` as an API base URL: http or https, a host, no query, fragment or credentials.
    public static func validate(baseURL text: String) throws(URLError) -> String {
        guard let components = URLComponents(string: text), let scheme = components.scheme?.lowercased(),
            scheme == "https" || scheme == "http", let host = components.host, !host.isEmpty
        else { throw URLError(description: "--wechat-api-url \(text) is not an http(s) URL with a host") }
        guard components.query == nil, components.fragment == nil, components.user == nil, components.password == nil else {
            throw URLError(description: "--wechat-api-url must have no query, fragment or user info")
        }
        var trimmed = text
        while trimmed.hasSuffix("/") { trimmed.removeLast() }
        return trimmed
    }

    public init(baseURL: String, connections: Int) throws(URLError) {
        self.baseURL = try Self.validate(baseURL: baseURL)
        var configuration = HTTPClient.Configuration(
            redirectConfiguration: .disallow,
            timeout: .init(connect: .seconds(5)),
            connectionPool: .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: max(1, connections)),
            decompression: .disabled
        )
        configuration.httpVersion = .http1Only
        client = HTTPClient(eventLoopGroup: MultiThreadedEventLoopGroup.singleton, configuration: configuration)
    }

    public func send(_ request: WeChatRequest, timeout: TimeInterval) async throws -> WeChatAnswer {
        var call = HTTPClientRequest(url: baseURL + request.path)
        call.method = HTTPMethod(rawValue: request.method)
        call.headers.add(name: "User-Agent", value: "decryptd")
        for header in request.headers { call.headers.add(name: header.name, value: header.value) }
        if request.method == "POST" {
            call.headers.add(name: "Content-Type", value: "application/json")
            call.body = .bytes(ByteBuffer(bytes: request.body))
        }
        let deadline = NIODeadline.now() + .nanoseconds(Int64(timeout * 1e9))
        let response = try await client.execute(call, deadline: deadline)
        let answer = try await response.body.collect(upTo: Self.largestAnswer)
        return WeChatAnswer(
            status: Int(response.status.code), headers: response.headers.map { ($0.name, $0.value) }, body: Array(buffer: answer))
    }

    public func shutdown() async {
        guard firstClose() else { return }
        try? await client.shutdown()
    }

    public func close() {
        guard firstClose() else { return }
        try? client.syncShutdown()
    }

    /// True the first time only.
    private func firstClose() -> Bool {
        closed.withLock { closed in
            defer { closed = true }
            return !closed
        }
    }

    deinit {
        // async-http-client insists on a shutdown before its client goes (it traps in debug
        // builds): a transport that was never closed is closed here, unless this runs on an event
        // loop, where a blocking shutdown would deadlock.
        if MultiThreadedEventLoopGroup.currentEventLoop == nil { close() }
    }
}
