import DecryptdTestSupport
import Foundation
import MetricsEndpoint
import Testing

@Suite("Metrics and health endpoint server", .ownThread(minutes: 2))
struct HTTPEndpointServerTests {
    /// A server on a free loopback port answering a few fixed paths.
    func withServer(_ body: (Int) throws -> Void) throws {
        let server = HTTPEndpointServer(host: "127.0.0.1", port: 0) { path in
            switch path {
            case "/metrics": .init(status: 200, contentType: "text/plain; version=0.0.4", body: "up 1\n")
            case "/readyz": .init(status: 503, body: "not ready\n")
            default: .init(status: 404, body: "not found\n")
            }
        }
        let port = try server.start()
        defer { server.stop() }
        try body(port)
    }

    @Test("the request line is split on its bytes: a space after a prepending character still ends the path")
    func requestLineBytes() {
        // U+0604 (UTF-8 D8 84) forms one grapheme cluster with the space after it.
        let request = Array("HEAD /he".utf8) + [0xD8, 0x84] + Array(" HTTP/1.1\r\n\r\n".utf8)
        let target = HTTPEndpointServer.RequestTarget(request)
        #expect(target.method == "HEAD")
        #expect(target.path == "/he\u{604}")
        #expect(HTTPEndpointServer.RequestTarget(Array("GET /metrics?x=1 HTTP/1.1\r\n".utf8)).path == "/metrics")
        #expect(HTTPEndpointServer.RequestTarget(Array("POST /metrics HTTP/1.1\r\n".utf8)).path == nil)
    }

    @Test("GET and HEAD reach the handler with the path alone; anything else is 405")
    func methods() throws {
        try withServer { port in
            let metrics = try HTTPProbe.get(port: port, "/metrics?name=up")
            #expect(metrics.status == 200)
            #expect(metrics.body == "up 1\n")
            #expect(metrics.head.contains("Content-Type: text/plain; version=0.0.4"))
            #expect(metrics.head.contains("Content-Length: 5"))
            #expect(try HTTPProbe.get(port: port, "/readyz").status == 503)
            #expect(try HTTPProbe.get(port: port, "/elsewhere").status == 404)

            let head = try HTTPProbe.exchange(port: port, "HEAD /metrics HTTP/1.1\r\n\r\n")
            #expect(head.status == 200)
            #expect(head.head.contains("Content-Length: 5"))
            #expect(head.body.isEmpty)

            #expect(try HTTPProbe.exchange(port: port, "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n").status == 405)
            #expect(try HTTPProbe.exchange(port: port, "\r\n\r\n").status == 405)
            // An endless request is cut off (the client may see a reset: the server closes with
            // bytes unread), and the server goes on.
            _ = try? HTTPProbe.exchange(port: port, String(repeating: "x", count: 200_000))
            #expect(try HTTPProbe.get(port: port, "/metrics").status == 200)
        }
    }

    @Test("a client that trickles its request is dropped at the deadline, so probes behind it are answered")
    func trickle() throws {
        try withServer { port in
            let slow = try HTTPProbe.connect(port: port)
            defer { close(slow) }
            try HTTPProbe.send(slow, "GET /metr")
            let trickling = Thread {
                // One byte every 0.25 s for 8 s: each read is quick, the request never ends.
                for _ in 0..<32 {
                    Thread.sleep(forTimeInterval: 0.25)
                    guard (try? HTTPProbe.send(slow, "i")) != nil else { return }
                }
            }
            trickling.start()
            Thread.sleep(forTimeInterval: 0.2)
            let started = Date()
            let probe = try HTTPProbe.get(port: port, "/metrics", timeout: 20)
            #expect(probe.status == 200)
            #expect(Date().timeIntervalSince(started) < 6, "the probe waited for the trickling client")
        }
    }

    @Test("idle clients hold up no probe; past the connection limit the oldest is dropped")
    func idleClients() throws {
        try withServer { port in
            // Connected, silent: each used to hold the probes behind it up to the request deadline.
            let idle = try (0..<(HTTPEndpointServer.maximumClients + 6)).map { _ in try HTTPProbe.connect(port: port, timeout: 1) }
            defer { for descriptor in idle { close(descriptor) } }
            try HTTPProbe.send(idle[0], "GET /metr")
            let started = Date()
            let probe = try HTTPProbe.get(port: port, "/metrics", timeout: 20)
            #expect(probe.status == 200)
            #expect(Date().timeIntervalSince(started) < 1.5, "the probe waited behind idle clients")
            // The first connections were dropped for newer ones (a read sees the end, not a timeout).
            var byte: UInt8 = 0
            #expect(recv(idle[0], &byte, 1, 0) == 0)
            // The rest are dropped at the deadline, 2 s after they were accepted: a read sees the end.
            // (Each read gives up after the socket's 1 s timeout; under load the server may accept late.)
            let last = idle[idle.count - 1]
            let giveUp = Date(timeIntervalSinceNow: 15)
            var result = recv(last, &byte, 1, 0)
            while result < 0, errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR, Date() < giveUp {
                result = recv(last, &byte, 1, 0)
            }
            #expect(result == 0, "an idle client outlived the request deadline")
        }
    }

    @Test("stop closes the port")
    func stop() throws {
        var port = 0
        try withServer { port = $0 }
        #expect(throws: HTTPProbe.Failure.self) { try HTTPProbe.get(port: port, "/metrics") }
    }
}
