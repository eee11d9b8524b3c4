import Locks
import NIOCore
import NIOEmbedded
import NIOHTTP1
import NIOPosix

/// `/metrics` and the health probes, over SwiftNIO's HTTP/1 server (the one dev-wechat uses):
/// GET and HEAD only, one request per connection, every connection closed at most
/// ``requestDeadline`` after it was accepted (request and response included), at most
/// ``maximumClients`` open at once (a newcomer drops the oldest), so that slow or idle clients
/// delay no probe. It serves scrapers and orchestrators, not users. Requests are parsed by NIO;
/// ``RequestTarget`` routes what it parsed.
public final class HTTPEndpointServer: Sendable {
    public struct Response: Sendable {
        public var status: Int
        public var contentType: String
        public var body: [UInt8]

        public init(status: Int, contentType: String = "text/plain; charset=utf-8", body: String) {
            self.status = status
            self.contentType = contentType
            self.body = Array(body.utf8)
        }
    }

    public typealias Handler = @Sendable (_ path: String) -> Response

    /// How long one client may take to send its request and take its response, in all.
    public static let requestDeadline: Duration = .seconds(2)
    /// Connections served at once; beyond this the oldest is dropped for the newcomer.
    public static let maximumClients = 64

    private let host: String
    private let requestedPort: Int
    private let handler: Handler
    /// One event loop: the endpoint serves a few requests a second.
    private let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    private let listener = Mutex<(any Channel)?>(nil)
    private let clients = Clients()

    public init(host: String = "0.0.0.0", port: Int, handler: @escaping Handler) {
        self.host = host
        self.requestedPort = port
        self.handler = handler
    }

    public struct StartError: Error, CustomStringConvertible {
        public var description: String
    }

    /// Binds and starts serving. Returns the bound port (useful with port 0).
    @discardableResult
    public func start() throws -> Int {
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 128)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { [handler, clients] channel in
                channel.eventLoop.makeCompletedFuture {
                    clients.admit(channel)
                    channel.eventLoop.scheduleTask(in: TimeAmount(Self.requestDeadline)) { channel.close(promise: nil) }
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(EndpointHandler(handler: handler))
                }
            }
        let bound: any Channel
        do {
            bound = try bootstrap.bind(host: host, port: requestedPort).wait()
        } catch {
            try? group.syncShutdownGracefully()
            throw StartError(description: "cannot listen on \(host):\(requestedPort): \(error)")
        }
        listener.withLock { $0 = bound }
        return bound.localAddress?.port ?? requestedPort
    }

    /// Closes the port and every connection, and waits for the event loop to end.
    public func stop() {
        let bound = listener.withLock { channel in
            defer { channel = nil }
            return channel
        }
        try? bound?.close().wait()
        clients.closeAll()
        try? group.syncShutdownGracefully()
    }
}

extension HTTPEndpointServer {
    /// What a request asks for: its method, and the path without its query for GET and HEAD (`nil`
    /// for any other method).
    public struct RequestTarget: Sendable, Equatable {
        public var method: String
        public var path: String?

        public init(method: String, uri: String) {
            self.method = method
            if method == "GET" || method == "HEAD" {
                path = String(decoding: uri.utf8.prefix { $0 != UInt8(ascii: "?") }, as: UTF8.self)
            }
        }
    }

    /// The open connections, oldest first: a newcomer past ``maximumClients`` drops the oldest.
    final class Clients: Sendable {
        private let open = Mutex<[ObjectIdentifier: (order: Int, channel: any Channel)]>([:])
        private let next = Mutex(0)

        func admit(_ channel: any Channel) {
            let id = ObjectIdentifier(channel)
            let order = next.withLock { next in
                defer { next += 1 }
                return next
            }
            let dropped = open.withLock { open -> (any Channel)? in
                var oldest: (any Channel)?
                if open.count >= HTTPEndpointServer.maximumClients, let first = open.min(by: { $0.value.order < $1.value.order }) {
                    oldest = open.removeValue(forKey: first.key)?.channel
                }
                open[id] = (order, channel)
                return oldest
            }
            dropped?.close(promise: nil)
            channel.closeFuture.whenComplete { [self] _ in _ = open.withLock { $0.removeValue(forKey: id) } }
        }

        func closeAll() {
            let all = open.withLock { open in
                defer { open = [:] }
                return open.values.map(\.channel)
            }
            for channel in all { try? channel.close().wait() }
        }
    }
}

/// Answers the one request of a connection, then closes it: anything a client sends after its
/// first request (pipelined requests) is ignored, never answered (found by fuzzing: answering each
/// pipelined request while the connection was closing recursed on an embedded channel).
final class EndpointHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private enum Progress {
        case waiting
        case reading(HTTPEndpointServer.RequestTarget)
        case answered
    }

    private let handler: HTTPEndpointServer.Handler
    private let progress = Mutex(Progress.waiting)

    init(handler: @escaping HTTPEndpointServer.Handler) {
        self.handler = handler
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = unwrapInboundIn(data)
        let request: HTTPEndpointServer.RequestTarget? = progress.withLock { progress in
            switch (progress, part) {
            case (.waiting, .head(let head)):
                progress = .reading(HTTPEndpointServer.RequestTarget(method: head.method.rawValue, uri: head.uri))
                return nil
            case (.reading(let target), .end):
                progress = .answered
                return target
            default:
                return nil  // a body, or anything after the first request
            }
        }
        guard let request else { return }
        let response = request.path.map(handler) ?? HTTPEndpointServer.Response(status: 405, body: "method not allowed\n")
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: response.contentType)
        headers.add(name: "Content-Length", value: String(response.body.count))
        headers.add(name: "Connection", value: "close")
        let head = HTTPResponseHead(version: .http1_1, status: HTTPResponseStatus(statusCode: response.status), headers: headers)
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        if request.method != "HEAD" {
            context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: response.body)))), promise: nil)
        }
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        context.close(promise: nil)
    }
}

extension HTTPEndpointServer {
    /// What the server answers to `request`, bytes as a client sent them, through the same pipeline
    /// (NIO's HTTP/1 parser, then ``RequestTarget``) on an embedded channel: for the fuzz target and
    /// the tests.
    public static func answer(to request: [UInt8], handler: @escaping Handler) -> [UInt8] {
        let channel = EmbeddedChannel()
        // Accepting a closed channel: the endpoint closes it after its answer, and the pipeline must
        // still be torn down (a channel left unfinished kept its handlers: 7 KB per request, found by fuzzing).
        defer { _ = try? channel.finish(acceptAlreadyClosed: true) }
        do {
            try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
            try channel.pipeline.syncOperations.addHandler(EndpointHandler(handler: handler))
        } catch {
            preconditionFailure("an embedded pipeline cannot refuse its handlers: \(error)")
        }
        _ = try? channel.writeInbound(channel.allocator.buffer(bytes: request))
        var answer: [UInt8] = []
        while let part = try? channel.readOutbound(as: IOData.self) {
            if case .byteBuffer(let buffer) = part { answer += buffer.readableBytesView }
        }
        return answer
    }
}
