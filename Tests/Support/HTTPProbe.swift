public import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A plain HTTP/1.1 client for the metrics and health endpoints on loopback, over a socket (no
/// dependency on FoundationNetworking or curl being installed).
public enum HTTPProbe {
    public struct Response: Sendable {
        public var status: Int
        public var head: String
        public var body: String
    }

    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    /// Sends `request` as is (so tests can also send broken ones) and reads until the server closes.
    public static func exchange(port: Int, _ request: String, timeout: TimeInterval = 10) throws -> Response {
        let fd = try connect(port: port, timeout: timeout)
        defer { close(fd) }
        try send(fd, request)
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = recv(fd, &buffer, buffer.count, 0)
            if count < 0 { throw Failure(description: "recv: \(String(cString: strerror(errno)))") }
            if count == 0 { break }
            received.append(contentsOf: buffer[0..<count])
        }
        let text = String(decoding: received, as: UTF8.self)
        guard let split = text.range(of: "\r\n\r\n") else { throw Failure(description: "no HTTP response head in \(text.prefix(200))") }
        let head = String(text[..<split.lowerBound])
        let statusField = head.split(separator: " ").dropFirst().first.flatMap { Int($0) }
        guard let status = statusField else { throw Failure(description: "no status in \(head)") }
        return Response(status: status, head: head, body: String(text[split.upperBound...]))
    }

    /// `GET path`.
    public static func get(port: Int, _ path: String, timeout: TimeInterval = 10) throws -> Response {
        try exchange(port: port, "GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", timeout: timeout)
    }

    /// A connected socket to 127.0.0.1:`port` whose reads and writes give up after `timeout`.
    public static func connect(port: Int, timeout: TimeInterval = 10) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Failure(description: "socket: \(String(cString: strerror(errno)))") }
        var limit = timeval(tv_sec: Int(timeout), tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw Failure(description: "connect to 127.0.0.1:\(port): \(reason)")
        }
        return fd
    }

    public static func send(_ fd: Int32, _ text: String) throws {
        let bytes = Array(text.utf8)
        var sent = 0
        while sent < bytes.count {
            let count = bytes[sent...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard count > 0 else { throw Failure(description: "send: \(String(cString: strerror(errno)))") }
            sent += count
        }
    }

    /// A loopback port that was free a moment ago (for a child process to listen on).
    public static func freePort() throws -> Int {
        let bound = try boundSocket()
        close(bound.fd)
        return bound.port
    }

    /// A loopback port whose connections complete (the kernel accepts them) but are never
    /// answered: a server that hangs. Close `fd` when done.
    public static func silentListener() throws -> (fd: Int32, port: Int) {
        let bound = try boundSocket()
        guard listen(bound.fd, 16) == 0 else {
            close(bound.fd)
            throw Failure(description: "listen: \(String(cString: strerror(errno)))")
        }
        return bound
    }

    /// A TCP socket bound to a loopback port of its own; the caller closes it.
    private static func boundSocket() throws -> (fd: Int32, port: Int) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        guard bound else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw Failure(description: "no free port: \(reason)")
        }
        return (fd, Int(UInt16(bigEndian: address.sin_port)))
    }
}

/// Prometheus text exposition, read into samples: `name{labels}` → value.
public struct PrometheusSamples: Sendable {
    public var values: [String: Double] = [:]

    public init(_ text: String) {
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
            values[String(line[..<space])] = value
        }
    }

    /// The sample `name` with exactly these labels (in the order the exposition writes them).
    public subscript(_ name: String, _ labels: KeyValuePairs<String, String> = [:]) -> Double? {
        let rendered = labels.isEmpty ? "" : "{" + labels.map { "\($0.key)=\"\($0.value)\"" }.joined(separator: ",") + "}"
        return values[name + rendered]
    }

    /// Every sample of `name`, whatever its labels.
    public func all(_ name: String) -> [String: Double] {
        values.filter { $0.key == name || $0.key.hasPrefix(name + "{") }
    }
}
