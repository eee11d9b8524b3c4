import DeadLetterFormat
import DecryptdStore
import DecryptdTestSupport
import DecryptdWorker
import Foundation
import KafkaClient
import Logging
import PhoneDecryption
import PostgresClient
import SyntheticLoad
import Testing

let logger: Logger = {
    var logger = Logger(label: "decryptd.e2e")
    logger.logLevel = ProcessInfo.processInfo.environment["DECRYPTD_TEST_LOG"] == nil ? .critical : .info
    return logger
}()

/// An embedded broker with the two topics, an isolated migrated schema, and helpers to generate
/// a load and check every table and topic against what the load must produce.
struct Pipeline {
    static let appid = "wx6ede2086ee29a89f"
    let cluster: KafkaMockCluster
    let url: String
    let database: DecryptdDatabase

    /// The broker keeps about 5 MB per partition, dropping the oldest records beyond: a load with
    /// many dead letters (and their duplicates after crashes) needs more `deadLetterPartitions`.
    init(partitions: Int32 = 4, deadLetterPartitions: Int32 = 2, databaseURL: String? = IsolatedDatabase.baseURL) throws {
        cluster = try KafkaMockCluster(brokers: 1, logger: logger)
        try cluster.createTopic("wechat.phone.jobs", partitions: partitions)
        try cluster.createTopic("wechat.phone.dlq", partitions: deadLetterPartitions)
        (url, database) = try IsolatedDatabase.create(on: databaseURL)
    }

    /// The worker's configuration for this pipeline. Parking is off unless `parkTimeout` is given
    /// (the loads of the other tests expect every failure at once: see ``binaryEnvironment``).
    func configuration(group: String = "decryptd", exitAtEnd: Bool = true, parkTimeout: Double = 0) -> WorkerConfiguration {
        var configuration = WorkerConfiguration(brokers: cluster.bootstrapServers, databaseURL: url, appids: [Self.appid])
        configuration.parkTimeout = parkTimeout
        configuration.group = group
        configuration.exitAtEnd = exitAtEnd
        configuration.progressInterval = 0
        configuration.batchSize = 250
        configuration.maxRetryDelay = 0.5
        configuration.kafkaProperties = ["session.timeout.ms": "6000", "heartbeat.interval.ms": "300"]
        return configuration
    }

    /// Every failure code, several jobs per user, some out of order.
    static let everyFault: [FailureReason: Double] = [
        .malformedJob: 0.03, .sessionNotFound: 0.03, .invalidSessionKey: 0.03, .invalidIV: 0.03,
        .invalidCiphertext: 0.03, .badPadding: 0.04, .invalidPlaintext: 0.03, .appidMismatch: 0.03,
    ]

    /// ``everyFault`` as loadgen's --faults value.
    static let everyFaultFlag = everyFault.map { "\($0.key.rawValue)=\($0.value)" }.joined(separator: ",")

    func generate(jobs: Int, seed: UInt64 = 7) throws -> LoadGenerator.Expectation {
        var plan = LoadGenerator.Plan(jobs: jobs, appid: Self.appid)
        plan.faults = Self.everyFault
        plan.seed = seed
        return try generate(plan)
    }

    /// Seeds and produces the load of `plan` into this pipeline.
    func generate(_ plan: LoadGenerator.Plan) throws -> LoadGenerator.Expectation {
        let producer = try KafkaProducer(configuration: .init(bootstrapServers: cluster.bootstrapServers), logger: logger)
        producer.start()
        defer { producer.close() }
        return try LoadGenerator(plan: plan).run(database: database, producer: producer)
    }

    /// A job for the jobs topic, its value SPEC's JSON object with these fields.
    static func job(
        openid: String, encryptedData: String, iv: String, appid: String? = nil, key: [UInt8]? = nil,
        headers: [KafkaHeader] = []
    ) -> KafkaRecord {
        let value = LoadGenerator.encryptedJobValue(openid: openid, encryptedData: encryptedData, iv: iv, appid: appid)
        return KafkaRecord(topic: "wechat.phone.jobs", key: key, value: value, headers: headers)
    }

    /// Sends records to the embedded broker, acknowledged, and returns where they landed.
    func produce(_ records: [KafkaRecord]) throws -> [KafkaMessageID] {
        let producer = try KafkaProducer(configuration: .init(bootstrapServers: cluster.bootstrapServers), logger: logger)
        producer.start()
        defer { producer.close() }
        return try producer.send(records).map { try $0.get() }
    }

    // MARK: - Reading back

    func members() throws -> [UserKey: (phone: String, watermark: Int64)] {
        var result: [UserKey: (String, Int64)] = [:]
        for row in try database.connection.query("SELECT appid, openid, phone_number, watermark_ts FROM members") {
            result[UserKey(appid: row[0]!, openid: row[1]!)] = (row[2]!, Int64(row[3]!)!)
        }
        return result
    }

    func failureRows() throws -> [(id: KafkaMessageID, reason: String)] {
        try database.connection.query("SELECT source_topic, source_partition, source_offset, reason FROM decrypt_failures").map {
            (KafkaMessageID(topic: $0[0]!, partition: Int32($0[1]!)!, offset: Int64($0[2]!)!), $0[3]!)
        }
    }

    /// Every record of a topic, read with a fresh group until all partitions are drained.
    func readAll(_ topic: String, group: String = "reader-\(UUID().uuidString)") throws -> [KafkaMessage] {
        var configuration = KafkaConsumer.Configuration(bootstrapServers: cluster.bootstrapServers, groupID: group, topics: [topic])
        configuration.properties = ["session.timeout.ms": "6000"]
        let consumer = try KafkaConsumer(configuration: configuration, logger: logger)
        defer { consumer.close() }
        var messages: [KafkaMessage] = []
        let deadline = Date(timeIntervalSinceNow: 60)
        while !consumer.isDrained, Date() < deadline {
            let batch = try consumer.poll(maxMessages: 500, timeout: 0.1)
            messages += batch
            consumer.complete(batch.map(\.id))
        }
        return messages
    }

    /// Records ever written to `topic` (the sum of its partitions' end offsets): more than
    /// ``readAll(_:group:)`` returns when the broker has dropped old ones.
    func recordsWritten(_ topic: String, partitions: Int) throws -> Int64 {
        let configuration = KafkaConsumer.Configuration(
            bootstrapServers: cluster.bootstrapServers, groupID: "ends-\(UUID().uuidString)", topics: [topic])
        let consumer = try KafkaConsumer(configuration: configuration, logger: logger)
        defer { consumer.close() }
        return try consumer.highWatermarks(topic: topic, partitions: partitions, timeout: 10).values.reduce(0, +)
    }

    // MARK: - Checking

    /// members holds exactly the newest numbers; decrypt_failures exactly one row per failed job.
    func expectTables(_ expectation: LoadGenerator.Expectation, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let stored = try members()
        #expect(stored.count == expectation.members.count, sourceLocation: sourceLocation)
        for (user, expected) in expectation.members {
            #expect(
                stored[user]?.phone == expected.phone && stored[user]?.watermark == expected.watermark,
                "member \(user.openid)", sourceLocation: sourceLocation)
        }
        let rows = try failureRows()
        #expect(rows.count == expectation.failures.count, "one failure row per failed job", sourceLocation: sourceLocation)
        #expect(
            Dictionary(rows.map { ($0.id, $0.reason) }, uniquingKeysWith: { a, _ in a }) == expectation.failures,
            sourceLocation: sourceLocation)
    }

    /// The dead-letter topic: a record per failed job (at least one; exactly one when `exactly`),
    /// with the original key, value and headers and SPEC's headers.
    func expectDeadLetters(
        _ expectation: LoadGenerator.Expectation, group: String, exactly: Bool, sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        let originals = Dictionary(uniqueKeysWithValues: try readAll("wechat.phone.jobs").map { ($0.id, $0) })
        let letters = try readAll("wechat.phone.dlq")
        var seen: [KafkaMessageID: Int] = [:]
        for letter in letters {
            func header(_ name: String) -> String? { DeadLetter.header(name, in: letter.headers) }
            let source = Self.source(of: letter)
            seen[source, default: 0] += 1
            #expect(header(DeadLetter.reason) == expectation.failures[source], "dead letter for \(source)", sourceLocation: sourceLocation)
            guard let original = originals[source] else {
                Issue.record("dead letter names an unknown job \(source)", sourceLocation: sourceLocation)
                continue
            }
            #expect(letter.key == original.key && letter.value == original.value, sourceLocation: sourceLocation)
            #expect(
                Array(letter.headers.prefix(original.headers.count)) == original.headers, "original headers first, unchanged",
                sourceLocation: sourceLocation)
            #expect(header(DeadLetter.attempts) == "1", sourceLocation: sourceLocation)
            #expect(header(DeadLetter.consumerGroup) == group, sourceLocation: sourceLocation)
            #expect(header(DeadLetter.sourceTimestamp).flatMap { Int64($0) } == original.timestamp, sourceLocation: sourceLocation)
            #expect(
                header(DeadLetter.failedAt)?.hasSuffix("Z") == true && header(DeadLetter.failedAt)?.count == 24,
                sourceLocation: sourceLocation)
            let detail = header(DeadLetter.detail) ?? ""
            #expect(!detail.isEmpty && detail.count < 200, sourceLocation: sourceLocation)
            let value = String(decoding: original.value ?? [], as: UTF8.self)
            #expect(value.count < 60 || !detail.contains(value.suffix(40)), "no payload in the detail", sourceLocation: sourceLocation)
        }
        #expect(Set(seen.keys) == Set(expectation.failures.keys), "a dead letter for every failed job", sourceLocation: sourceLocation)
        if exactly { #expect(seen.values.allSatisfy { $0 == 1 }, "exactly one dead letter per failed job", sourceLocation: sourceLocation) }
    }

    /// The job a dead letter names, from its `decrypt.source.*` headers alone; a missing or
    /// unreadable one gives an id no job has (unlike ``DeadLetter/source(of:)``, which falls back
    /// to the record's own coordinates), so that a check against the load fails on it.
    static func source(of letter: KafkaMessage) -> KafkaMessageID {
        func header(_ name: String) -> String? { DeadLetter.header(name, in: letter.headers) }
        return KafkaMessageID(
            topic: header(DeadLetter.sourceTopic) ?? "", partition: Int32(header(DeadLetter.sourcePartition) ?? "") ?? -1,
            offset: Int64(header(DeadLetter.sourceOffset) ?? "") ?? -1)
    }

    /// All of the group's offsets are committed: a new member of the group receives nothing.
    func expectCommitted(group: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let leftovers = try readAll("wechat.phone.jobs", group: group).count
        #expect(leftovers == 0, "jobs not committed by the group", sourceLocation: sourceLocation)
    }
}

extension Pipeline {
    /// The environment for the decryptd binary against this pipeline: SPEC's three variables
    /// (brokers, database, appid) and none of decryptd's own from the test's environment. Parking
    /// is off (`DECRYPTD_PARK_TIMEOUT=0`): these loads expect every failure at once, which is what
    /// `--park-timeout 0` must give; the parking tests turn it on.
    var binaryEnvironment: [String: String] {
        var environment = ChildProcess.environmentWithoutDecryptdConfiguration
        environment["KAFKA_BROKERS"] = cluster.bootstrapServers
        environment["DATABASE_URL"] = url
        environment["WECHAT_APPIDS"] = Self.appid
        environment["DECRYPTD_PARK_TIMEOUT"] = "0"
        return environment
    }

    /// Outcome counts from the "  <outcome>   <count> ..." lines that run and loadgen print.
    static func outcomeCounts(in text: String) -> [String: Int] {
        let outcomes = Set(FailureReason.allCases.map(\.rawValue) + ["ok"])
        return Dictionary(
            text.split(separator: "\n").compactMap { line -> (String, Int)? in
                let words = line.split(separator: " ")
                guard words.count >= 2, outcomes.contains(String(words[0])), let count = Int(words[1]) else { return nil }
                return (String(words[0]), count)
            }, uniquingKeysWith: +)
    }

    /// The numbers of the total row reprocess prints: replayed, recovered, failed again, skipped.
    static func reprocessTotals(in text: String) -> [Int] {
        let row = text.split(separator: "\n").first { $0.hasPrefix("total") }
        return row?.split(separator: " ").dropFirst().compactMap { Int($0) } ?? []
    }

    /// Runs the decryptd binary against this pipeline with ``binaryEnvironment`` (and `environment`
    /// over it) and returns its exit status and everything it printed.
    func decryptd(_ arguments: [String], environment: [String: String] = [:], timeout: TimeInterval = 120) throws -> (
        status: Int32, text: String
    ) {
        let output = NSTemporaryDirectory() + "decryptd-\(arguments[0])-\(UUID().uuidString).txt"
        defer { try? FileManager.default.removeItem(atPath: output) }
        let child = try ChildProcess(
            [decryptdBinary.path] + arguments, environment: binaryEnvironment.merging(environment) { $1 }, logPath: output)
        defer { if child.exitStatus == nil { child.kill(SIGKILL) } }
        let status = try child.wait(timeout: timeout)
        return (status, try String(contentsOfFile: output, encoding: .utf8))
    }
}

/// A worker running in this process on its own thread.
final class WorkerRun: @unchecked Sendable {
    let worker: Worker
    private let lock = NSLock()
    private var outcome: Result<WorkerSummary, any Error>?

    init(_ configuration: WorkerConfiguration) throws {
        worker = try Worker(configuration: configuration, logger: logger)
        let thread = Thread { [self] in
            let result = Result { try worker.run() }
            lock.lock()
            outcome = result
            lock.unlock()
        }
        thread.start()
    }

    var result: Result<WorkerSummary, any Error>? {
        lock.lock()
        defer { lock.unlock() }
        return outcome
    }

    func wait(timeout: TimeInterval = 180) throws -> WorkerSummary {
        try waitUntil(timeout: timeout, "worker finished") { result != nil }
        return try result!.get()
    }
}

extension Pipeline {
    /// A new login role with every privilege on this pipeline's tables, and the URL that connects
    /// as it. Not a superuser, so a REVOKE binds it (tests of permanent errors, chaos trials).
    func restrictedRole(_ name: String) throws -> String {
        let schema = try #require(url.components(separatedBy: "search_path%3D").last)
        try database.connection.executeScript(
            """
            DROP ROLE IF EXISTS \(name);
            CREATE ROLE \(name) LOGIN;
            GRANT USAGE ON SCHEMA \(schema) TO \(name);
            GRANT ALL ON ALL TABLES IN SCHEMA \(schema) TO \(name);
            GRANT ALL ON ALL SEQUENCES IN SCHEMA \(schema) TO \(name);
            """)
        return url.replacingOccurrences(of: "postgresql://postgres@", with: "postgresql://\(name)@")
    }
}
