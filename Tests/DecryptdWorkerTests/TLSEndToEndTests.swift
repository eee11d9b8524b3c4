import DecryptdTestSupport
import DecryptdWorker
import Foundation
import Testing

/// The worker against a PostgreSQL server that scripts/test.sh starts with `ssl=on` and a
/// certificate from a throwaway CA (`pg_enable_tls`): verify-full against that CA works end to
/// end; another CA is refused at start-up.
@Suite("TLS to PostgreSQL (verify-full)", .enabled(if: TLSServer.enabled, "needs scripts/test.sh"), .ownThread(minutes: 5))
struct TLSEndToEndTests {
    @Test("a run over sslmode=verify-full: every job lands, and the connections are TLS")
    func workerOverTLS() throws {
        let url = try #require(TLSServer.url, "DECRYPTD_TEST_TLS_DATABASE_URL is not set: run scripts/test.sh")
        let pipeline = try Pipeline(partitions: 2, databaseURL: url)
        let tls = try pipeline.database.connection.query("SELECT ssl::text, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        #expect(tls.first?[0] == "true", "the test's own connection is TLS: \(tls)")
        let expectation = try pipeline.generate(jobs: 1500, seed: 77)
        let summary = try WorkerRun(pipeline.configuration(group: "tls")).wait()
        #expect(summary.drained && summary.abandoned == 0)
        try pipeline.expectTables(expectation)
    }

    @Test("a certificate from another CA: run refuses to start, exit 2 with one line")
    func wrongCA() throws {
        let url = try #require(TLSServer.url, "DECRYPTD_TEST_TLS_DATABASE_URL is not set: run scripts/test.sh")
        let wrongCA = try #require(TLSServer.wrongCA)
        let base = String(url[..<url.range(of: "sslrootcert=")!.lowerBound])
        let refused = base + "sslrootcert=" + wrongCA
        let log = NSTemporaryDirectory() + "tls-wrong-ca-\(UUID().uuidString).txt"
        defer { try? FileManager.default.removeItem(atPath: log) }
        let run = try ChildProcess(
            [
                decryptdBinary.path, "run", "--appid", "wx0", "--brokers", "127.0.0.1:1", "--startup-timeout", "5", "--database-url",
                refused,
            ],
            environment: ChildProcess.environmentWithoutDecryptdConfiguration, logPath: log
        )
        #expect(try run.wait(timeout: 60) == 2)
        let lines = run.output.split(separator: "\n").filter { $0.contains("database") }
        #expect(lines.count == 1, "\(run.output)")
        #expect(lines.first?.contains("certificate verify failed") == true, "\(run.output)")
    }
}

/// The TLS server scripts/test.sh starts (`pg_enable_tls`).
enum TLSServer {
    static let url = ProcessInfo.processInfo.environment["DECRYPTD_TEST_TLS_DATABASE_URL"]
    /// Another CA's certificate, which must be refused.
    static let wrongCA = ProcessInfo.processInfo.environment["DECRYPTD_TEST_WRONG_CA"]
    static let enabled = url != nil || ProcessInfo.processInfo.environment["CI"] == "true"
}
