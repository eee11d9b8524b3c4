import DecryptdStore
import DecryptdTestSupport
import Foundation
import PhoneDecryption
import SyntheticLoad
import Testing

/// What reads decryptd's output, the real programs: Debian's Prometheus and promtool against a
/// running worker's /metrics, every query of the Grafana dashboard sent to that Prometheus, and
/// the HTML report in headless Chromium (scripts/setup.sh installs all three).
@Suite(
    "What reads its output: Prometheus, promtool, the dashboard's queries, Chromium (end to end)",
    .enabled(if: IsolatedDatabase.enabled, "needs scripts/test.sh"), .ownThread(minutes: 10))
struct ConsumersEndToEndTests {
    static let dashboard = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent(
        "../../deploy/grafana/dashboards/decryptd.json"
    ).standardizedFileURL

    /// A worker serving /metrics on a free port, for code jobs against `wechat`, and Prometheus scraping it.
    static func scrapedWorker(_ pipeline: Pipeline, wechat: WeChatStandIn) throws -> (worker: ChildProcess, port: Int, PrometheusServer) {
        let metricsPort = try HTTPProbe.freePort()
        let worker = try ChildProcess(
            [
                decryptdBinary.path, "run", "--group", "scraped", "--metrics-port", "\(metricsPort)", "--progress-interval", "0",
                "--exchange-concurrency", "16", "--kafka-property", "session.timeout.ms=6000",
            ], environment: pipeline.binaryEnvironment(wechat: wechat),
            logPath: NSTemporaryDirectory() + "decryptd-scraped-\(UUID().uuidString).log")
        let prometheus = try PrometheusServer(scraping: metricsPort)
        // A first sample from before any job: rate() counts only what grows between two samples, so a
        // load finished before Prometheus's first scrape would leave every rate at 0 (and its quantiles NaN).
        do {
            try waitUntil(timeout: 120, "Prometheus has scraped the idle worker") {
                (try? prometheus.query("sum(decryptd_jobs_total)").first?.value) == 0
            }
        } catch {
            worker.kill(SIGKILL)
            throw error
        }
        return (worker, metricsPort, prometheus)
    }

    @Test("Prometheus scrapes the run's counts by outcome; promtool finds no problem; every dashboard query returns data")
    func prometheus() throws {
        let wechat = try WeChatStandIn(latency: 0.01)
        let pipeline = try Pipeline(partitions: 4)
        let (worker, metricsPort, prometheus) = try Self.scrapedWorker(pipeline, wechat: wechat)
        defer { if worker.exitStatus == nil { worker.kill(SIGKILL) } }
        // Encrypted and code jobs, every failure code, transient answers: every metric the dashboard reads.
        let expectation = try pipeline.generate(jobs: 3000, codeShare: 0.5, transientShare: 0.1, seed: 43, wechat: wechat)

        try waitUntil(timeout: 180, "Prometheus has scraped every job") {
            (try? prometheus.query("sum(decryptd_jobs_total)").first?.value) == Double(expectation.jobs)
        }
        let byOutcome = Dictionary(
            try prometheus.query("decryptd_jobs_total").map { ($0.labels["outcome"] ?? "", $0.value) }, uniquingKeysWith: +)
        // Parking is off in this run (the harness's default): "parked" exists, at 0, like every series.
        #expect(
            byOutcome == expectation.counts.mapValues(Double.init).merging(["parked": 0]) { a, _ in a },
            "decryptd_jobs_total by outcome, as Prometheus read it")
        #expect(Set(byOutcome.keys) == Set(FailureReason.allCases.map(\.rawValue) + ["ok", "parked"]), "the load had every outcome")

        // promtool's lint of the exposition format and of metric and label naming.
        let exposition = try HTTPProbe.get(port: metricsPort, "/metrics").body
        let check = try PrometheusServer.promtool(["check", "metrics"], input: exposition)
        #expect(check.status == 0 && check.output.isEmpty, "promtool check metrics: \(check.output)")

        // A few more scrapes after the last job, so that every rate has two points in its window.
        Thread.sleep(forTimeInterval: 3)
        let expressions = try Self.dashboardExpressions()
        #expect(expressions.count >= 15, "the dashboard's queries were found")
        for expression in expressions {
            let result = try prometheus.query(expression)
            #expect(!result.isEmpty, "no data for the dashboard's \(expression)")
            #expect(result.contains { $0.value.isFinite }, "only NaN for the dashboard's \(expression)")
        }
        #expect(try prometheus.query("sum by (outcome) (rate(decryptd_no_such_metric_total[1m]))").isEmpty, "the check can fail")

        worker.kill(SIGTERM)
        #expect(try worker.wait(timeout: 60) == 0)
    }

    /// A worker that has served only encrypted jobs so far: every metric family the dashboard reads
    /// must exist already (at 0), or its panels show "no data" and rates over it have gaps.
    @Test("encrypted jobs only: every metric family the dashboard reads exists, the exchanges at 0")
    func metricsBeforeFirstUse() throws {
        let wechat = try WeChatStandIn(latency: 0.01)
        let pipeline = try Pipeline(partitions: 2)
        let (worker, _, prometheus) = try Self.scrapedWorker(pipeline, wechat: wechat)
        defer { if worker.exitStatus == nil { worker.kill(SIGKILL) } }
        let expectation = try pipeline.generate(jobs: 500, codeShare: 0, transientShare: 0, seed: 47)
        #expect(expectation.kinds[.code] == nil, "no code job in the load")
        try waitUntil(timeout: 120, "Prometheus has scraped every job") {
            (try? prometheus.query("sum(decryptd_jobs_total)").first?.value) == Double(expectation.jobs)
        }
        let families = Set(
            try Self.dashboardExpressions().flatMap { expression in
                expression.matches(of: /decryptd_[a-z0-9_]+/).map { String($0.output) }
            })
        #expect(families.contains("decryptd_exchanges_total") && families.contains("decryptd_token_fetches_total"))
        for family in families.sorted() {
            #expect(try !prometheus.query("{__name__=\"\(family)\"}").isEmpty, "\(family) is not exposed yet")
        }
        #expect(try prometheus.query("sum(decryptd_exchanges_total)").first?.value == 0, "no exchange counted")
        // The bad_padding jobs asked checksession (the appid has a secret), with one shared token.
        #expect((try prometheus.query("sum(decryptd_checksession_total)").first?.value ?? 0) > 0)
        #expect(try prometheus.query("decryptd_token_fetches_total{appid=\"\(Pipeline.appid)\",result=\"ok\"}").first?.value == 1)
        #expect(try prometheus.query("{__name__=\"decryptd_no_such_metric_total\"}").isEmpty, "the check can fail")
        worker.kill(SIGTERM)
        #expect(try worker.wait(timeout: 60) == 0)
    }

    @Test("the HTML report in headless Chromium: it loads with no console error, and its chart has one bar per hour with data")
    func htmlReport() throws {
        let pipeline = try Pipeline(partitions: 1)
        // Failures over the last eight hours, with hours between that had none.
        let spread: [(hoursAgo: Int, reason: String, count: Int)] = [
            (0, "bad_padding", 5), (0, "code_invalid", 2), (1, "session_not_found", 9), (3, "invalid_iv", 1),
            (3, "bad_padding", 4), (4, "appid_mismatch", 3), (7, "wechat_error", 6),
        ]
        var offset = 0
        for (hoursAgo, reason, count) in spread {
            for _ in 0..<count {
                offset += 1
                _ = try pipeline.database.connection.execute(
                    """
                    INSERT INTO decrypt_failures (appid, openid, reason, detail, source_topic, source_partition, source_offset, failed_at)
                    VALUES ($1, 'o-report', $2, 'seeded', 'wechat.phone.jobs', 0, $3,
                            date_trunc('hour', now()) - make_interval(hours => $4) + interval '1 minute')
                    """, [Pipeline.appid, reason, String(offset), String(hoursAgo)])
            }
        }
        let page = NSTemporaryDirectory() + "decryptd-report-\(UUID().uuidString).html"
        defer { try? FileManager.default.removeItem(atPath: page) }
        let report = try pipeline.decryptd(["report", "--format", "html", "--since", "24h"])
        #expect(report.status == 0)
        try report.text.write(toFile: page, atomically: true, encoding: .utf8)

        // Every bar of the chart as the browser laid it out: its left edge and the hour in its tooltip.
        let bars = """
            JSON.stringify([...document.querySelectorAll('svg[aria-label="failures per hour by reason"] rect')]
              .map(r => ({left: Math.round(r.getBoundingClientRect().left), height: r.getBoundingClientRect().height,
                          hour: r.querySelector('title').textContent.split(' ')[0]}))
              .filter(r => r.height > 0))
            """
        let rendered = try PrometheusServer.run(
            ["/usr/bin/env", "python3", Self.renderPage.path, page, bars], input: nil)
        #expect(rendered.status == 0, "render-page: \(rendered.output)")
        let answer = try JSONSerialization.jsonObject(with: Data(rendered.output.utf8)) as? [String: Any]
        let errors = answer?["errors"] as? [String] ?? ["no answer"]
        #expect(errors.isEmpty, "the page logged errors: \(errors)")
        let segments = try JSONSerialization.jsonObject(with: Data((answer?["value"] as? String ?? "[]").utf8)) as? [[String: Any]] ?? []
        let hoursShown = Set(segments.compactMap { $0["hour"] as? String })
        let columns = Set(segments.compactMap { $0["left"] as? Int })
        #expect(hoursShown.count == Set(spread.map(\.hoursAgo)).count, "one bar per hour with data: \(hoursShown.sorted())")
        #expect(columns.count == hoursShown.count, "each hour's bar in a column of its own")
        #expect(segments.count == spread.count, "a segment per reason in each hour's bar")
    }

    static let renderPage = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent(
        "../../scripts/lib/render-page.py"
    ).standardizedFileURL

    /// Every "expr" in the dashboard's JSON, wherever it sits.
    static func dashboardExpressions() throws -> [String] {
        func collect(_ value: Any) -> [String] {
            if let object = value as? [String: Any] {
                return ((object["expr"] as? String).map { [$0] } ?? []) + object.values.flatMap(collect)
            }
            if let array = value as? [Any] { return array.flatMap(collect) }
            return []
        }
        return collect(try JSONSerialization.jsonObject(with: Data(contentsOf: dashboard)))
    }
}

/// Debian's Prometheus on a free loopback port, scraping one target every second, with its data in
/// a temporary directory; stopped and removed when released.
final class PrometheusServer {
    let port: Int
    private let directory: String
    private let process: ChildProcess

    struct Sample {
        var labels: [String: String]
        var value: Double
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    init(scraping target: Int) throws {
        port = try HTTPProbe.freePort()
        directory = NSTemporaryDirectory() + "decryptd-prometheus-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let configuration = """
            global:
              scrape_interval: 1s
              evaluation_interval: 1s
            scrape_configs:
              - job_name: decryptd
                static_configs:
                  - targets: ["127.0.0.1:\(target)"]
            """
        try configuration.write(toFile: directory + "/prometheus.yml", atomically: true, encoding: .utf8)
        process = try ChildProcess(
            [
                "/usr/bin/prometheus", "--config.file=\(directory)/prometheus.yml", "--storage.tsdb.path=\(directory)/data",
                "--web.listen-address=127.0.0.1:\(port)", "--log.level=warn",
            ], logPath: directory + "/prometheus.log")
        try waitUntil(timeout: 60, "Prometheus ready") { (try? Self.get(port: port, "/-/ready"))?.status == 200 }
    }

    deinit {
        process.kill(SIGTERM)
        _ = try? process.wait(timeout: 30)
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// An instant query through the HTTP API; throws unless Prometheus answers "success".
    func query(_ expression: String) throws -> [Sample] {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        let encoded = expression.addingPercentEncoding(withAllowedCharacters: allowed) ?? expression
        let response = try Self.get(port: port, "/api/v1/query?query=\(encoded)")
        let answer = try JSONSerialization.jsonObject(with: Data(response.body.utf8)) as? [String: Any]
        guard answer?["status"] as? String == "success", let data = answer?["data"] as? [String: Any] else {
            throw Failure(description: "Prometheus refused \(expression): \(response.body.prefix(300))")
        }
        return (data["result"] as? [[String: Any]] ?? []).map { series in
            let value = (series["value"] as? [Any])?.last as? String
            return Sample(labels: series["metric"] as? [String: String] ?? [:], value: value.flatMap(Double.init) ?? .nan)
        }
    }

    /// HTTP/1.0, so that Go's server answers without chunking and closes the connection.
    static func get(port: Int, _ path: String) throws -> HTTPProbe.Response {
        try HTTPProbe.exchange(port: port, "GET \(path) HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
    }

    /// `promtool ARGUMENTS` with `input` on its standard input.
    static func promtool(_ arguments: [String], input: String) throws -> (status: Int32, output: String) {
        try run(["/usr/bin/promtool"] + arguments, input: input)
    }

    /// Runs a program (with `input` on its standard input) and returns its status and everything it printed.
    static func run(_ arguments: [String], input: String?) throws -> (status: Int32, output: String) {
        let base = NSTemporaryDirectory() + "decryptd-tool-\(UUID().uuidString)"
        defer { for suffix in [".in", ".out"] { try? FileManager.default.removeItem(atPath: base + suffix) } }
        try (input ?? "").write(toFile: base + ".in", atomically: true, encoding: .utf8)
        let quoted = arguments.map { "'" + $0.replacingOccurrences(of: "'", with: "'\\''") + "'" }.joined(separator: " ")
        let child = try ChildProcess(["/bin/sh", "-c", "exec \(quoted) < '\(base).in'"], logPath: base + ".out")
        let status = try child.wait(timeout: 120)
        return (status, (try? String(contentsOfFile: base + ".out", encoding: .utf8)) ?? "")
    }
}
