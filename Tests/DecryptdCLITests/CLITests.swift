import DecryptdStore
import DecryptdTestSupport
import Foundation
import Testing

/// The command-line contract of SPEC.md, through the real binary.
@Suite("decryptd command line", .ownThread(minutes: 5))
struct CLITests {
    static let binary = decryptdBinary.path

    struct Output {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    /// Runs `decryptd ARGS` through sh (for stdin redirection), with a clean configuration environment,
    /// in an empty directory of its own: nothing a command needs (migrations, say) may come from the
    /// working directory.
    func decryptd(_ arguments: String, stdin: String? = nil, environment: [String: String] = [:]) throws -> Output {
        let directory = NSTemporaryDirectory() + "cli-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        if let stdin { try stdin.write(toFile: directory + "/in", atomically: true, encoding: .utf8) }
        let env = ChildProcess.environmentWithoutDecryptdConfiguration.merging(environment) { _, new in new }
        let command =
            "cd '\(directory)' && '\(Self.binary)' \(arguments) < \(stdin == nil ? "/dev/null" : "'\(directory)/in'") > '\(directory)/out' 2> '\(directory)/err'"
        let status = try ChildProcess(["/bin/sh", "-c", command], environment: env).wait(timeout: 60)
        return Output(
            status: status,
            stdout: (try? String(contentsOfFile: directory + "/out", encoding: .utf8)) ?? "",
            stderr: (try? String(contentsOfFile: directory + "/err", encoding: .utf8)) ?? ""
        )
    }

    @Test("--help lists every subcommand and exits 0")
    func help() throws {
        let output = try decryptd("--help")
        #expect(output.status == 0)
        for command in ["run", "migrate", "reprocess", "report", "dev-broker", "loadgen", "decrypt"] {
            #expect(output.stdout.contains(command))
        }
    }

    @Test("--version names the allocator, and it is jemalloc serving the process's allocations")
    func version() throws {
        let output = try decryptd("--version")
        #expect(output.status == 0)
        #expect(output.stdout.hasPrefix("0.1.0 (jemalloc 5."), "\(output.stdout)")
    }

    @Test(
        "bad usage exits 2 with one line saying what is wrong",
        arguments: [
            "run --no-such-flag", "decrypt --iv AAAA", "report --since 5x --database-url postgresql://x@127.0.0.1:1/x",
            "dev-broker --topic bad:0", "migrate", "frobnicate",
        ])
    func badUsage(_ arguments: String) throws {
        let output = try decryptd(arguments)
        #expect(output.status == 2)
        let lines = output.stderr.split(separator: "\n")
        #expect(lines.count == 1, "one line: \(output.stderr)")
        #expect(lines.first?.hasPrefix("decryptd: ") == true)
    }

    @Test(
        "a negative number is a bad value for its option, not a missing one",
        arguments: [
            ("run --concurrency -1", "--concurrency must be"), ("run --batch-size -5", "--batch-size must be"),
            ("run --shutdown-timeout -1", "--shutdown-timeout"), ("loadgen --jobs -5", "--jobs must be positive"),
            ("reprocess --max-attempts -2", "--max-attempts must be at least 1"), ("dev-broker --brokers -1", "--brokers must be"),
        ])
    func negativeNumbers(_ arguments: String, _ expected: String) throws {
        let output = try decryptd(arguments)
        #expect(output.status == 2)
        #expect(output.stderr.contains(expected), "\(output.stderr)")
        #expect(!output.stderr.contains("Missing value"))
    }

    @Test(
        "a number out of any sensible range is a bad value, not a crash",
        arguments: [
            ("run --startup-timeout inf", "--startup-timeout must be more than 0 and at most 86400 seconds"),
            ("run --startup-timeout 1e9", "--startup-timeout must be more than 0 and at most 86400 seconds"),
            ("run --shutdown-timeout nan", "--shutdown-timeout must be more than 0 and at most 86400 seconds"),
            ("run --progress-interval inf", "--progress-interval must be 0 (none) or up to 86400 seconds"),
            ("loadgen --jobs 9223372036854775807", "--jobs must be positive and at most 100000000"),
            ("report --since 999999999999999d", "bad --since 999999999999999d"),
            ("report --since 36501d", "bad --since 36501d"),
        ])
    func outOfRangeNumbers(_ arguments: String, _ expected: String) throws {
        let output = try decryptd(arguments, environment: Self.unreachable)
        #expect(output.status == 2, "\(output.stderr)")
        #expect(output.stderr.contains("decryptd: " + expected), "\(output.stderr)")
    }

    /// A configuration nothing answers at: commands get past their own checks to the database's.
    static let unreachable = ["DATABASE_URL": "postgresql://x@127.0.0.1:1/x", "WECHAT_APPIDS": "wx0", "KAFKA_BROKERS": "127.0.0.1:1"]

    @Test(
        "every option reads an environment variable: a bad value there exits 2 with one line naming it",
        arguments: [
            ("run --startup-timeout 1", "DECRYPTD_PROGRESS_INTERVAL", "soon", "--progress-interval"),
            ("run --startup-timeout 1", "DECRYPTD_SHUTDOWN_TIMEOUT", "later", "--shutdown-timeout"),
            ("run", "DECRYPTD_STARTUP_TIMEOUT", "0", "--startup-timeout"),
            ("run --startup-timeout 1", "DECRYPTD_EXIT_AT_END", "maybe", "--exit-at-end"),
            ("run --startup-timeout 1", "DECRYPTD_BATCH_SIZE", "many", "--batch-size"),
            ("reprocess", "DECRYPTD_REPROCESS_REASONS", "bad_padding,no_such_reason", "--reason"),
            ("reprocess", "DECRYPTD_MAX_ATTEMPTS", "0", "--max-attempts"),
            ("reprocess", "DECRYPTD_DRY_RUN", "perhaps", "--dry-run"),
            ("reprocess", "DECRYPTD_LOG_LEVEL", "chatty", "log level"),
            ("loadgen", "DECRYPTD_LOG_LEVEL", "chatty", "log level"),
            ("report", "DECRYPTD_REPORT_FORMAT", "xml", "--format"),
            ("report", "DECRYPTD_REPORT_SINCE", "5x", "--since"),
            ("loadgen", "DECRYPTD_LOADGEN_JOBS", "0", "--jobs"),
            ("loadgen", "DECRYPTD_LOADGEN_FAULTS", "bad_padding=2", "fault"),
            ("loadgen", "DECRYPTD_LOADGEN_JOBS_PER_USER", "0", "--jobs-per-user"),
            ("loadgen", "DECRYPTD_LOADGEN_STALE_KEY_SHARE", "1.5", "--stale-key-share"),
            ("loadgen", "DECRYPTD_LOADGEN_SEED", "-1", "--seed"),
            ("dev-broker", "DECRYPTD_DEV_BROKERS", "40", "--brokers"),
            ("dev-broker", "DECRYPTD_DEV_TOPICS", "wechat.phone.jobs:0", "--topic"),
            ("run --startup-timeout 1", "WECHAT_API_URL", "ftp://api.example", "--wechat-api-url"),
            ("run --startup-timeout 1", "WECHAT_APP_SECRETS", "wx0-no-colon", "WECHAT_APP_SECRETS"),
            ("run --startup-timeout 1", "WECHAT_APP_SECRETS_FILE", "/nonexistent/secrets", "app secrets file"),
            ("run --startup-timeout 1", "DECRYPTD_EXCHANGE_CONCURRENCY", "0", "--exchange-concurrency"),
            ("run --startup-timeout 1", "DECRYPTD_EXCHANGE_TIMEOUT", "-1", "--exchange-timeout"),
            ("run --startup-timeout 1", "DECRYPTD_EXCHANGE_LEDGER_RETENTION", "1w", "--exchange-ledger-retention"),
            ("loadgen", "DECRYPTD_LOADGEN_KIND", "both", "DECRYPTD_LOADGEN_KIND"),
            ("loadgen", "DECRYPTD_LOADGEN_TRANSIENT_SHARE", "2", "--transient-share"),
            ("dev-wechat", "DECRYPTD_DEV_WECHAT_LATENCY_MS", "slow", "DECRYPTD_DEV_WECHAT_LATENCY_MS"),
        ])
    func environmentValues(_ arguments: String, _ variable: String, _ value: String, _ option: String) throws {
        // No brokers: commands that list every problem at once then say so instead of probing 127.0.0.1:1 for 10 s.
        var environment = Self.unreachable.merging([variable: value]) { _, new in new }
        environment["KAFKA_BROKERS"] = nil
        let output = try decryptd(arguments, environment: environment)
        #expect(output.status == 2)
        let lines = output.stderr.split(separator: "\n")
        #expect(lines.allSatisfy { $0.hasPrefix("decryptd: ") }, "\(output.stderr)")
        #expect(lines.filter { $0.contains(variable) || $0.contains(option) }.count == 1, "one line names the setting: \(output.stderr)")
    }

    @Test(
        "configuration mistakes exit 2 with a line that names them",
        arguments: [
            ("run --kafka-property no.such.prop=1", "bad --kafka-property no.such.prop=1: No such configuration property"),
            ("run --kafka-property fetch.wait.max.ms=soon", "bad --kafka-property fetch.wait.max.ms=soon: Invalid value"),
            ("run --kafka-property enable.auto.commit=true", "decryptd manages enable.auto.commit"),
            ("run --group ''", "--group must not be empty"),
            ("run --jobs-topic ''", "--jobs-topic must not be empty"),
            ("run --dlq-topic wechat.phone.jobs", "--jobs-topic and --dlq-topic must differ"),
            ("reprocess --group ''", "--group must not be empty"),
            ("run --wechat-api-url 'https://api.weixin.qq.com/?x=1'", "--wechat-api-url must have no query"),
            ("run --exchange-concurrency 5000", "--exchange-concurrency must be 1 to 4096"),
            ("run --exchange-ledger-retention 5m", "--exchange-ledger-retention 5m must be a duration from 10m to 366d"),
        ])
    func configurationMistakes(_ arguments: String, _ line: String) throws {
        let output = try decryptd(
            arguments.hasPrefix("run") ? arguments + " --startup-timeout 1" : arguments, environment: Self.unreachable)
        #expect(output.status == 2)
        let lines = output.stderr.split(separator: "\n")
        #expect(lines.allSatisfy { $0.hasPrefix("decryptd: ") }, "\(output.stderr)")
        #expect(lines.contains { $0.contains(line) }, "\(output.stderr)")
    }

    @Test("loadgen's help leaves out the options it has no use for, and it still accepts them with the others")
    func loadgenSharedOptions() throws {
        let help = try decryptd("loadgen --help")
        #expect(help.status == 0)
        #expect(help.stdout.contains("--jobs-topic") && help.stdout.contains("--appid"), "\(help.stdout)")
        #expect(!help.stdout.contains("--dlq-topic") && !help.stdout.contains("--max-session-keys"), "\(help.stdout)")
        for command in ["run", "reprocess"] {
            let shown = try decryptd(command + " --help").stdout
            #expect(shown.contains("--dlq-topic") && shown.contains("--max-session-keys"), "\(command): \(shown)")
        }
        // The same connection arguments as run's: the only complaint is the missing brokers.
        var environment = Self.unreachable
        environment["KAFKA_BROKERS"] = nil
        let output = try decryptd("loadgen --dlq-topic wechat.phone.dlq --max-session-keys 2", environment: environment)
        #expect(output.status == 2)
        #expect(output.stderr.contains("--brokers"), "\(output.stderr)")
        #expect(!output.stderr.contains("nknown option"), "\(output.stderr)")
    }

    @Test("loadgen --store-withheld-sessions only writes to the database, so it neither needs nor probes the brokers")
    func storeWithheldSessionsNeedsNoBrokers() throws {
        var environment = Self.unreachable
        environment["KAFKA_BROKERS"] = nil
        let output = try decryptd("loadgen --store-withheld-sessions", environment: environment)
        #expect(output.status == 2)
        let lines = output.stderr.split(separator: "\n")
        #expect(lines.count == 1 && lines[0].contains("cannot reach the database"), "\(output.stderr)")
        // Producing the load still needs them.
        #expect(try decryptd("loadgen", environment: environment).stderr.contains("no brokers"))
    }

    @Test("a flag wins over its environment variable, which is then not even read")
    func flagsWin() throws {
        let output = try decryptd(
            "report --format json --since 1h",
            environment: [
                "DATABASE_URL": "postgresql://x@127.0.0.1:1/x", "DECRYPTD_REPORT_FORMAT": "xml", "DECRYPTD_REPORT_SINCE": "5x",
            ])
        #expect(output.status == 2)
        #expect(output.stderr.contains("database"), "\(output.stderr)")
        #expect(!output.stderr.contains("DECRYPTD_"), "\(output.stderr)")
    }

    @Test("decrypt takes its payload and keys from the environment, keeping keys out of the process list")
    func decryptFromEnvironment() throws {
        let item = try #require(VectorFile.loaded.cases.first { $0.expect.ok != nil })
        let output = try decryptd(
            "decrypt",
            environment: [
                "WECHAT_APPIDS": item.appid,
                "DECRYPTD_SESSION_KEYS": "AAAAAAAAAAAAAAAAAAAAAA==,\(item.sessionKey)",
                "DECRYPTD_IV": item.iv,
                "DECRYPTD_ENCRYPTED_DATA": item.encryptedData,
            ])
        #expect(output.status == 0)
        let result = try JSONSerialization.jsonObject(with: Data(output.stdout.utf8)) as? [String: Any]
        #expect(result?["phoneNumber"] as? String == item.expect.ok?.phoneNumber)
        #expect(result?["keyIndex"] as? Int == 1, "the second key, after the wrong first one")
        let flagWins = try decryptd(
            "decrypt --iv AAAA",
            environment: ["WECHAT_APPIDS": "wx0", "DECRYPTD_SESSION_KEYS": "AAAAAAAAAAAAAAAAAAAAAA==", "DECRYPTD_ENCRYPTED_DATA": "AAAA"])
        #expect(flagWins.stdout.contains("\"invalid_iv\""), "\(flagWins.stdout)")
    }

    @Test("run with nothing reachable: exit 2, one line per problem")
    func startupProblems() throws {
        let output = try decryptd("run --brokers 127.0.0.1:1 --startup-timeout 2 --database-url postgresql://x@127.0.0.1:1/x")
        #expect(output.status == 2)
        let lines = output.stderr.split(separator: "\n").map(String.init)
        #expect(lines.contains { $0.contains("no appid") })
        #expect(lines.contains { $0.contains("cannot reach the database") })
        #expect(lines.contains { $0.contains("cannot reach Kafka") })
        #expect(lines.allSatisfy { $0.hasPrefix("decryptd: ") })
    }

    /// dev-broker is how the scripts, and users without Kafka, get a broker: its first line of
    /// output is the bootstrap address, and the topics it was asked for are there.
    /// A secrets file that cannot be read or parsed is bad configuration: one line, never the secret.
    @Test("a secrets file that cannot be read or parsed: exit 2, one line, no secret in it")
    func secretsFile() throws {
        let directory = NSTemporaryDirectory() + "decryptd-secrets-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let bad = directory + "/bad"
        let good = directory + "/good"
        try "# comment\nwx0 s3cr3t-value extra\n".write(toFile: bad, atomically: true, encoding: .utf8)
        try "wx0 s3cr3t-value\n".write(toFile: good, atomically: true, encoding: .utf8)
        for (arguments, expected) in [
            ("--app-secrets-file \(bad)", "line 2 is not 'appid secret'"),
            ("--app-secrets-file \(directory)/absent", "cannot read app secrets file"),
        ] {
            let output = try decryptd("run --startup-timeout 1 \(arguments)", environment: Self.unreachable)
            #expect(output.status == 2)
            let lines = output.stderr.split(separator: "\n")
            #expect(lines.filter { $0.contains("secrets") }.count == 1 && output.stderr.contains(expected), "\(output.stderr)")
            #expect(!output.stderr.contains("s3cr3t"))
        }
        // Both the file and the variable, one appid in both: named, never quoted.
        let twice = try decryptd(
            "run --startup-timeout 1 --app-secrets-file \(good)",
            environment: Self.unreachable.merging(["WECHAT_APP_SECRETS": "wx0:other"]) { $1 })
        #expect(twice.status == 2 && twice.stderr.contains("appid wx0 has a secret both in WECHAT_APP_SECRETS and in"), "\(twice.stderr)")
        #expect(!twice.stderr.contains("s3cr3t") && !twice.stderr.contains("other"))
    }

    @Test("an API security file that is unreadable or has a bad key or certificate: exit 2, one line naming the appid and field")
    func apiSecurityFile() throws {
        let vectorsURL = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("../shared/testdata/wechat-api-security-vectors.json").standardized
        let vectors = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: vectorsURL)) as? [String: Any])
        let good: [String: Any] = [
            "symmetricKey": vectors["sym_key"]!, "symmetricKeySn": "S", "privateKey": vectors["private_key"]!, "privateKeySn": "P",
            "platformCertificates": ["C": vectors["certificate"]!],
        ]
        let directory = NSTemporaryDirectory() + "decryptd-apisec-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let cases: [(String, (inout [String: Any]) -> Void, String)] = [
            ("short", { $0["symmetricKey"] = "AAAAAAAAAAAAAAAAAAAAAA==" }, "appid wxV: symmetricKey is 16 bytes, not 32 (AES-256)"),
            ("notkey", { $0["privateKey"] = vectors["certificate"]! }, "appid wxV: privateKey is not a PEM private key"),
            (
                "badcert", { $0["platformCertificates"] = ["C": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"] },
                "appid wxV: platformCertificates C is not a PEM X.509 certificate"
            ),
        ]
        var runs: [(String, String)] = [("\(directory)/absent", "cannot read API security file")]
        for (name, change, expected) in cases {
            var entry = good
            change(&entry)
            let path = "\(directory)/\(name).json"
            try JSONSerialization.data(withJSONObject: ["wxV": entry]).write(to: URL(fileURLWithPath: path))
            runs.append((path, expected))
        }
        for (path, expected) in runs {
            let output = try decryptd("run --startup-timeout 1 --api-security-file \(path)", environment: Self.unreachable)
            #expect(output.status == 2)
            let lines = output.stderr.split(separator: "\n").filter { $0.contains("API security file") }
            #expect(lines.count == 1 && output.stderr.contains(expected), "\(output.stderr)")
            #expect(!output.stderr.contains("MII") && !output.stderr.contains(vectors["sym_key"] as! String), "no key material")
        }
    }

    @Test("dev-wechat prints its URL first, answers WeChat's two endpoints, and stops on SIGTERM with exit 0")
    func devWeChat() throws {
        let output = NSTemporaryDirectory() + "dev-wechat-\(UUID().uuidString).txt"
        defer { try? FileManager.default.removeItem(atPath: output) }
        let server = try ChildProcess([Self.binary, "dev-wechat"], environment: ["WECHAT_APP_SECRETS": "wxA:sA"], logPath: output)
        defer { if server.exitStatus == nil { server.kill(SIGKILL) } }
        var url = ""
        try waitUntil(timeout: 30, "the URL line") {
            url = server.output.split(separator: "\n").first.map(String.init) ?? ""
            return !url.isEmpty
        }
        #expect(url.hasPrefix("http://127.0.0.1:"), "\(url)")
        let port = try #require(url.split(separator: ":").last.flatMap { Int($0) })
        func post(_ path: String, _ body: String) throws -> [String: Any] {
            let response = try HTTPProbe.exchange(
                port: port,
                "POST \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                    + "Content-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)")
            #expect(response.status == 200)
            return try JSONSerialization.jsonObject(with: Data(response.body.utf8)) as? [String: Any] ?? [:]
        }
        #expect(
            try post("/cgi-bin/stable_token", #"{"grant_type":"client_credential","appid":"wxA","secret":"wrong","force_refresh":false}"#)[
                "errcode"] as? Int == 40125)
        let token = try post(
            "/cgi-bin/stable_token", #"{"grant_type":"client_credential","appid":"wxA","secret":"sA","force_refresh":false}"#)
        let accessToken = try #require(token["access_token"] as? String)
        #expect(token["expires_in"] as? Int == 7200)
        #expect(try post("/wxa/business/getuserphonenumber?access_token=nope", #"{"code":"x"}"#)["errcode"] as? Int == 40001)
        #expect(try post("/wxa/business/getuserphonenumber?access_token=\(accessToken)", #"{"code":"x"}"#)["errcode"] as? Int == 40029)
        server.kill(SIGTERM)
        #expect(try server.wait(timeout: 30) == 0)
        let missing = try decryptd("dev-wechat", environment: [:])
        #expect(missing.status == 2 && missing.stderr.contains("WECHAT_APP_SECRETS"), "\(missing.stderr)")
    }

    @Test("dev-broker prints its address first, serves the topics it was given, and stops on SIGTERM with exit 0")
    func devBroker() throws {
        let output = NSTemporaryDirectory() + "dev-broker-\(UUID().uuidString).txt"
        defer { try? FileManager.default.removeItem(atPath: output) }
        let broker = try ChildProcess([Self.binary, "dev-broker", "--topic", "jobs.here:3"], logPath: output)
        defer { if broker.exitStatus == nil { broker.kill(SIGKILL) } }
        var address = ""
        try waitUntil(timeout: 30, "the address line") {
            address = broker.output.split(separator: "\n").first.map(String.init) ?? ""
            return !address.isEmpty
        }
        #expect(address.hasPrefix("127.0.0.1:") && Int(address.dropFirst(10)) != nil, "\(address)")

        // run's start-up checks reach it: the topic it made is found, one it did not make is not.
        let unreachable = "--startup-timeout 5 --database-url postgresql://x@127.0.0.1:1/x"
        let found = try decryptd("run --appid wx0 --brokers \(address) --jobs-topic jobs.here \(unreachable)")
        let problems = found.stderr.split(separator: "\n").filter { $0.hasPrefix("decryptd: ") }  // not the log lines
        #expect(
            found.status == 2 && problems.count == 1 && problems[0].hasPrefix("decryptd: cannot reach the database"),
            "only the database is a problem: \(found.stderr)")
        let missing = try decryptd("run --appid wx0 --brokers \(address) --jobs-topic jobs.absent \(unreachable)")
        #expect(missing.stderr.contains("topic jobs.absent does not exist on \(address)"), "\(missing.stderr)")

        broker.kill(SIGTERM)
        #expect(try broker.wait(timeout: 30) == 0)
    }

    /// The start-up checks wait up to --startup-timeout for a broker that does not answer; an
    /// operator (or Kubernetes) stopping the worker meanwhile gets the graceful stop's exit 0 at
    /// once, not death by the signal.
    @Test("SIGTERM or SIGINT during start-up: exit 0 at once", arguments: [SIGTERM, SIGINT])
    func signalDuringStartup(signal: Int32) throws {
        let log = NSTemporaryDirectory() + "startup-signal-\(UUID().uuidString).txt"
        defer { try? FileManager.default.removeItem(atPath: log) }
        let arguments = [
            "run", "--log-level", "debug", "--appid", "wx0", "--brokers", "127.0.0.1:1", "--startup-timeout", "60",
            "--database-url", "postgresql://x@127.0.0.1:1/x",
        ]
        let worker = try ChildProcess(
            [Self.binary] + arguments, environment: ChildProcess.environmentWithoutDecryptdConfiguration, logPath: log)
        defer { if worker.exitStatus == nil { worker.kill(SIGKILL) } }
        try waitUntil(timeout: 30, "the start-up checks") { worker.output.contains("checking the brokers and the database") }
        Thread.sleep(forTimeInterval: 0.3)  // into the wait for the broker
        worker.kill(signal)
        #expect(try worker.wait(timeout: 10) == 0, "\(worker.output)")
        #expect(worker.output.contains("stopped during start-up"), "\(worker.output)")
    }

    @Test("--startup-timeout also bounds the wait for a database that accepts the connection but never answers")
    func silentDatabase() throws {
        let database = try HTTPProbe.silentListener()
        defer { close(database.fd) }
        let started = Date()
        let output = try decryptd(
            "run --appid wx0 --brokers 127.0.0.1:1 --startup-timeout 2 --database-url postgresql://x@127.0.0.1:\(database.port)/x"
        )
        let elapsed = Date().timeIntervalSince(started)
        #expect(output.status == 2)
        #expect(
            output.stderr.contains("decryptd: cannot reach the database: ") && output.stderr.contains("timeout expired"), "\(output.stderr)"
        )
        // About 2 s for the database and 2 s for the brokers; libpq's default would be 10 s alone.
        #expect(elapsed < 9, "took \(elapsed) s")
    }

    @Test("run names mistakes in its own flags first, before what it found trying the services")
    func flagProblemsFirst() throws {
        let output = try decryptd(
            "run --appid wx0 --brokers 127.0.0.1:1 --startup-timeout 1 --database-url postgresql://x@127.0.0.1:1/x"
                + " --metrics-port 70000 --progress-interval=-1"
        )
        #expect(output.status == 2)
        let lines = output.stderr.split(separator: "\n").map(String.init)
        #expect(lines.count == 4, "\(output.stderr)")
        guard lines.count == 4 else { return }
        #expect(lines[0] == "decryptd: --metrics-port must be 0 to 65535")
        #expect(lines[1] == "decryptd: --progress-interval must be 0 (none) or up to 86400 seconds")
        #expect(lines[2].hasPrefix("decryptd: cannot reach the database"))
        #expect(lines[3].hasPrefix("decryptd: cannot reach Kafka"))
    }

    @Test(
        "run, reprocess and loadgen name all their own flag mistakes, with the missing settings",
        arguments: [
            (
                "run --kafka-property bad --kafka-property no.such.prop=1 --startup-timeout 0 --metrics-port 70000",
                [
                    "bad --kafka-property bad: use key=value", "bad --kafka-property no.such.prop=1: No such configuration property",
                    "--startup-timeout must be more than 0 and at most 86400 seconds", "--metrics-port must be 0 to 65535",
                ]
            ),
            (
                "reprocess --kafka-property enable.auto.commit=true --reason nope --reason worse --max-attempts 0",
                [
                    "decryptd manages enable.auto.commit", "unknown --reason nope", "unknown --reason worse",
                    "--max-attempts must be at least 1",
                ]
            ),
            (
                "loadgen --jobs 0 --faults bad_padding=2 --stale-key-share 3",
                ["--jobs must be positive", "bad_padding", "--stale-key-share must be from 0 to 1"]
            ),
        ])
    func ownFlagMistakesTogether(arguments: String, expected: [String]) throws {
        let output = try decryptd(arguments, environment: [:])
        #expect(output.status == 2)
        let lines = output.stderr.split(separator: "\n").map(String.init)
        #expect(lines.count == expected.count + 3, "\(output.stderr)")
        let missing = ["no database", "no brokers", "no appid"]
        for fragment in missing { #expect(lines.contains { $0.contains(fragment) }, "\(output.stderr)") }
        let own = lines.filter { line in !missing.contains { line.contains($0) } }
        #expect(own.count == expected.count, "\(output.stderr)")
        for (line, fragment) in zip(own, expected) { #expect(line.contains(fragment), "\(output.stderr)") }
    }

    @Test("nothing configured: every missing setting named at once, not only the first", arguments: ["run", "reprocess", "loadgen"])
    func startupWithNothingConfigured(command: String) throws {
        let output = try decryptd(command, environment: [:])
        #expect(output.status == 2)
        let lines = output.stderr.split(separator: "\n").map(String.init)
        #expect(lines.count == 3, "\(output.stderr)")
        #expect(lines.contains { $0.contains("no database") })
        #expect(lines.contains { $0.contains("no brokers") })
        #expect(lines.contains { $0.contains("no appid") })
    }

    @Test(
        "every command that needs the database words its problems the same way",
        arguments: ["run", "reprocess", "loadgen", "migrate", "report"])
    func databaseProblemWording(command: String) throws {
        // No brokers: their line ("no brokers") is found without waiting for a probe.
        let others = ["run", "reprocess", "loadgen"].contains(command) ? " --appid wx0" : ""
        let cases: [(url: String?, expected: String)] = [
            (nil, "decryptd: no database: give --database-url or set DATABASE_URL"),
            ("postgresql://x@127.0.0.1:1/x", "decryptd: cannot reach the database: "),
            ("postgresql://x@127.0.0.1:1/x?nosuchparameter=1", "decryptd: bad database URL: invalid URI query parameter"),
        ]
        for (url, expected) in cases {
            let output = try decryptd(command + others, environment: url.map { ["DATABASE_URL": $0] } ?? [:])
            #expect(output.status == 2)
            let lines = output.stderr.split(separator: "\n").map(String.init)
            #expect(lines.filter { $0.hasPrefix(expected) }.count == 1, "\(command), \(url ?? "no URL"): \(output.stderr)")
        }
    }

    @Test("decrypt: JSON lines in, one JSON line out per input, the run goes on after bad lines")
    func decryptLines() throws {
        let cases = VectorFile.loaded.cases
        var input = ""
        for item in cases {
            let line: [String: Any] = [
                "appid": item.appid, "session_key": item.sessionKey, "iv": item.iv, "encryptedData": item.encryptedData,
            ]
            input += String(decoding: try JSONSerialization.data(withJSONObject: line), as: UTF8.self) + "\n"
            input += "this is not json\n"
        }
        let output = try decryptd("decrypt", stdin: input)
        #expect(output.status == 0)
        let lines = output.stdout.split(separator: "\n").map { try! JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
        #expect(lines.count == cases.count * 2)
        for (index, item) in cases.enumerated() {
            let result = lines[index * 2]
            if let ok = item.expect.ok {
                #expect(result["ok"] as? Bool == true)
                for (field, value) in [
                    ("phoneNumber", ok.phoneNumber), ("purePhoneNumber", ok.purePhoneNumber), ("countryCode", ok.countryCode),
                ] {
                    #expect(result[field] as? String == value, "\(item.name) \(field)")
                }
                #expect((result["watermarkTimestamp"] as? Int).map(Int64.init) == ok.watermarkTimestamp, "\(item.name)")
                #expect(result["keyIndex"] as? Int == 0)
                #expect(result["repaired"] as? Bool == item.name.hasPrefix("ok_lenient_base64"), "\(item.name)")
            } else {
                #expect(result["ok"] as? Bool == false)
                #expect(result["reason"] as? String == item.expect.error)
            }
            #expect(lines[index * 2 + 1]["reason"] as? String == "malformed_job")
        }
    }

    /// README's table of `run`'s settings and docs/settings.md's of the others are generated
    /// from the binary's own declarations; a setting added, renamed or with a new default must
    /// reach them (scripts/settings-table.py rewrites them).
    @Test("the settings tables in README.md and docs/settings.md are the binary's own")
    func settingsTablesMatch() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let log = NSTemporaryDirectory() + "settings-table-\(UUID().uuidString).txt"
        defer { try? FileManager.default.removeItem(atPath: log) }
        let check = try ChildProcess(
            ["/usr/bin/env", "python3", root.appendingPathComponent("scripts/settings-table.py").path, "--check", "--binary", Self.binary],
            logPath: log)
        #expect(try check.wait(timeout: 60) == 0, "\(check.output)")
        let readme = try String(contentsOf: root.appendingPathComponent("README.md"), encoding: .utf8)
        #expect(readme.contains("| `--exchange-concurrency` | `DECRYPTD_EXCHANGE_CONCURRENCY` | 64 |"), "the table is in README")
    }

    @Test(
        "a database migrated by an older binary: run exits 2, one line naming the pending migrations and decryptd migrate",
        .enabled(if: IsolatedDatabase.enabled, "needs scripts/test.sh"))
    func olderMigrations() throws {
        let (url, database) = try IsolatedDatabase.create(migrated: false)
        _ = try Migrator(migrations: [Migration.embedded[0]]).migrate(database.connection)
        let output = try decryptd("run --startup-timeout 1", environment: Self.unreachable.merging(["DATABASE_URL": url]) { $1 })
        #expect(output.status == 2)
        let lines = output.stderr.split(separator: "\n").filter { $0.contains("migrat") }
        #expect(lines.count == 1, "\(output.stderr)")
        #expect(lines.first?.contains("002_code_jobs.sql") == true && lines.first?.contains("decryptd migrate") == true, "\(output.stderr)")
        #expect(lines.first?.contains("001_create_tables") == false, "only what is pending: \(output.stderr)")
    }

    @Test("migrate twice, then report as JSON", .enabled(if: IsolatedDatabase.enabled, "needs scripts/test.sh"))
    func migrateAndReport() throws {
        let url = try IsolatedDatabase.create(migrated: false).url
        let first = try decryptd("migrate", environment: ["DATABASE_URL": url])
        #expect(first.status == 0)
        #expect(first.stdout.contains("applied          001_create_tables.sql"))
        #expect(first.stdout.contains("applied          002_code_jobs.sql"))
        let second = try decryptd("migrate", environment: ["DATABASE_URL": url])
        #expect(second.status == 0)
        #expect(second.stdout.contains("already applied  001_create_tables.sql"))
        let report = try decryptd("report --format json --since 2w", environment: ["DATABASE_URL": url])
        #expect(report.status == 0)
        let json = try JSONSerialization.jsonObject(with: Data(report.stdout.utf8)) as? [String: Any]
        #expect(json?["total"] as? Int == 0)
        #expect(json?["window_seconds"] as? Int == 14 * 86400)
        let html = try decryptd("report --format html", environment: ["DATABASE_URL": url])
        #expect(html.status == 0 && html.stdout.hasPrefix("<!doctype html>") && html.stdout.contains("</svg>"))
    }

    /// What analysts read: failures by reason in the window, largest first, each with its share,
    /// how many a reprocess recovered, and when it was first and last seen; older failures left out.
    @Test(
        "report: counts, shares, recovered and first/last seen per reason, only inside --since, in all three formats",
        .enabled(if: IsolatedDatabase.enabled, "needs scripts/test.sh"))
    func reportFigures() throws {
        let (url, database) = try IsolatedDatabase.create()
        // (reason, minutes ago, resolved, job kind)
        let failures: [(String, Int, Bool, String?)] = [
            ("bad_padding", 10, true, "encrypted"), ("bad_padding", 20, false, "encrypted"), ("bad_padding", 130, false, nil),
            ("session_not_found", 200, true, "encrypted"), ("code_expired", 30, false, "code"),
            ("invalid_iv", 3 * 1440, false, "encrypted"), ("invalid_iv", 4 * 1440, false, "encrypted"),
        ]
        for (offset, (reason, minutes, resolved, kind)) in failures.enumerated() {
            _ = try database.connection.query(
                """
                INSERT INTO decrypt_failures (appid, openid, reason, detail, source_topic, source_partition, source_offset, failed_at, resolved_at, job_kind)
                VALUES ('wx0', 'o\(offset)', $1, 'd', 'jobs', 0, \(offset), now() - make_interval(mins => \(minutes)),
                        CASE WHEN \(resolved) THEN now() END, $2)
                """, [reason, kind])
        }
        let environment = ["DATABASE_URL": url]

        let day = try decryptd("report --format json", environment: environment)
        #expect(day.status == 0, "\(day.stderr)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(day.stdout.utf8)) as? [String: Any])
        #expect(json["since"] as? String == "24h" && json["window_seconds"] as? Int == 86_400)
        #expect(json["total"] as? Int == 5 && json["recovered"] as? Int == 2)
        #expect(json["by_kind"] as? [String: Int] == ["encrypted": 3, "code": 1], "a row of unknown kind is in neither")
        let reasons = try #require(json["reasons"] as? [[String: Any]])
        #expect(
            reasons.map { $0["reason"] as? String } == ["bad_padding", "code_expired", "session_not_found"],
            "largest first, then by name; invalid_iv is older than 24h")
        #expect(reasons.map { $0["count"] as? Int } == [3, 1, 1])
        #expect(reasons.map { $0["share"] as? Double } == [0.6, 0.2, 0.2])
        #expect(reasons.map { $0["recovered"] as? Int } == [1, 0, 1])
        #expect(reasons.map { $0["recovered_share"] as? Double } == [1.0 / 3.0, 0, 1.0])
        #expect(
            reasons.map { $0["by_kind"] as? [String: Int] } == [
                ["encrypted": 2, "code": 0], ["encrypted": 0, "code": 1], ["encrypted": 1, "code": 0],
            ])
        let badPadding = reasons[0]
        let (first, last) = (badPadding["first_seen"] as? String ?? "", badPadding["last_seen"] as? String ?? "")
        #expect(first.count == 20 && first.hasSuffix("Z") && last.count == 20 && first < last, "\(first) \(last)")
        let hourly = try #require(json["hourly"] as? [[String: Any]])
        let perReason = Dictionary(hourly.map { ($0["reason"] as? String ?? "", $0["count"] as? Int ?? 0) }, uniquingKeysWith: +)
        #expect(perReason == ["bad_padding": 3, "code_expired": 1, "session_not_found": 1], "the hours add up to the counts")
        let hours = hourly.compactMap { $0["hour"] as? String }
        #expect(hours == hours.sorted() && hours.allSatisfy { $0.hasSuffix(":00:00Z") } && Set(hours).count >= 2)

        let week = try decryptd("report --since 7d --format json", environment: environment)
        let weekJSON = try JSONSerialization.jsonObject(with: Data(week.stdout.utf8)) as? [String: Any]
        #expect(weekJSON?["total"] as? Int == 7)
        #expect(
            (weekJSON?["reasons"] as? [[String: Any]])?.map { $0["reason"] as? String } == [
                "bad_padding", "invalid_iv", "code_expired", "session_not_found",
            ])

        let table = try decryptd("report", environment: environment)
        let lines = table.stdout.split(separator: "\n").map(String.init)
        #expect(lines.first == "failures in the last 24h: 5 (encrypted jobs 3, code jobs 1), recovered 2 (40.0%)")
        let row = lines.first { $0.hasPrefix("bad_padding") }?.split(separator: " ").map(String.init)
        #expect(row.map { Array($0[1...5]) } == ["3", "60.0%", "2", "0", "33.3%"], "\(table.stdout)")
        let codeRow = lines.first { $0.hasPrefix("code_expired") }?.split(separator: " ").map(String.init)
        #expect(codeRow.map { Array($0[1...5]) } == ["1", "20.0%", "0", "1", "0.0%"], "\(table.stdout)")
        #expect(!table.stdout.contains("invalid_iv"))

        let html = try decryptd("report --format html --since 7d", environment: environment)
        #expect(html.stdout.contains("invalid_iv</td><td>2</td><td>28.6%</td><td>2</td><td>0</td>"), "\(html.stdout)")
        #expect(html.stdout.contains("code_expired</td><td>1</td><td>14.3%</td><td>0</td><td>1</td>"), "\(html.stdout)")
        #expect(html.stdout.contains("<b>7</b>"))
    }
}
