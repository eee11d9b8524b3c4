import AsyncHTTPClient
public import Foundation
import Locks
import NIOCore
import NIOHTTP1
import NIOPosix

/// How decryptd reaches WeChat's server API: one POST of a JSON body, answered by a status and a
/// body. A protocol, so that tests can substitute an answer without a server.
public protocol WeChatTransport: Sendable {
    /// POSTs `body` to `path` (with its query) under the API's base URL within `timeout`.
    /// Throws when no answer came (refused, reset, timed out).
    func post(_ path: String, body: [UInt8], timeout: TimeInterval) async throws -> (status: Int, body: [UInt8])

    /// Closes the connections; no call may follow.
    func shutdown() async

    /// ``shutdown()`` for a caller on a thread of its own (never an event loop); once is enough.
    func close()
}

extension WeChatTransport {
    public func close() {}
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

    public func post(_ path: String, body: [UInt8], timeout: TimeInterval) async throws -> (status: Int, body: [UInt8]) {
        var request = HTTPClientRequest(url: baseURL + path)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.headers.add(name: "User-Agent", value: "decryptd")
        request.body = .bytes(ByteBuffer(bytes: body))
        let deadline = NIODeadline.now() + .nanoseconds(Int64(timeout * 1e9))
        let response = try await client.execute(request, deadline: deadline)
        let answer = try await response.body.collect(upTo: Self.largestAnswer)
        return (Int(response.status.code), Array(buffer: answer))
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
