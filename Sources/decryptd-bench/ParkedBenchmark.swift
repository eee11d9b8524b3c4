import ArgumentParser
import DecryptdStore
import DecryptdWorker
import Dispatch
import Foundation
import KafkaClient
import Logging
import PhoneDecryption
import PostgresClient
import SyntheticLoad

/// `decryptd-bench parked`: the figures of SPEC's "Waiting for a session key" and "Outcome records"
/// (issue 37), each measured in the same run as what it is compared with:
/// 1. jobs/s of a backlog in which a share of the keys land late, beside the same backlog with
///    every key present, rounds interleaved (parking must not slow the normal path);
/// 2. heal latency: from a late key's INSERT to its job's member row, p50 and p99;
/// 3. the cost per second of noticing arrivals (10 keys/s) with 1,000 and with 1,000,000 parked
///    jobs: CPU of the worker's process and of PostgreSQL;
/// 4. produce → member row and produce → outcome record at a steady offered load, with
///    librdkafka's default `fetch.wait.max.ms` and with 10 ms.
/// The worker runs in this process (the DecryptdWorker library), against the embedded broker and
/// a scratch database in which this benchmark makes and drops schemas of its own.
struct ParkedBenchmark: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "parked",
        abstract: "Parked jobs and outcome records: throughput with late keys, heal latency, cost at 1M parked, end-to-end latency."
    )

    @Option(name: .customLong("database-url"), help: "A scratch database; the benchmark creates and drops its own schemas.")
    var databaseURL: String

    @Option(help: "Jobs per throughput round.")
    var jobs = 100_000

    @Option(name: .customLong("late-share"), help: "Share of jobs whose key lands late.")
    var lateShare = 0.05

    @Option(help: "Interleaved rounds of each throughput variant.")
    var rounds = 2

    @Option(help: "Parked jobs for the scaling figure (compared with 1,000).")
    var parked = 1_000_000

    @Option(help: "Offered loads for the latency figures, jobs/s, comma-separated.")
    var rates = "1000,5000"

    @Option(help: "Seconds of each latency run.")
    var seconds = 15.0

    @Option(help: "Which parts: all, throughput, scaling, latency.")
    var only = "all"

    func run() throws {
        var logger = Logger(label: "decryptd.bench")
        logger.logLevel = .error
        let host = ProcessInfo.processInfo.activeProcessorCount
        print("decryptd-bench parked: \(host) cores")
        if only == "all" || only == "throughput" { try throughput(logger: logger) }
        if only == "all" || only == "scaling" { try scaling(logger: logger) }
        if only == "all" || only == "latency" { try latency(logger: logger) }
    }

    // MARK: - 1 and 2: throughput with late keys, heal latency

    func throughput(logger: Logger) throws {
        var present: [Double] = []
        var late: [Double] = []
        var heals: [(p50: Double, p99: Double, healed: Int, late: Int)] = []
        for round in 0..<rounds {
            for withLate in [false, true] {
                let scratch = try Scratch(databaseURL: databaseURL, partitions: Int32(jobs / 8000 + 4))
                defer { scratch.drop() }
                var plan = LoadGenerator.Plan(jobs: jobs, appid: Scratch.appid)
                plan.seed = UInt64(round + 1)
                plan.lateKeyShare = lateShare
                let expectation = try scratch.produce(plan, logger: logger)
                if !withLate {
                    try scratch.database.insertSessionKeys(expectation.lateSessions.map { ($0.user, $0.sessionKey, 1_700_000_500) })
                }
                var configuration = scratch.configuration()
                configuration.exitAtEnd = true
                let summary = try Worker(configuration: configuration, logger: logger).run()
                (withLate ? { late.append(summary.perSecond) } : { present.append(summary.perSecond) })()
                print(
                    "  round \(round + 1), \(withLate ? "\(Int(lateShare * 100))% keys late" : "every key present"): \(Int(summary.perSecond)) jobs/s"
                        + (withLate ? ", \(summary.outcomes["parked"] ?? 0) parked" : ""))
                if withLate { heals.append(try heal(scratch, expectation.lateSessions, logger: logger)) }
            }
        }
        // Each round's pair ran back to back: their ratio holds while the host's speed drifts.
        let ratios = zip(late, present).map { $0 / $1 }
        let ratio = median(ratios)
        print(
            "throughput: every key present \(present.map { String(Int($0)) }.joined(separator: ", ")) jobs/s, \(Int(lateShare * 100))% late \(late.map { String(Int($0)) }.joined(separator: ", ")) jobs/s; late ÷ present per round \(ratios.map { String(format: "%.3f", $0) }.joined(separator: ", ")), median \(String(format: "%.3f", ratio))"
        )
        for (index, heal) in heals.enumerated() {
            print(
                "heal latency, round \(index + 1): \(heal.healed)/\(heal.late) healed; key INSERT → member row p50 \(ms(heal.p50)), p99 \(ms(heal.p99))"
            )
        }
        print(
            #"{"part":"throughput","present_jobs_per_s":\#(present.map { Int($0) }),"late_jobs_per_s":\#(late.map { Int($0) }),"ratio":\#(ratio),"heal_p50_s":\#(heals.map(\.p50).max() ?? 0),"heal_p99_s":\#(heals.map(\.p99).max() ?? 0),"healed":\#(heals.map(\.healed).reduce(0, +)),"late":\#(heals.map(\.late).reduce(0, +))}"#
        )
    }

    /// Stores the late keys over 0-10 s while a worker runs, waits until every parked job healed,
    /// and reads each one's latency from its key's INSERT to its member row.
    func heal(_ scratch: Scratch, _ sessions: [(user: UserKey, sessionKey: String, producedAt: Date)], logger: Logger) throws -> (
        p50: Double, p99: Double, healed: Int, late: Int
    ) {
        var configuration = scratch.configuration()
        configuration.exitAtEnd = false
        let worker = try Worker(configuration: configuration, logger: logger)
        let done = runInBackground(worker)
        Thread.sleep(forTimeInterval: 2)  // assigned and listening
        let store = try DecryptdDatabase(url: scratch.url)
        var random = SplitMix(seed: 5)
        let start = Date()
        let due = sessions.map { (start.addingTimeInterval(Double.random(in: 0...10, using: &random)), $0) }.sorted { $0.0 < $1.0 }
        var next = 0
        while next < due.count {
            Thread.sleep(forTimeInterval: max(0, min(0.02, due[next].0.timeIntervalSinceNow)))
            var ready: [(user: UserKey, sessionKey: String, issuedAt: Double)] = []
            while next < due.count, due[next].0 <= Date() {
                ready.append((due[next].1.user, due[next].1.sessionKey, 1_700_000_900))
                next += 1
            }
            // issued_at is the row's insert time (the default), which the latency is measured from.
            try store.connection.execute(
                """
                INSERT INTO wechat_sessions (appid, openid, session_key)
                SELECT * FROM unnest($1::text[], $2::text[], $3::text[])
                """,
                [
                    PostgresArray.text(ready.map(\.user.appid)), PostgresArray.text(ready.map(\.user.openid)),
                    PostgresArray.text(ready.map(\.sessionKey)),
                ])
        }
        let deadline = Date(timeIntervalSinceNow: 60)
        while Date() < deadline, try Int(store.connection.query("SELECT count(*) FROM parked_jobs")[0][0]!)! > 0 {
            Thread.sleep(forTimeInterval: 0.2)
        }
        worker.stop()
        done.wait()
        // From the key's INSERT (issued_at took the default, now()) to the member row's
        // decrypted_at (the start of the transaction that healed it, a little before its commit).
        let latencies = try store.connection.query(
            """
            SELECT count(*),
                   coalesce(percentile_disc(0.5) WITHIN GROUP (ORDER BY lag), 0), coalesce(percentile_disc(0.99) WITHIN GROUP (ORDER BY lag), 0)
            FROM (
                SELECT extract(epoch FROM m.decrypted_at - s.issued_at)::double precision AS lag
                FROM members m
                CROSS JOIN LATERAL (SELECT max(w.issued_at) AS issued_at FROM wechat_sessions w
                                    WHERE w.appid = m.appid AND w.openid = m.openid) s
                WHERE m.openid LIKE '%late%'
            ) l
            """)[0]
        return (Double(latencies[1] ?? "") ?? 0, Double(latencies[2] ?? "") ?? 0, Int(latencies[0] ?? "") ?? 0, sessions.count)
    }

    // MARK: - 3: the cost of noticing keys, against the number of parked jobs

    func scaling(logger: Logger) throws {
        var figures: [(parked: Int, worker: Double, postgres: Double, healed: Int)] = []
        for count in [1000, parked] {
            let scratch = try Scratch(databaseURL: databaseURL, partitions: 2)
            defer { scratch.drop() }
            let key = [UInt8](repeating: 7, count: 16)
            var payloads = SyntheticPayloads(appid: Scratch.appid, generator: SplitMix(seed: 3))
            let payload = payloads.make(.none, key: key)
            let value = DecryptJob(openid: "p", encryptedData: payload.encryptedData, iv: payload.iv).jsonValue
            try scratch.database.connection.execute(
                """
                INSERT INTO parked_jobs (source_topic, source_partition, source_offset, appid, openid, reason, deadline, job_value, job_headers)
                SELECT 'wechat.phone.jobs', 0, i, $1, 'p' || i, 'session_not_found', now() + interval '1 day', decode($2, 'hex'), ''::bytea
                FROM generate_series(1, $3::integer) AS i
                """, [Scratch.appid, value.map { String(format: "%02x", $0) }.joined(), String(count)])
            try scratch.database.connection.execute("ANALYZE parked_jobs")
            var configuration = scratch.configuration()
            configuration.exitAtEnd = false
            let worker = try Worker(configuration: configuration, logger: logger)
            let done = runInBackground(worker)
            // Settle: the first look at every curable job after LISTEN, and the first count.
            Thread.sleep(forTimeInterval: 8)
            let postgres = try PostgresCPU(connection: scratch.database.connection)
            let cpu0 = (processCPU(), try postgres.seconds())
            let started = Date()
            var stored = 0
            var random = SplitMix(seed: 9)
            while Date().timeIntervalSince(started) < 30 {
                // 10 keys a second, each for a parked user: each heals one job.
                let user = UserKey(appid: Scratch.appid, openid: "p\(Int.random(in: 1...count, using: &random))")
                try scratch.database.insertSessionKeys([(user, Base64Encoding.encode(key), Date().timeIntervalSince1970)])
                stored += 1
                Thread.sleep(forTimeInterval: max(0, started.addingTimeInterval(Double(stored) / 10).timeIntervalSinceNow))
            }
            let elapsed = Date().timeIntervalSince(started)
            let cpu1 = (processCPU(), try postgres.seconds())
            let healed = Int(try scratch.database.connection.query("SELECT count(*) FROM parked_job_endings")[0][0]!)!
            worker.stop()
            done.wait()
            figures.append((count, (cpu1.0 - cpu0.0) / elapsed, (cpu1.1 - cpu0.1) / elapsed, healed))
            print(
                "  \(count) parked, 10 keys/s for \(Int(elapsed)) s: worker process \(String(format: "%.3f", (cpu1.0 - cpu0.0) / elapsed)) CPU-s/s, PostgreSQL \(String(format: "%.3f", (cpu1.1 - cpu0.1) / elapsed)) CPU-s/s, \(healed) healed"
            )
        }
        guard figures.count == 2 else { return }
        print(
            "scaling: from \(figures[0].parked) to \(figures[1].parked) parked jobs, CPU per second ×\(String(format: "%.2f", figures[1].worker / max(figures[0].worker, 1e-9))) in the worker's process, ×\(String(format: "%.2f", figures[1].postgres / max(figures[0].postgres, 1e-9))) in PostgreSQL"
        )
        print(
            #"{"part":"scaling","small":\#(figures[0].parked),"large":\#(figures[1].parked),"worker_cpu_small":\#(figures[0].worker),"worker_cpu_large":\#(figures[1].worker),"postgres_cpu_small":\#(figures[0].postgres),"postgres_cpu_large":\#(figures[1].postgres)}"#
        )
    }

    // MARK: - 4: produce → member row, produce → outcome record

    func latency(logger: Logger) throws {
        let offered = rates.split(separator: ",").compactMap { Int($0) }
        for fetchWait in [nil, "10"] as [String?] {
            for rate in offered {
                let figures = try steady(rate: rate, fetchWait: fetchWait, logger: logger)
                let setting = fetchWait.map { "fetch.wait.max.ms=\($0)" } ?? "fetch.wait.max.ms default (500)"
                print(
                    "latency at \(rate) jobs/s offered, \(setting): produce → member p50 \(ms(figures.member.p50)), p99 \(ms(figures.member.p99)); produce → outcome record p50 \(ms(figures.outcome.p50)), p99 \(ms(figures.outcome.p99)) (\(figures.jobs) jobs)"
                )
                print(
                    #"{"part":"latency","rate":\#(rate),"fetch_wait_max_ms":\#(fetchWait ?? "500"),"member_p50_s":\#(figures.member.p50),"member_p99_s":\#(figures.member.p99),"outcome_p50_s":\#(figures.outcome.p50),"outcome_p99_s":\#(figures.outcome.p99)}"#
                )
            }
        }
    }

    func steady(rate: Int, fetchWait: String?, logger: Logger) throws -> (
        member: (p50: Double, p99: Double), outcome: (p50: Double, p99: Double), jobs: Int
    ) {
        let scratch = try Scratch(databaseURL: databaseURL, partitions: 8)
        defer { scratch.drop() }
        try scratch.cluster.createTopic("wechat.phone.outcomes", partitions: 4)
        let total = Int(Double(rate) * seconds)
        // Every job its own user with its key stored: the normal path.
        var payloads = SyntheticPayloads(appid: Scratch.appid, generator: SplitMix(seed: 11))
        var records: [KafkaRecord] = []
        var sessions: [(user: UserKey, sessionKey: String, issuedAt: Double)] = []
        for index in 0..<total {
            let key = payloads.key()
            let payload = payloads.make(.none, key: key)
            let openid = "s\(index)"
            sessions.append((UserKey(appid: Scratch.appid, openid: openid), Base64Encoding.encode(key), 1_700_000_000))
            records.append(
                KafkaRecord(
                    topic: "wechat.phone.jobs", key: Array(openid.utf8),
                    value: DecryptJob(openid: openid, encryptedData: payload.encryptedData, iv: payload.iv).jsonValue))
        }
        for start in stride(from: 0, to: sessions.count, by: 5000) {
            try scratch.database.insertSessionKeys(Array(sessions[start..<min(sessions.count, start + 5000)]))
        }
        var configuration = scratch.configuration()
        configuration.exitAtEnd = false
        configuration.outcomesTopic = "wechat.phone.outcomes"
        if let fetchWait { configuration.kafkaProperties["fetch.wait.max.ms"] = fetchWait }
        let worker = try Worker(configuration: configuration, logger: logger)
        let done = runInBackground(worker)
        // The outcome records, read as they come: arrival minus the job's produce time.
        var readerConfiguration = KafkaConsumer.Configuration(
            bootstrapServers: scratch.cluster.bootstrapServers, groupID: "latency-reader", topics: ["wechat.phone.outcomes"])
        if let fetchWait { readerConfiguration.properties["fetch.wait.max.ms"] = fetchWait }
        let reader = try KafkaConsumer(configuration: readerConfiguration, logger: logger)
        defer { reader.close() }
        // Both the worker and the reader own their partitions before the clock starts.
        let joined = Date(timeIntervalSinceNow: 60)
        while Date() < joined, worker.consumerAssignment.count < 8 || reader.assignment.count < 4 {
            reader.complete(try reader.poll(maxMessages: 100, timeout: 0.1).map(\.id))
        }
        let producer = try KafkaProducer(
            configuration: {
                var producer = KafkaProducer.Configuration(bootstrapServers: scratch.cluster.bootstrapServers)
                producer.properties["linger.ms"] = "1"
                return producer
            }(), logger: logger)
        producer.start()
        defer { producer.close() }
        var outcomeLags: [Double] = []
        let started = Date()
        var sent = 0
        // Produce at the offered rate in 10 ms steps, reading outcome records in between.
        var received = 0
        while sent < total || received < total {
            let due = min(total, Int(Date().timeIntervalSince(started) * Double(rate)))
            if due > sent {
                let now = Int64(Date().timeIntervalSince1970 * 1000)
                producer.send(
                    records[sent..<due].map { record -> KafkaRecord in
                        var record = record
                        record.timestamp = now
                        return record
                    }
                ) { _ in }
                sent = due
            }
            let messages = try reader.poll(maxMessages: 5000, timeout: 0.01)
            let arrived = Date().timeIntervalSince1970
            received += messages.count
            for message in messages {
                guard let object = try? JSONSerialization.jsonObject(with: Data(message.value ?? [])) as? [String: Any],
                    let source = object["source"] as? [String: Any], let timestamp = source["timestamp"] as? Int
                else { continue }
                // The first 2 s warm up (connections, prepared statements): not counted.
                guard Double(timestamp) / 1000 >= started.timeIntervalSince1970 + 2 else { continue }
                outcomeLags.append(arrived - Double(timestamp) / 1000)
            }
            reader.complete(messages.map(\.id))
            if Date().timeIntervalSince(started) > seconds + 60 { break }
        }
        worker.stop()
        done.wait()
        return (try memberLatency(scratch, from: started.addingTimeInterval(2)), quantiles(outcomeLags), outcomeLags.count)
    }

    /// produce time (the record's timestamp, read back from the topic) → the member row's
    /// decrypted_at (the start of the transaction that wrote it, a little before its commit).
    func memberLatency(_ scratch: Scratch, from start: Date) throws -> (p50: Double, p99: Double) {
        var produced: [String: Double] = [:]
        let jobs = try scratch.readAll("wechat.phone.jobs")
        for job in jobs {
            guard let key = job.key, let timestamp = job.timestamp else { continue }
            produced[String(decoding: key, as: UTF8.self)] = Double(timestamp) / 1000
        }
        var lags: [Double] = []
        for row in try scratch.database.connection.query("SELECT openid, extract(epoch FROM decrypted_at)::double precision FROM members") {
            guard let openid = row[0], let stored = row[1].flatMap(Double.init), let sent = produced[openid],
                sent >= start.timeIntervalSince1970
            else { continue }
            lags.append(stored - sent)
        }
        return quantiles(lags)
    }

    // MARK: - Helpers

    /// Runs `worker` on a thread of its own; the semaphore is signalled when it has stopped. A
    /// worker that fails says so on stderr (the figures around it are then not to be trusted).
    func runInBackground(_ worker: Worker) -> DispatchSemaphore {
        let done = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            do { _ = try worker.run() } catch { FileHandle.standardError.write(Data("worker failed: \(error)\n".utf8)) }
            done.signal()
        }
        return done
    }

    func quantiles(_ values: [Double]) -> (p50: Double, p99: Double) {
        guard !values.isEmpty else { return (0, 0) }
        let sorted = values.sorted()
        return (sorted[sorted.count / 2], sorted[min(sorted.count - 1, Int(Double(sorted.count) * 0.99))])
    }

    func median(_ values: [Double]) -> Double {
        let sorted = values.sorted()
        guard !sorted.isEmpty else { return 0 }
        return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
    }

    func ms(_ seconds: Double) -> String { String(format: "%.1f ms", seconds * 1000) }

    func processCPU() -> Double {
        var usage = rusage()
        getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
        return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
    }
}

/// A schema of its own on the scratch database, migrated, and an embedded broker with the topics.
struct Scratch {
    static let appid = "wx6ede2086ee29a89f"
    let schema = "bench_parked_\(UInt32.random(in: 0...UInt32.max))"
    let admin: PostgresConnection
    let url: String
    let database: DecryptdDatabase
    let cluster: KafkaMockCluster

    init(databaseURL: String, partitions: Int32) throws {
        admin = try PostgresConnection(url: databaseURL)
        try admin.execute("CREATE SCHEMA \(schema)")
        let separator = databaseURL.contains("?") ? "&" : "?"
        url = databaseURL + separator + "options=-csearch_path%3D\(schema)"
        database = try DecryptdDatabase(url: url)
        _ = try Migrator().migrate(database.connection)
        cluster = try KafkaMockCluster(brokers: 1, logger: Logger(label: "bench.mock"))
        try cluster.createTopic("wechat.phone.jobs", partitions: partitions)
        try cluster.createTopic("wechat.phone.dlq", partitions: 2)
    }

    func configuration() -> WorkerConfiguration {
        var configuration = WorkerConfiguration(brokers: cluster.bootstrapServers, databaseURL: url, appids: [Self.appid])
        configuration.group = "bench"
        configuration.progressInterval = 0
        configuration.parkTimeout = 900
        return configuration
    }

    func produce(_ plan: LoadGenerator.Plan, logger: Logger) throws -> LoadGenerator.Expectation {
        var configuration = KafkaProducer.Configuration(bootstrapServers: cluster.bootstrapServers)
        configuration.properties = ["linger.ms": "100", "batch.num.messages": "10000"]
        let producer = try KafkaProducer(configuration: configuration, logger: logger)
        producer.start()
        defer { producer.close() }
        return try LoadGenerator(plan: plan).run(database: database, producer: producer, detailed: false)
    }

    func readAll(_ topic: String) throws -> [KafkaMessage] {
        let consumer = try KafkaConsumer(
            configuration: .init(bootstrapServers: cluster.bootstrapServers, groupID: "read-\(UUID().uuidString)", topics: [topic]),
            logger: Logger(label: "bench.read"))
        defer { consumer.close() }
        var messages: [KafkaMessage] = []
        let deadline = Date(timeIntervalSinceNow: 60)
        while !consumer.isDrained, Date() < deadline {
            let batch = try consumer.poll(maxMessages: 5000, timeout: 0.1)
            messages += batch
            consumer.complete(batch.map(\.id))
        }
        return messages
    }

    func drop() {
        database.connection.disconnect()
        _ = try? admin.execute("DROP SCHEMA \(schema) CASCADE")
    }
}

/// CPU seconds of every process of the PostgreSQL server behind `connection` (the postmaster and
/// its children), read from /proc: the server's whole cost, background workers included.
struct PostgresCPU {
    let postmaster: Int32

    init(connection: PostgresConnection) throws {
        let backend = Int32(try connection.query("SELECT pg_backend_pid()")[0][0]!)!
        postmaster = Self.parent(of: backend) ?? backend
    }

    static func stat(_ pid: Int32) -> [Substring]? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let close = text.lastIndex(of: ")") else {
            return nil
        }
        return text[text.index(after: close)...].split(separator: " ")
    }

    static func parent(of pid: Int32) -> Int32? { stat(pid).flatMap { Int32($0[1]) } }

    func seconds() throws -> Double {
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        var total = 0.0
        for entry in try FileManager.default.contentsOfDirectory(atPath: "/proc") {
            guard let pid = Int32(entry), pid == postmaster || Self.parent(of: pid) == postmaster, let fields = Self.stat(pid),
                fields.count > 13
            else { continue }
            // utime and stime: fields 14 and 15 of stat, 12 and 13 after the command.
            total += (Double(fields[11]) ?? 0) + (Double(fields[12]) ?? 0)
        }
        return total / ticks
    }
}
