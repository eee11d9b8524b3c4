import DeadLetterFormat
import DecryptdStore
import Foundation
import KafkaClient
import Locks
import LogKeys
import Logging
import PhoneDecryption

/// The worker's stage for jobs waiting in `parked_jobs`: one thread with one connection, which
/// LISTENs for the notification the migration's trigger sends when the login service stores a
/// session key, and then retries that user's waiting jobs (``ParkedJobs``). What it costs per second
/// depends on the keys stored and the jobs due, not on how many jobs wait:
/// - a stored key: one notification, then one indexed lookup of that user's parked jobs;
/// - every second: one indexed lookup of the jobs past their deadline;
/// - every 10 s, or less often for a large table (at most 1/500 of the time): a count by reason
///   for the metrics (this one reads the table);
/// - after (re)connecting, once: every parked job a key stored meanwhile may cure (notifications
///   are not kept for a listener that is gone).
/// A job parked while its key was being stored could miss the notification (it was sent before
/// the parked row committed): the persist slots hand each batch's parked users to ``recheck(_:)``
/// after the commit, and those are looked at as if notified.
final class ParkedJobsStage: Sendable {
    struct Settings: Sendable {
        var jobs: ParkedJobs.Settings
        /// Seconds between expiry sweeps and between metric counts.
        var expiryInterval: Double = 1
        var summaryInterval: Double = 10
    }

    private let settings: Settings
    private let openDatabase: @Sendable () throws -> DecryptdDatabase
    private let backoff: Backoff
    private let logger: Logger
    private let metrics: WorkerMetrics
    private let abandon: StopRequest
    private let closing = StopRequest()
    private let send: @Sendable ([KafkaRecord]) throws -> Void
    private let onPostgresRetry: @Sendable () -> Void
    private let onEnded: @Sendable (_ healed: Int, _ failed: Int) -> Void
    /// Users to look at, handed over by the persist slots.
    private let rechecks = Mutex(Set<UserKey>())
    private let stage = Mutex<Stage?>(nil)

    init(
        settings: Settings, openDatabase: @escaping @Sendable () throws -> DecryptdDatabase, backoff: Backoff, logger: Logger,
        metrics: WorkerMetrics, abandon: StopRequest, send: @escaping @Sendable ([KafkaRecord]) throws -> Void,
        onPostgresRetry: @escaping @Sendable () -> Void, onEnded: @escaping @Sendable (_ healed: Int, _ failed: Int) -> Void
    ) {
        self.onEnded = onEnded
        self.settings = settings
        self.openDatabase = openDatabase
        self.backoff = backoff
        self.logger = logger
        self.metrics = metrics
        self.abandon = abandon
        self.send = send
        self.onPostgresRetry = onPostgresRetry
    }

    /// What the stage's thread keeps between its turns (it never leaves that thread).
    private final class Turns {
        let database: DecryptdDatabase
        let jobs: ParkedJobs
        /// The server process that LISTENs; another (or none) means LISTEN must be repeated.
        var listening: Int32?
        /// Users to retry, kept until a turn has handled them (a failed turn keeps them).
        var users = Set<UserKey>()
        var everyone = false
        var nextExpiry = Date.distantPast
        var nextSummary = Date.distantPast

        init(database: DecryptdDatabase, jobs: ParkedJobs) {
            self.database = database
            self.jobs = jobs
        }
    }

    func start(onError: @escaping @Sendable (_ error: any Error, _ stage: String) -> Void) {
        let take: @Sendable () -> Void? = { [closing, abandon] in
            // Abandoned work is not worked on (see Stage): wait for the close instead of spinning.
            if abandon.isRequested { _ = closing.wait(seconds: 0.2) }
            return closing.isRequested ? nil : ()
        }
        let open: @Sendable () throws -> Turns = { [self] in
            let database = try openDatabase()
            return Turns(database: database, jobs: ParkedJobs(settings: settings.jobs, database: database, send: send))
        }
        let started = Stage("decryptd-parked-jobs", take: take, abandon: abandon, onError: onError, resource: open) { [self] _, turns in
            try backoff.run("parked jobs", logger: logger, stop: abandon, onRetry: onPostgresRetry) { try turn(turns) }
        }
        stage.withLock { $0 = started }
    }

    /// Looks at these users' parked jobs soon (they were parked just now).
    func recheck(_ users: some Sequence<UserKey>) {
        rechecks.withLock { $0.formUnion(users) }
    }

    func close() {
        closing.request()
        stage.withLock { $0 }?.join()
    }

    /// One turn: listen (again), wait briefly for stored keys, retry what they may cure, expire
    /// what is due, refresh the gauges.
    private func turn(_ turns: Turns) throws {
        let connection = turns.database.connection
        if turns.listening == nil || connection.backendPID != turns.listening {
            try connection.connect()
            try turns.database.listenForSessionKeys()
            turns.listening = connection.backendPID
            turns.everyone = true
        }
        for user in try turns.database.storedSessionKeys(waitingUpTo: 0.2) {
            if let user { turns.users.insert(user) } else { turns.everyone = true }
        }
        turns.users.formUnion(
            rechecks.withLock { users in
                defer { users = [] }
                return users
            })
        if turns.everyone {
            while try record(turns.jobs.retryCurable(users: nil)) == settings.jobs.roundSize {}
            turns.everyone = false
            turns.users = []
        }
        while !turns.users.isEmpty {
            let some = Array(turns.users.prefix(settings.jobs.roundSize))
            while try record(turns.jobs.retryCurable(users: some)) == settings.jobs.roundSize {}
            turns.users.subtract(some)
        }
        let now = Date()
        if now >= turns.nextExpiry {
            while try record(turns.jobs.expire(.due)) == settings.jobs.roundSize {}
            turns.nextExpiry = now.addingTimeInterval(settings.expiryInterval)
        }
        if now >= turns.nextSummary {
            let started = Date()
            let summary = try turns.database.parkedSummary()
            let took = Date().timeIntervalSince(started)
            for (reason, gauge) in metrics.parkedNow {
                gauge.record(summary.rows.first { $0.reason == reason.rawValue }?.count ?? 0)
            }
            metrics.parkedOldestAge.record(summary.oldestSeconds)
            // The count reads the whole table: at most 1/500 of the time goes to it (at a million
            // parked jobs it takes about 0.2 s, so it runs every 100 s), so that what a worker
            // spends per second does not grow with the jobs that wait.
            turns.nextSummary = Date().addingTimeInterval(max(settings.summaryInterval, took * 500))
        }
    }

    /// Counts a round in the metrics and logs it; returns how many jobs it locked.
    private func record(_ round: ParkedJobs.Round) -> Int {
        if !round.healed.isEmpty {
            metrics.healed.increment(by: round.healed.count)
            for waited in round.healed { metrics.healedWait.recordMilliseconds(waited) }
        }
        for reason in round.failed { metrics.expired[reason]?.increment() }
        if settings.jobs.outcomesTopic != nil {
            if !round.healed.isEmpty { metrics.announced[.ok]?.increment(by: round.healed.count) }
            if !round.failed.isEmpty { metrics.announced[.failed]?.increment(by: round.failed.count) }
        }
        if !round.healed.isEmpty || !round.failed.isEmpty { onEnded(round.healed.count, round.failed.count) }
        if round.count > 0 {
            logger.debug(
                "parked jobs handled",
                metadata: [
                    LogKey.jobs: "\(round.count)", LogKey.healed: "\(round.healed.count)", LogKey.failed: "\(round.failed.count)",
                    LogKey.waiting: "\(round.stillWaiting)",
                ])
        }
        return round.count
    }
}
