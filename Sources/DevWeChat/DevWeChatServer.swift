public import Foundation
import Locks
import NIOCore
import NIOHTTP1
import NIOPosix

/// ``DevWeChatState`` behind HTTP/1.1 on loopback, with keep-alive and an injected latency per
/// exchange that costs no thread (answers are scheduled on the event loop), so hundreds of exchanges
/// can be in flight at once.
public final class DevWeChatServer: Sendable {
    public struct Configuration: Sendable {
        public var host = "127.0.0.1"
        /// 0: any free port.
        public var port = 0
        /// Added before every exchange answer. Default: none.
        public var latency: TimeInterval = 0
        /// Invalidate every token this often. Default: never.
        public var invalidateTokensEvery: TimeInterval?

        public init() {}
    }

    private let configuration: Configuration
    private let state: Mutex<DevWeChatState>
    private let group = MultiThreadedEventLoopGroup(numberOfThreads: max(2, System.coreCount))
    private let channel = Mutex<(any Channel)?>(nil)

    public init(configuration: Configuration, state: DevWeChatState) {
        self.configuration = configuration
        self.state = Mutex(state)
    }

    /// Binds and starts serving; returns the base URL (`http://127.0.0.1:PORT`).
    public func start() throws -> String {
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(DevWeChatHandler(server: self))
                }
            }
        let bound = try bootstrap.bind(host: configuration.host, port: configuration.port).wait()
        channel.withLock { $0 = bound }
        if let every = configuration.invalidateTokensEvery, every > 0 {
            group.next().scheduleRepeatedTask(initialDelay: .nanoseconds(Int64(every * 1e9)), delay: .nanoseconds(Int64(every * 1e9))) {
                [self] _ in
                invalidateTokens()
            }
        }
        return "http://\(configuration.host):\(bound.localAddress?.port ?? configuration.port)"
    }

    private var boundPort: Int { channel.withLock { $0?.localAddress?.port } ?? configuration.port }

    public var stats: DevWeChatState.Stats { state.withLock { $0.stats } }

    /// Tells it each user's current session key (checksession compares with it).
    public func registerSessionKeys(_ keys: [(appid: String, openid: String, sessionKey: String)]) {
        state.withLock { $0.registerSessionKeys(keys) }
    }

    /// Invalidates every token now (as `POST /dev/invalidate-tokens` does); returns how many.
    @discardableResult
    public func invalidateTokens() -> Int { state.withLock { $0.invalidateTokens() } }

    public func stop() {
        let bound = channel.withLock { $0 }
        try? bound?.close().wait()
        try? group.syncShutdownGracefully()
    }

    /// Answers one request; `then` gets the answer after the configured latency (exchanges only).
    fileprivate func answer(
        _ head: HTTPRequestHead, body: [UInt8], on loop: any EventLoop, then: @escaping @Sendable (DevWeChatState.Answer) -> Void
    ) {
        let (path, query) = Self.split(head.uri)
        let method = head.method.rawValue
        var headers: [String: String] = [:]
        for (name, value) in head.headers { headers[name.lowercased()] = value }
        let urlBase = "http://" + (headers["host"] ?? "\(configuration.host):\(boundPort)")
        let now = Date().timeIntervalSince1970
        let answer: DevWeChatState.Answer
        if method == "POST", path == "/wxa/business/getuserphonenumber" {
            // Sealed exchanges: the state decides and counts under the lock; the RSA and AES work
            // (a millisecond or so per call) runs outside it, on this event loop.
            let urlpath = urlBase + path
            let token = query["access_token"]
            answer = DevGateway.exchange(
                urlpath: urlpath, headers: headers, body: body, begin: { state.withLock { $0.beginExchange(token: token, now: now) } },
                plain: { plain in state.withLock { $0.exchangeCounted(token: token, body: plain, now: now) } },
                refuse: { refusal in state.withLock { $0.refuse(refusal.errcode, refusal.message) } })
        } else {
            answer = state.withLock {
                $0.answer(method: method, path: path, query: query, body: body, now: now, headers: headers, urlBase: urlBase)
            }
        }
        if path == "/wxa/business/getuserphonenumber", configuration.latency > 0 {
            loop.scheduleTask(in: .nanoseconds(Int64(configuration.latency * 1e9))) { then(answer) }
        } else {
            then(answer)
        }
    }

    static func split(_ uri: String) -> (path: String, query: [String: String]) {
        guard let mark = uri.firstIndex(of: "?") else { return (uri, [:]) }
        var query: [String: String] = [:]
        for pair in uri[uri.index(after: mark)...].split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1)
            let name = String(parts[0]).removingPercentEncoding ?? String(parts[0])
            let value = parts.count > 1 ? (String(parts[1]).removingPercentEncoding ?? String(parts[1])) : ""
            query[name] = value
        }
        return (String(uri[..<mark]), query)
    }
}

/// One connection: reads a request whole, answers it (or resets the connection).
private final class DevWeChatHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let server: DevWeChatServer
    private var head: HTTPRequestHead?
    private var body: [UInt8] = []

    init(server: DevWeChatServer) { self.server = server }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
            body = []
        case .body(var chunk):
            if body.count < 1 << 20 { body += chunk.readBytes(length: chunk.readableBytes) ?? [] }
        case .end:
            guard let head else { return }
            self.head = nil
            let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            server.answer(head, body: body, on: context.eventLoop) { answer in
                bound.value.1.eventLoop.execute {
                    let (handler, context) = bound.value
                    handler.respond(answer, keepAlive: head.isKeepAlive, context: context)
                }
            }
        }
    }

    private func respond(_ answer: DevWeChatState.Answer, keepAlive: Bool, context: ChannelHandlerContext) {
        guard context.channel.isActive else { return }
        switch answer {
        case .reset:
            context.close(promise: nil)
        case .json(let status, let text):
            send(status: status, body: Array(text.utf8), headers: [:], keepAlive: keepAlive, context: context)
        case .signed(let status, let body, let extra):
            send(status: status, body: body, headers: extra, keepAlive: keepAlive, context: context)
        }
    }

    private func send(status: Int, body: [UInt8], headers extra: [String: String], keepAlive: Bool, context: ChannelHandlerContext) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "application/json; charset=utf-8")
        headers.add(name: "Content-Length", value: String(body.count))
        for (name, value) in extra.sorted(by: { $0.key < $1.key }) { headers.add(name: name, value: value) }
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        let head = HTTPResponseHead(version: .http1_1, status: HTTPResponseStatus(statusCode: status), headers: headers)
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: body)))), promise: nil)
        let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if !keepAlive { done.whenComplete { [channel = context.channel] _ in channel.close(promise: nil) } }
    }
}
