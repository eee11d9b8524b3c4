import DedicatedThread
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A minimal HTTP/1.1 server for `/metrics` and health probes: GET and HEAD only, one request per
/// connection, bounded request size and read time (``requestDeadline`` for the whole request),
/// connections multiplexed on one thread so that slow or idle clients delay no probe.
/// It serves scrapers and orchestrators, not users.
///
/// `@unchecked Sendable`: its configuration never changes, and its mutable state (the listening
/// socket, the serving thread) is only touched under `lock`.
public final class HTTPEndpointServer: @unchecked Sendable {
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

    private let host: String
    private let requestedPort: Int
    private let handler: Handler
    private let lock = NSLock()
    private var listener: Int32 = -1
    private var stopping = false
    private var thread: DedicatedThread?

    public init(host: String = "0.0.0.0", port: Int, handler: @escaping Handler) {
        self.host = host
        self.requestedPort = port
        self.handler = handler
    }

    public struct StartError: Error, CustomStringConvertible {
        public var description: String
    }

    /// Binds and starts serving on a dedicated thread. Returns the bound port (useful with port 0).
    @discardableResult
    public func start() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw StartError(description: "socket: \(String(cString: strerror(errno)))") }
        var yes: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(requestedPort).bigEndian)
        guard inet_pton(AF_INET, host, &address.sin_addr) == 1 else {
            close(fd)
            throw StartError(description: "bad listen address \(host)")
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(fd, 128) == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw StartError(description: "cannot listen on \(host):\(requestedPort): \(reason)")
        }
        var actual = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &actual) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        lock.lock()
        listener = fd
        lock.unlock()
        thread = DedicatedThread(name: "decryptd-http") { [self] in serve(fd) }
        return Int(UInt16(bigEndian: actual.sin_port))
    }

    public func stop() {
        lock.lock()
        stopping = true
        lock.unlock()
        thread?.join()  // the poll(2) loop sees `stopping` within its timeout
    }

    private var isStopping: Bool {
        lock.lock()
        defer { lock.unlock() }
        return stopping
    }

    /// How long one client may take to send its request, in all, and to take its response.
    static let requestDeadline: TimeInterval = 2
    /// Connections served at once; beyond this the oldest is dropped for the newcomer.
    public static let maximumClients = 64

    /// A connection whose request is still arriving.
    private struct Client {
        var fd: Int32
        var request: [UInt8] = []
        var deadline: Date
    }

    /// One thread multiplexes every connection with poll(2): a client that sends nothing, or
    /// trickles its request, holds up no one else; it is dropped at its deadline, or when
    /// ``maximumClients`` newer ones arrive.
    private func serve(_ fd: Int32) {
        var clients: [Client] = []
        defer {
            for client in clients { close(client.fd) }
            close(fd)
        }
        var buffer = [UInt8](repeating: 0, count: 4096)
        while !isStopping {
            var descriptors =
                [pollfd(fd: fd, events: Int16(POLLIN), revents: 0)]
                + clients.map { pollfd(fd: $0.fd, events: Int16(POLLIN), revents: 0) }
            let nearest = clients.map(\.deadline).min().map { max(0, $0.timeIntervalSinceNow) } ?? 0.2
            guard poll(&descriptors, nfds_t(descriptors.count), Int32(min(0.2, nearest) * 1000) + 1) >= 0 else { continue }
            let now = Date()
            var waiting: [Client] = []
            for (index, var client) in clients.enumerated() {
                var ended = false
                if descriptors[index + 1].revents != 0 {
                    let count = recv(client.fd, &buffer, buffer.count, 0)
                    if count > 0 { client.request.append(contentsOf: buffer[0..<count]) } else { ended = true }
                }
                if ended || client.request.count >= 8192 || client.request.containsHeaderEnd {
                    respond(client.fd, to: client.request)
                    close(client.fd)
                } else if now >= client.deadline {
                    close(client.fd)  // too slow: dropped
                } else {
                    waiting.append(client)
                }
            }
            clients = waiting
            guard descriptors[0].revents & Int16(POLLIN) != 0 else { continue }
            let accepted = accept(fd, nil, nil)
            guard accepted >= 0 else { continue }
            if clients.count >= Self.maximumClients { close(clients.removeFirst().fd) }
            clients.append(Client(fd: accepted, deadline: now.addingTimeInterval(Self.requestDeadline)))
        }
    }

    private func respond(_ client: Int32, to request: [UInt8]) {
        var timeout = timeval(tv_sec: Int(Self.requestDeadline), tv_usec: 0)
        setsockopt(client, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let target = RequestTarget(request)
        let response = target.path.map(handler) ?? Response(status: 405, body: "method not allowed\n")
        let reason = [200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"][response.status] ?? "Status"
        var head = "HTTP/1.1 \(response.status) \(reason)\r\nContent-Type: \(response.contentType)\r\n"
        head += "Content-Length: \(response.body.count)\r\nConnection: close\r\n\r\n"
        var bytes = Array(head.utf8)
        if target.method != "HEAD" { bytes += response.body }
        // A client that does not read its response holds the loop up at most this long.
        let deadline = Date(timeIntervalSinceNow: Self.requestDeadline)
        var sent = 0
        while sent < bytes.count, Date() < deadline {
            let count = bytes[sent...].withUnsafeBytes { send(client, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard count > 0 else { return }
            sent += count
        }
    }
}

extension HTTPEndpointServer {
    /// What a request asks for, read from its request line alone: the method, and the path
    /// without its query for GET and HEAD (`nil` for any other method, or no path). The line is
    /// split on its bytes, not on characters: a space after a combining or prepending character
    /// (U+0604, say) is still a separator (found by fuzzing).
    public struct RequestTarget: Sendable, Equatable {
        public var method: String?
        public var path: String?

        public init(_ request: [UInt8]) {
            let line = request.prefix { $0 != UInt8(ascii: "\r") && $0 != UInt8(ascii: "\n") }
            let parts = line.split(separator: UInt8(ascii: " "))
            method = parts.first.map { String(decoding: $0, as: UTF8.self) }
            if parts.count >= 2, method == "GET" || method == "HEAD" {
                path = String(decoding: parts[1].prefix { $0 != UInt8(ascii: "?") }, as: UTF8.self)
            }
        }
    }
}

extension [UInt8] {
    fileprivate var containsHeaderEnd: Bool {
        guard count >= 4 else { return false }
        for index in 0...(count - 4) where self[index] == 13 && self[index + 1] == 10 && self[index + 2] == 13 && self[index + 3] == 10 {
            return true
        }
        return false
    }
}
