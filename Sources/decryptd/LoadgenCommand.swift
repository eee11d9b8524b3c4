import ArgumentParser
import DecryptdStore
import DecryptdWorker
import Foundation
import KafkaClient
import Locks
import Logging
import PhoneDecryption
import PostgresClient
import SyntheticLoad

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// `decryptd loadgen`: seed sessions and produce synthetic jobs with a chosen fault mix.
struct LoadgenCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "loadgen",
        abstract: "Seed session keys and produce N synthetic jobs with a chosen mix of faults.",
        discussion: """
            Users get several jobs each (some out of order); some users have a newer, unrelated session \
            key stored, so decryption falls back to the older one; some ok payloads have damaged base64. \
            Faults: malformed_job, session_not_found, invalid_session_key, invalid_iv, invalid_ciphertext, \
            bad_padding, invalid_plaintext, appid_mismatch; for code jobs (--kind code|mixed, served by \
            decryptd dev-wechat) also code_invalid, code_expired, invalid_phone_info, wechat_error and \
            exchange_not_configured (with --unconfigured-appid). A share is of the jobs of the kind the \
            reason belongs to. \
            The same --seed gives the same load. To see reprocessing recover jobs, run the same command \
            again with --store-withheld-sessions after the worker: it stores the keys the load left out \
            (its session_not_found users), as a login service that caught up would, and then \
            `decryptd reprocess` recovers those jobs. The embedded broker keeps about 5 MB per partition \
            (roughly 14,000 jobs): create the topic with enough partitions for large loads (a missing \
            topic is created where the brokers create topics on demand, with their default partition count).
            """
    )

    @OptionGroup var connection: ConnectionOptions

    /// Accepted, so that one list of connection arguments serves every command, but left out of
    /// `--help` and unused: loadgen neither decrypts nor dead-letters.
    @OptionGroup(visibility: .hidden) var decryption: DecryptionOptions

    @Option(
        parsing: .unconditional,
        help:
            "Jobs to produce (made and sent 40,000 at a time, so memory stays flat), at most 100000000. Env: DECRYPTD_LOADGEN_JOBS. Default: 10000."
    )
    var jobs: Int?

    static let mostJobs = 100_000_000

    @Option(
        help:
            "Fault shares, code=share,... e.g. bad_padding=0.02,invalid_iv=0.01. Env: DECRYPTD_LOADGEN_FAULTS. Default: a little of everything (\(Self.defaultFaults))."
    )
    var faults: String?

    static let defaultFaults =
        "bad_padding=0.02,session_not_found=0.01,invalid_session_key=0.005,invalid_iv=0.005,invalid_ciphertext=0.005,invalid_plaintext=0.005,appid_mismatch=0.005,malformed_job=0.005,code_invalid=0.01,code_expired=0.005,invalid_phone_info=0.005,wechat_error=0.005,exchange_not_configured=0.005"

    enum Kind: String, ExpressibleByArgument, CaseIterable {
        case encrypted, code, mixed

        var codeShare: Double {
            switch self {
            case .encrypted: 0
            case .code: 1
            case .mixed: 0.5
            }
        }
    }

    @Option(
        help:
            "Which jobs: encrypted (encryptedData/iv), code (one-time codes for WeChat's exchange, honoured by dev-wechat) or mixed (half each). Env: DECRYPTD_LOADGEN_KIND. Default: encrypted."
    )
    var kind: Kind?

    @Option(
        name: .customLong("transient-share"), parsing: .unconditional,
        help:
            "Share of ok code jobs whose first exchange dev-wechat answers transiently (-1, 45011, 503, a reset, 40001 in turn); they must still end ok. Env: DECRYPTD_LOADGEN_TRANSIENT_SHARE. Default: 0."
    )
    var transientShare: Double?

    @Option(
        name: .customLong("unconfigured-appid"),
        help:
            "An appid the worker serves without an app secret, for exchange_not_configured code jobs (without it those jobs are ok ones). Env: DECRYPTD_LOADGEN_UNCONFIGURED_APPID."
    )
    var unconfiguredAppid: String?

    @Option(
        name: .customLong("jobs-per-user"), parsing: .unconditional,
        help: "Average jobs per user. Env: DECRYPTD_LOADGEN_JOBS_PER_USER. Default: 3.")
    var jobsPerUser: Double?

    @Option(
        name: .customLong("stale-key-share"), parsing: .unconditional,
        help:
            "Share of users whose newest stored key is not the one their payloads used. Env: DECRYPTD_LOADGEN_STALE_KEY_SHARE. Default: 0.2."
    )
    var staleKeyShare: Double?

    @Option(
        parsing: .unconditional, help: "Seed; the same seed gives the same users, keys and jobs. Env: DECRYPTD_LOADGEN_SEED. Default: 1.")
    var seed: UInt64?

    @Option(
        name: .customLong("late-keys"), parsing: .unconditional,
        help:
            "Share of ok encrypted jobs whose session key is stored only after the job, as in the login race (half of those users have an older key stored already). loadgen stores those keys itself, each --late-by after its job, and exits when all are stored. Env: DECRYPTD_LOADGEN_LATE_KEYS. Default: 0."
    )
    var lateKeys: Double?

    @Option(
        name: .customLong("late-by"),
        help: ArgumentHelp(
            "How long after its job each late key is stored: a range such as 0-10s, 1s-20s or 2m (each key at a random point in it). Env: DECRYPTD_LOADGEN_LATE_BY. Default: 0-10s.",
            valueName: "range"))
    var lateBy: String?

    @Option(
        name: .customLong("dev-wechat-url"),
        help: ArgumentHelp(
            "Tell dev-wechat at this URL which session key is each user's current one at WeChat, for its checksession (the users of bad_padding and stale_session_key jobs). Env: DECRYPTD_LOADGEN_DEV_WECHAT_URL. Default: none.",
            valueName: "url"))
    var devWeChatURL: String?

    @Flag(
        name: .customLong("store-withheld-sessions"),
        help:
            "Produce nothing: store the session keys that the load of these same settings (--jobs, --faults, --seed, --appid, ...) left out, the keys of its session_not_found users. Env: DECRYPTD_LOADGEN_STORE_WITHHELD_SESSIONS=1."
    )
    var storeWithheldSessions = false

    func run() throws {
        let logger = try Bootstrap.logging(level: connection.logLevel, defaultLevel: "warning")
        var settings: [String] = []
        let configuration = try connection.configuration(problems: &settings)
        let jobs = try jobs ?? Environment.integer("DECRYPTD_LOADGEN_JOBS") ?? 10_000
        // No appid: the start-up checks below report it, with every other missing setting.
        var plan = LoadGenerator.Plan(jobs: jobs, appid: configuration.appids.first ?? "")
        if !(1...Self.mostJobs).contains(jobs) { settings.append("--jobs must be positive and at most \(Self.mostJobs)") }
        let faults = faults ?? Environment.value("DECRYPTD_LOADGEN_FAULTS") ?? Self.defaultFaults
        do { plan.faults = try LoadGenerator.Plan.faults(faults) } catch { settings.append("\(error)") }
        plan.jobsPerUser = try jobsPerUser ?? Environment.number("DECRYPTD_LOADGEN_JOBS_PER_USER") ?? plan.jobsPerUser
        plan.staleKeyShare = try staleKeyShare ?? Environment.number("DECRYPTD_LOADGEN_STALE_KEY_SHARE") ?? plan.staleKeyShare
        if !(plan.jobsPerUser >= 1 && plan.jobsPerUser.isFinite) { settings.append("--jobs-per-user must be a number of at least 1") }
        if !(0...1).contains(plan.staleKeyShare) { settings.append("--stale-key-share must be from 0 to 1") }
        plan.seed = try seed ?? Environment.integer("DECRYPTD_LOADGEN_SEED") ?? plan.seed
        plan.codeShare = (try kind ?? Environment.choice("DECRYPTD_LOADGEN_KIND") ?? .encrypted).codeShare
        plan.transientShare = try transientShare ?? Environment.number("DECRYPTD_LOADGEN_TRANSIENT_SHARE") ?? 0
        if !(0...1).contains(plan.transientShare) { settings.append("--transient-share must be from 0 to 1") }
        plan.unconfiguredAppid = unconfiguredAppid ?? Environment.value("DECRYPTD_LOADGEN_UNCONFIGURED_APPID")
        plan.topic = configuration.jobsTopic
        plan.lateKeyShare = try lateKeys ?? Environment.number("DECRYPTD_LOADGEN_LATE_KEYS") ?? 0
        if !(0...1).contains(plan.lateKeyShare) { settings.append("--late-keys must be from 0 to 1") }
        let lateText = lateBy ?? Environment.value("DECRYPTD_LOADGEN_LATE_BY") ?? "0-10s"
        let lateRange = Self.range(lateText)
        if lateRange == nil { settings.append("bad --late-by \(lateText): use a range such as 0-10s, 1s-20s or 2m") }
        let storeWithheldSessions = try storeWithheldSessions || Environment.flag("DECRYPTD_LOADGEN_STORE_WITHHELD_SESSIONS")

        let produced = storeWithheldSessions ? [] : [configuration.jobsTopic]
        let problems = Preflight.problems(configuration, topics: [], produced: produced, settings: settings, logger: logger)
        guard problems.isEmpty else { throw CommandError.usage(lines: problems) }
        let database = DecryptdDatabase(connection: try PostgresConnection(url: configuration.databaseURL))
        if storeWithheldSessions {
            try Self.storeWithheldSessions(of: plan, in: database)
        } else {
            try Self.produce(
                plan, lateBy: lateRange ?? 0...0, devWeChat: devWeChatURL ?? Environment.value("DECRYPTD_LOADGEN_DEV_WECHAT_URL"),
                configuration: configuration, database: database, logger: logger)
        }
    }

    /// Seeds the sessions and produces the jobs, with a progress bar, then prints what was made.
    static func produce(
        _ plan: LoadGenerator.Plan, lateBy: ClosedRange<Double>, devWeChat: String?, configuration: WorkerConfiguration,
        database: DecryptdDatabase, logger: Logger
    ) throws {
        var producerConfiguration = configuration.producerConfiguration
        // Large record batches: a real broker returns many batches per partition in one fetch, the
        // embedded one only one, so small batches would make the consumer wait on round trips.
        for (key, value) in ["linger.ms": "100", "batch.num.messages": "10000"] where producerConfiguration.properties[key] == nil {
            producerConfiguration.properties[key] = value
        }
        let producer = try KafkaProducer(configuration: producerConfiguration, logger: logger)
        producer.start()
        defer { producer.close() }

        let bar = ProgressBar(total: plan.jobs, label: "producing jobs")
        let expectation: LoadGenerator.Expectation
        do {
            expectation = try LoadGenerator(plan: plan).run(database: database, producer: producer, detailed: false) { bar.update($0) }
        } catch {
            throw CommandError.failure("load generation failed", cause: error)
        }
        bar.finish()
        let kinds = JobKind.allCases.compactMap { kind in expectation.kinds[kind].map { "\($0) \(kind.rawValue)" } }.joined(separator: ", ")
        print(
            "loadgen: produced \(expectation.jobs) jobs (\(kinds)) to \(plan.topic) for \(expectation.usersWithPhone) users with a phone number to store"
        )
        for (kind, count) in expectation.counts.sorted(by: { $0.value > $1.value }) {
            print("  " + kind.padding(toLength: 24, withPad: " ", startingAt: 0) + String(count).leftPadded(8))
        }
        if let devWeChat, !expectation.currentKeys.isEmpty {
            try registerCurrentKeys(expectation.currentKeys, at: devWeChat)
        }
        if !expectation.lateSessions.isEmpty {
            try storeLate(expectation.lateSessions, by: lateBy, seed: plan.seed, database: database)
        }
    }

    /// `POST {url}/dev/session-keys` with `{appid: {openid: key}}`: dev-wechat's checksession then
    /// knows which key WeChat holds as current for these users.
    static func registerCurrentKeys(_ keys: [UserKey: String], at url: String) throws {
        var byAppid: [String: [String: String]] = [:]
        for (user, key) in keys { byAppid[user.appid, default: [:]][user.openid] = key }
        guard let endpoint = URL(string: url.hasSuffix("/") ? url + "dev/session-keys" : url + "/dev/session-keys") else {
            throw CommandError.usage("--dev-wechat-url \(url) is not a URL")
        }
        var request = URLRequest(url: endpoint, timeoutInterval: 30)
        request.httpMethod = "POST"
        request.httpBody = try JSONSerialization.data(withJSONObject: byAppid)
        let done = DispatchSemaphore(value: 0)
        let outcome = Mutex<Result<Int, any Error>>(.success(0))
        URLSession.shared.dataTask(with: request) { _, response, error in
            let result: Result<Int, any Error> = error.map { .failure($0) } ?? .success((response as? HTTPURLResponse)?.statusCode ?? 0)
            outcome.withLock { $0 = result }
            done.signal()
        }.resume()
        done.wait()
        switch outcome.withLock({ $0 }) {
        case .success(200): print("loadgen: told dev-wechat the current session keys of \(keys.count) users")
        case .success(let status): throw CommandError.failure("dev-wechat at \(url) answered HTTP \(status) to /dev/session-keys")
        case .failure(let error): throw CommandError.failure("cannot reach dev-wechat at \(url)", cause: error)
        }
    }

    /// Stores the late keys, each at a random point of `range` after its job was produced, as the
    /// login service of the race would (a new key, issued now).
    static func storeLate(
        _ sessions: [(user: UserKey, sessionKey: String, producedAt: Date)], by range: ClosedRange<Double>, seed: UInt64,
        database: DecryptdDatabase
    ) throws {
        var random = SplitMix(seed: seed &+ 0x1A7E)
        let due = sessions.map { ($0.producedAt.addingTimeInterval(Double.random(in: range, using: &random)), $0.user, $0.sessionKey) }
            .sorted { $0.0 < $1.0 }
        print(
            "loadgen: storing \(due.count) late session keys over the next \(Int((due.last?.0.timeIntervalSinceNow ?? 0).rounded(.up))) s")
        var next = 0
        while next < due.count {
            let wait = due[next].0.timeIntervalSinceNow
            if wait > 0 { Thread.sleep(forTimeInterval: min(wait, 0.05)) }
            var ready: [(user: UserKey, sessionKey: String, issuedAt: Double)] = []
            while next < due.count, due[next].0 <= Date() {
                ready.append((due[next].1, due[next].2, Date().timeIntervalSince1970))
                next += 1
            }
            do {
                try database.insertSessionKeys(ready)
            } catch {
                throw CommandError.failure("storing late session keys failed", cause: error)
            }
        }
        print("loadgen: stored \(due.count) late session keys")
    }

    /// `0-10s`, `1s-20s`, `2m` (from 0): seconds, from the lower end to the upper.
    static func range(_ text: String) -> ClosedRange<Double>? {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false).map(String.init)
        guard parts.count <= 2, let last = parts.last, let high = WeChatOptions.duration(last) else { return nil }
        // "0-10s": the lower end takes the upper's unit when it has none.
        var lowText = parts.count == 2 ? parts[0] : "0"
        if let unit = last.last, unit.isLetter, lowText.last?.isNumber == true { lowText.append(unit) }
        guard let low = WeChatOptions.duration(lowText), low <= high, high <= 86_400 else { return nil }
        return low...high
    }

    /// Stores the keys that the load of `plan` left out; produces nothing.
    static func storeWithheldSessions(of plan: LoadGenerator.Plan, in database: DecryptdDatabase) throws {
        let stored: Int
        do {
            stored = try LoadGenerator(plan: plan).storeWithheldSessions(database: database)
        } catch {
            throw CommandError.failure("storing the withheld session keys failed", cause: error)
        }
        print("loadgen: stored \(stored) withheld session key(s); decryptd reprocess can now recover their session_not_found jobs")
    }
}

/// A one-line progress bar on stderr (redrawn in place on a terminal, a few lines otherwise).
final class ProgressBar {
    private let total: Int
    private let label: String
    private let terminal = isatty(STDERR_FILENO) == 1
    private var lastShown = -1

    init(total: Int, label: String) {
        self.total = max(total, 1)
        self.label = label
    }

    func update(_ done: Int) {
        let percent = min(100, done * 100 / total)
        guard percent != lastShown, terminal || percent / 25 != lastShown / 25 || percent == 100 else { return }
        lastShown = percent
        let width = 30
        let filled = percent * width / 100
        let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
        let line = "\(label) [\(bar)] \(percent)% (\(done)/\(total))"
        FileHandle.standardError.write(Data((terminal ? "\r" + line : line + "\n").utf8))
    }

    func finish() {
        if terminal { FileHandle.standardError.write(Data("\n".utf8)) }
    }
}
