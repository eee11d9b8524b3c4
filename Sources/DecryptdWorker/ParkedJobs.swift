import DeadLetterFormat
import DecryptdStore
import Foundation
import KafkaClient
public import Logging
public import PhoneDecryption
import WeChatAPI

/// What is done with jobs waiting in `parked_jobs` (SPEC "Waiting for a session key"), for the
/// worker's parked-jobs stage and for `decryptd parked --expire` alike: retry those a newer key
/// may cure, fail those past their deadline. Each round locks its jobs (FOR UPDATE SKIP LOCKED, so
/// any worker of the group may take any job, one at a time per job), makes their dead letters and
/// outcome records durable, then writes their rows and ends or updates the parked rows in one
/// transaction. A crash before the commit leaves the jobs parked and unlocked; a crash after it
/// has sent what it had to. Blocking: run it on its own thread, with its own connection.
struct ParkedJobs {
    struct Settings: Sendable {
        var appids: [String]
        var maxSessionKeys: Int
        var reasons: Set<FailureReason>
        var deadLetterTopic: String
        var group: String
        var outcomesTopic: String?
        /// Jobs locked per round (one transaction).
        var roundSize = 256
        /// Asks WeChat's checksession about jobs about to fail `bad_padding` at their deadline
        /// (SPEC "Telling stale keys apart"): each job's failure, refined; nil: no checks.
        var checkSessions: (@Sendable ([SessionCheck]) -> [DecryptFailure])?
    }

    /// A job about to fail `bad_padding`: its user, the newest stored key, the failure.
    struct SessionCheck: Sendable {
        var user: UserKey
        var newestKey: String
        var failure: DecryptFailure
    }

    /// What a round did, for metrics and summaries.
    struct Round: Sendable {
        var healed: [Int64] = []
        var failed: [FailureReason] = []
        var stillWaiting = 0
        var count: Int { healed.count + failed.count + stillWaiting }
    }

    let settings: Settings
    let database: DecryptdDatabase
    /// Sends records and returns once every one is acknowledged (throws what cannot be retried).
    let send: ([KafkaRecord]) throws -> Void
    private let decryptor = PhoneDecryptor()

    init(settings: Settings, database: DecryptdDatabase, send: @escaping ([KafkaRecord]) throws -> Void) {
        self.settings = settings
        self.database = database
        self.send = send
    }

    /// One round of retries: jobs of `users` (of anybody when nil) for which a newer key is stored.
    func retryCurable(users: [UserKey]?) throws -> Round {
        try inTransaction {
            let jobs = try database.lockCurable(users: users, limit: settings.roundSize)
            guard !jobs.isEmpty else { return Round() }
            let distinct = Array(Set(jobs.map(\.record.user)))
            let keys = try database.sessionKeysWithNewest(forDistinct: distinct, limit: settings.maxSessionKeys)
            let byUser = Dictionary(uniqueKeysWithValues: zip(distinct, keys))
            var round = Round()
            var changes = ParkedJobChanges()
            var records: [KafkaRecord] = []
            for parked in jobs {
                let message = parked.record.message
                var job = PendingJob(message, appids: settings.appids)
                let found = byUser[parked.record.user] ?? ([], nil)
                if job.awaitsDecryption {
                    job.decrypt(with: decryptor, sessionKeys: found.keys)
                }
                switch job.outcome {
                case .success(let payload)?:
                    records += healing(parked, message: message, job: job, payload: payload, changes: &changes, round: &round)
                case .failure(let failure)? where settings.reasons.contains(failure.reason):
                    changes.stillWaiting.append((parked.record.source, failure.reason.rawValue, failure.detail, found.newest))
                    round.stillWaiting += 1
                default:
                    // Not a failure a newer key can cure (the job itself is wrong): it fails now.
                    let failure = job.outcome?.failureValue ?? DecryptFailure(.malformedJob, "parked job could not be read back")
                    records += failing(parked, message: message, job: job, failure: failure, changes: &changes)
                    round.failed.append(failure.reason)
                }
            }
            try send(records)
            try database.finishParked(changes)
            return round
        }
    }

    /// One round of expiry: jobs `selection` names fail with the reason they last failed with:
    /// failure row, dead letter with `decrypt.parked.ms`, outcome record. A due job whose newer key
    /// has landed but was not yet tried (its notification is still on its way) is tried once more
    /// first: it heals, or fails with what that try says.
    func expire(_ selection: ParkedSelection) throws -> Round {
        try inTransaction {
            let jobs = try database.lockExpiring(selection, limit: settings.roundSize)
            var round = Round()
            guard !jobs.isEmpty else { return round }
            var keys: [UserKey: (keys: [String], newest: Int64?)] = [:]
            var due = false
            if case .due = selection { due = true }
            // At the deadline the keys give a last try; the checksession asks need them in any case.
            if due || settings.checkSessions != nil {
                let users = Array(Set(jobs.map(\.record.user)))
                keys = Dictionary(
                    uniqueKeysWithValues: zip(users, try database.sessionKeysWithNewest(forDistinct: users, limit: settings.maxSessionKeys))
                )
            }
            var changes = ParkedJobChanges()
            var records: [KafkaRecord] = []
            var ending: [(parked: ParkedJob, job: PendingJob, failure: DecryptFailure)] = []
            for parked in jobs {
                let message = parked.record.message
                var job = PendingJob(message, appids: settings.appids)
                var failure = DecryptFailure(FailureReason(rawValue: parked.record.reason) ?? .badPadding, parked.record.detail)
                if let found = keys[parked.record.user], let newest = found.newest, newest > (parked.record.triedIssuedAt ?? Int64.min),
                    job.awaitsDecryption
                {
                    job.decrypt(with: decryptor, sessionKeys: found.keys)
                    if case .success(let payload)? = job.outcome {
                        records += healing(parked, message: message, job: job, payload: payload, changes: &changes, round: &round)
                        continue
                    }
                    failure = job.outcome?.failureValue ?? failure
                }
                ending.append((parked, job, failure))
            }
            // Those about to fail bad_padding ask checksession first, all of them at once.
            let asks: [(index: Int, check: SessionCheck)] = ending.indices.compactMap { index in
                let (parked, _, failure) = ending[index]
                guard failure.reason == .badPadding, let newest = keys[parked.record.user]?.keys.first else { return nil }
                return (index, SessionCheck(user: parked.record.user, newestKey: newest, failure: failure))
            }
            if let checkSessions = settings.checkSessions, !asks.isEmpty {
                for (ask, failure) in zip(asks, checkSessions(asks.map(\.check))) { ending[ask.index].failure = failure }
            }
            for (parked, job, failure) in ending {
                records += failing(parked, message: parked.record.message, job: job, failure: failure, changes: &changes)
                round.failed.append(failure.reason)
            }
            try send(records)
            try database.finishParked(changes)
            return round
        }
    }

    /// The rows and records of a parked job that a newer key decrypted: its member row, its
    /// ending, its outcome record.
    private func healing(
        _ parked: ParkedJob, message: KafkaMessage, job: PendingJob, payload: PhonePayload, changes: inout ParkedJobChanges,
        round: inout Round
    ) -> [KafkaRecord] {
        changes.members.append(MemberRecord(user: parked.record.user, payload: payload))
        changes.ended.append((parked.record.source, healed: true))
        round.healed.append(parked.waitedMilliseconds)
        return announcement(message, job: job, status: .ok, waited: parked.waitedMilliseconds)
    }

    /// The rows and records of a parked job that ends failed.
    private func failing(
        _ parked: ParkedJob, message: KafkaMessage, job: PendingJob, failure: DecryptFailure, changes: inout ParkedJobChanges
    ) -> [KafkaRecord] {
        let record = parked.record
        changes.failures.append(
            FailureRecord(appid: record.user.appid, openid: record.user.openid, failure: failure, source: record.source, kind: .encrypted))
        changes.ended.append((record.source, healed: false))
        let source = DeadLetter.Source(
            topic: record.source.topic, partition: record.source.partition, offset: record.source.offset, timestamp: record.sourceTimestamp)
        var deadLetter = DeadLetter.record(
            for: message, failure: failure, source: source, attempts: 1, topic: settings.deadLetterTopic, group: settings.group)
        deadLetter.headers.append(KafkaHeader(DeadLetter.parkedMilliseconds, String(parked.waitedMilliseconds)))
        var job = job
        job.outcome = .failure(failure)
        return [deadLetter] + announcement(message, job: job, status: .failed, waited: parked.waitedMilliseconds)
    }

    private func announcement(_ message: KafkaMessage, job: PendingJob, status: OutcomeRecord.Status, waited: Int64) -> [KafkaRecord] {
        guard let topic = settings.outcomesTopic else { return [] }
        return [
            OutcomeRecord.record(
                for: message, status: status, kind: .encrypted, appid: job.appid, openid: job.openid,
                reason: job.outcome?.failureValue?.reason, waitedMilliseconds: waited, topic: topic)
        ]
    }

    /// Runs `body` in a transaction of its own on the round's connection: rolled back when it
    /// throws (the parked rows stay as they were, and unlocked).
    private func inTransaction<R>(_ body: () throws -> R) throws -> R {
        let connection = database.connection
        try connection.execute("BEGIN")
        do {
            let result = try body()
            try connection.execute("COMMIT")
            return result
        } catch {
            if connection.isConnected { _ = try? connection.execute("ROLLBACK") }
            throw error
        }
    }
}

/// `decryptd parked --expire`: ends waiting early for the jobs an operator names, exactly as at
/// their deadline (a last try with a newer key, checksession for those about to fail bad_padding
/// when app secrets are configured, failure row, dead letter with `decrypt.parked.ms`, outcome record).
public enum ParkedJobsExpiry {
    /// Expires the parked jobs of `reason` (any when nil) that have waited at least `olderThan`
    /// seconds, in rounds, and returns how many ended, by reason. Jobs a worker has locked at that
    /// moment are left to it.
    public static func expire(
        configuration: WorkerConfiguration, reason: FailureReason?, olderThan: Double, logger: Logger
    ) throws -> [FailureReason: Int] {
        let database = try DecryptdDatabase(url: configuration.databaseURL)
        let producer = try KafkaProducer(configuration: configuration.producerConfiguration, logger: logger)
        producer.start()
        defer { producer.close(timeout: 10) }
        let sender = DeadLetterSender(
            transport: producer, backoff: Backoff(maximumDelay: configuration.maxRetryDelay), logger: logger, stop: StopRequest())
        var settings = ParkedJobs.Settings(
            appids: configuration.appids, maxSessionKeys: configuration.maxSessionKeys, reasons: configuration.parkReasons,
            deadLetterTopic: configuration.deadLetterTopic, group: configuration.group, outcomesTopic: configuration.outcomesTopic)
        var exchanger: PhoneCodeExchanger?
        if !configuration.appSecrets.isEmpty {
            let transport = try HTTPClientTransport(baseURL: configuration.wechatAPIURL, connections: configuration.exchangeConcurrency)
            var exchangeConfiguration = PhoneCodeExchanger.Configuration()
            exchangeConfiguration.timeout = configuration.exchangeTimeout
            let checker = PhoneCodeExchanger(
                transport: transport, credentials: configuration.appSecrets, configuration: exchangeConfiguration,
                apiSecurity: configuration.apiSecurity, logger: logger)
            exchanger = checker
            settings.checkSessions = { checks in
                SessionChecks.blocking(checks, exchanger: checker, concurrency: configuration.exchangeConcurrency)
            }
        }
        defer { exchanger?.close() }
        let jobs = ParkedJobs(settings: settings, database: database, send: { try sender.sendAll($0) })
        var ended: [FailureReason: Int] = [:]
        while true {
            let round = try jobs.expire(.matching(reason: reason?.rawValue, olderThanSeconds: olderThan))
            for reason in round.failed { ended[reason, default: 0] += 1 }
            if round.count < jobs.settings.roundSize { return ended }
        }
    }
}
