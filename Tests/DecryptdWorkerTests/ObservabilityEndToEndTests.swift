import DecryptdStore
import DecryptdTestSupport
import DecryptdWorker
import Foundation
import SyntheticLoad
import Testing

@Suite("What a running worker shows (end to end)", .enabled(if: IsolatedDatabase.enabled, "needs scripts/test.sh"), .ownThread(minutes: 10))
struct ObservabilityEndToEndTests {
    @Test(
        "/metrics counts every outcome the load holds; probes answer; lag drains to 0; logs, dead letters and failure rows hold no secret; SIGTERM exits 0"
    )
    func runningWorker() throws {
        let pipeline = try Pipeline(partitions: 4)
        let expectation = try pipeline.generate(jobs: 3000, seed: 41)
        let port = try HTTPProbe.freePort()
        let logPath = NSTemporaryDirectory() + "decryptd-child-observed-\(UUID().uuidString).log"
        let worker = try launchWorker(
            pipeline, group: "observed",
            extra: [
                "--metrics-port", "\(port)", "--log-level", "trace", "--progress-interval", "1",
            ], logPath: logPath)
        defer {
            if worker.exitStatus == nil { worker.kill(SIGKILL) }
            try? FileManager.default.removeItem(atPath: logPath)
        }

        var samples = PrometheusSamples("")
        try waitUntil(timeout: 120, "every job counted in /metrics") {
            guard let response = try? HTTPProbe.get(port: port, "/metrics"), response.status == 200 else { return false }
            samples = PrometheusSamples(response.body)
            return samples.all("decryptd_jobs_total").values.reduce(0, +) >= Double(expectation.jobs)
        }
        for (outcome, count) in expectation.counts {
            #expect(samples["decryptd_jobs_total", ["outcome": outcome]] == Double(count), "jobs_total{outcome=\(outcome)}")
        }
        #expect(samples.all("decryptd_jobs_total").values.reduce(0, +) == Double(expectation.jobs), "no job counted twice")
        #expect((samples["decryptd_session_key_fallbacks_total"] ?? 0) > 0, "the load has users whose newest key is not the one used")
        #expect(samples.all("decryptd_base64_repairs_total").values.reduce(0, +) > 0, "the load has damaged base64")
        #expect((samples["decryptd_batch_duration_seconds_count"] ?? 0) > 0)
        #expect(samples["decryptd_transient_retries_total", ["component": "postgres"]] == 0)
        #expect(try HTTPProbe.get(port: port, "/healthz").status == 200)
        #expect(try HTTPProbe.get(port: port, "/readyz").status == 200)
        #expect(try HTTPProbe.get(port: port, "/nothing-here").status == 404)

        // Lag is measured against committed offsets, so it reaches 0 once everything is committed.
        try waitUntil(timeout: 60, "lag 0 on every partition and nothing in flight") {
            guard let text = try? HTTPProbe.get(port: port, "/metrics").body else { return false }
            samples = PrometheusSamples(text)
            let lags = samples.all("decryptd_partition_lag")
            return lags.count == 4 && lags.values.allSatisfy { $0 == 0 } && samples["decryptd_in_flight_jobs"] == 0
        }

        worker.kill(SIGTERM)
        #expect(try worker.wait(timeout: 60) == 0)
        #expect(throws: HTTPProbe.Failure.self, "the endpoint is gone") { try HTTPProbe.get(port: port, "/healthz") }
        try pipeline.expectCommitted(group: "observed")

        // Nothing secret in the logs (at the most verbose level) or in the dead letters' own headers.
        let log = try String(contentsOfFile: logPath, encoding: .utf8)
        let progress = log.split(separator: "\n").filter { $0.hasSuffix("] progress") }
        #expect(progress.count >= 2, "progress lines at a steady interval on a long run")
        for field in ["jobs_per_s=", "jobs=", "in_flight=", "lag=", "outcome.ok="] {
            #expect(progress.last?.contains(field) == true, "a progress line shows \(field): \(progress.last ?? "")")
        }
        let secrets = SecretScanner(try secretsOf(pipeline, expectation))
        #expect(secrets.count > 3000)
        let phone = try #require(expectation.members.values.first?.phone)
        #expect(secrets.leak(in: "a line with \(phone) inside") == phone, "the scanner finds what it looks for")
        #expect(secrets.leak(in: log) == nil, "a secret in the log")
        let added = try pipeline.readAll("wechat.phone.dlq").flatMap { letter in
            letter.headers.filter { $0.name.hasPrefix("decrypt.") }.compactMap { $0.value.map { String(decoding: $0, as: UTF8.self) } }
        }
        #expect(added.count > 9 * expectation.failures.count / 2)
        #expect(secrets.leak(in: added.joined(separator: "\n")) == nil, "a secret in a dead letter's decrypt.* headers")
        let details = try pipeline.database.connection.query("SELECT detail FROM decrypt_failures").compactMap { $0[0] }
        #expect(details.count == expectation.failures.count)
        #expect(secrets.leak(in: details.joined(separator: "\n")) == nil, "a secret in the failures table's details")
    }

    /// Every session key, phone number and encryptedData of the load.
    func secretsOf(_ pipeline: Pipeline, _ expectation: LoadGenerator.Expectation) throws -> Set<String> {
        var secrets = Set(try pipeline.database.connection.query("SELECT session_key FROM wechat_sessions").compactMap { $0[0] })
        for member in expectation.members.values { secrets.insert(member.phone) }
        for job in try pipeline.readAll("wechat.phone.jobs") {
            guard let value = job.value,
                let object = try? JSONSerialization.jsonObject(with: Data(value)) as? [String: Any],
                let encryptedData = object["encryptedData"] as? String, encryptedData.count >= 16
            else { continue }
            secrets.insert(encryptedData)
        }
        return secrets
    }
}

/// Finds any of many secrets in a text in one pass: each secret is known by its first 16 bytes (or
/// all of it when shorter), and every window of the text of such a length is looked up.
struct SecretScanner {
    private var signatures: [Int: Set<ArraySlice<UInt8>>] = [:]
    private(set) var count = 0

    init(_ secrets: Set<String>) {
        for secret in secrets {
            let bytes = Array(secret.utf8)
            signatures[min(bytes.count, 16), default: []].insert(bytes.prefix(16))
        }
        count = secrets.count
    }

    /// The first secret signature found in `text`, if any.
    func leak(in text: String) -> String? {
        let bytes = Array(text.utf8)
        for (length, set) in signatures where bytes.count >= length {
            for start in 0...(bytes.count - length) where set.contains(bytes[start..<(start + length)]) {
                return String(decoding: bytes[start..<(start + length)], as: UTF8.self)
            }
        }
        return nil
    }
}
