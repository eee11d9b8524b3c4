import DeadLetterFormat
import DecryptdStore
import Foundation
import KafkaClient
import PhoneDecryption

/// What one batch's results become, for `run` and `reprocess` alike: member rows, failure rows,
/// failure rows to resolve, and dead letters. A pure value: it reads the jobs' outcomes and
/// writes nothing; the caller makes both parts durable before completing the jobs.
struct BatchOutcome {
    /// The rows for the outcome statement (members, failures, resolutions; exchanges are the
    /// caller's to add).
    var rows = OutcomeBatch()
    /// One dead letter per failed job, in job order.
    var deadLetters: [KafkaRecord] = []
    /// One outcome record per job (SPEC "Outcome records"), to send once ``rows`` are durable;
    /// empty unless the worker announces outcomes.
    var announcements: [KafkaRecord] = []

    /// Where a job is replayed from and how often it failed before, as its dead letter says.
    struct Origin {
        /// The original job's coordinates (a failure row's key, a dead letter's `decrypt.source.*`).
        var source: DeadLetter.Source
        /// The dead letter's `decrypt.attempts`: 1 for a job's first failure.
        var attempts: Int
    }

    /// What the dead letters say besides each job's failure.
    struct DeadLetterContext {
        var topic: String
        var group: String
        /// ``DeadLetter/rfc3339(_:)`` of the failure time, shared by the batch.
        var failedAt: String
    }

    /// A batch of fresh jobs (`run`): each job is its own source, at its first attempt; a success
    /// already stored (a code found in the exchange ledger) writes no member row again; a parked job
    /// becomes a `parked_jobs` row waiting at most `parkTimeout` seconds. With `outcomesTopic`, each
    /// job's outcome record is made too.
    init(
        fresh jobs: [PendingJob], deadLetters context: @autoclosure () -> DeadLetterContext, parkTimeout: Double = 0,
        outcomesTopic: String? = nil
    ) {
        rows.members.reserveCapacity(jobs.count)
        rows.parkTimeoutSeconds = parkTimeout
        var shared: DeadLetterContext?
        // Through the buffer, reading only the fields needed: copying whole jobs out would retain
        // every string they hold.
        jobs.withUnsafeBufferPointer { jobs in
            for index in jobs.indices {
                let status: OutcomeRecord.Status
                var reason: FailureReason?
                switch jobs[index].outcome! {
                case .success(let payload):
                    rows.members.append(MemberRecord(user: jobs[index].user!, payload: payload))
                    status = .ok
                case .alreadyStored:
                    status = .ok
                case .failure(let failure):
                    let message = jobs[index].message
                    if shared == nil { shared = context() }  // formatted once, if a job failed
                    let source = DeadLetter.Source(
                        topic: message.topic, partition: message.partition, offset: message.offset, timestamp: message.timestamp)
                    addFailure(of: jobs[index], failure, origin: Origin(source: source, attempts: 1), context: shared!)
                    (status, reason) = (.failed, failure.reason)
                case .parked(let failure, let triedIssuedAt):
                    rows.parked.append(
                        ParkedJobRecord(jobs[index].message, user: jobs[index].user!, failure: failure, triedIssuedAt: triedIssuedAt))
                    (status, reason) = (.parked, failure.reason)
                }
                if let outcomesTopic {
                    announcements.append(
                        OutcomeRecord.record(
                            for: jobs[index].message, status: status, kind: jobs[index].kind, appid: jobs[index].appid,
                            openid: jobs[index].openid, reason: reason, topic: outcomesTopic))
                }
            }
        }
    }

    /// A batch of replayed dead letters (`reprocess`): each job's source and attempts come from
    /// its dead letter (`origins`, one per job); a success resolves the failure row of its source.
    init(replayed jobs: [PendingJob], origins: [Origin], deadLetters context: DeadLetterContext) {
        precondition(jobs.count == origins.count, "one origin per job")
        for (job, origin) in zip(jobs, origins) {
            switch job.outcome! {
            case .success(let payload):
                rows.members.append(MemberRecord(user: job.user!, payload: payload))
                rows.resolved.append(origin.source.coordinates)
            case .alreadyStored:
                rows.resolved.append(origin.source.coordinates)
            case .failure(let failure):
                addFailure(of: job, failure, origin: Origin(source: origin.source, attempts: origin.attempts + 1), context: context)
            case .parked:
                preconditionFailure("reprocess does not park")
            }
        }
    }

    private mutating func addFailure(of job: PendingJob, _ failure: DecryptFailure, origin: Origin, context: DeadLetterContext) {
        rows.failures.append(
            FailureRecord(appid: job.appid, openid: job.openid, failure: failure, source: origin.source.coordinates, kind: job.kind))
        deadLetters.append(
            DeadLetter.record(
                for: job.message, failure: failure, source: origin.source, attempts: origin.attempts,
                topic: context.topic, group: context.group, failedAt: context.failedAt
            ))
    }
}

extension DeadLetter.Source {
    /// The key of the job's failure row.
    var coordinates: SourceCoordinates { SourceCoordinates(topic: topic, partition: partition, offset: offset) }
}

extension ParkedJobRecord {
    /// The parked row of a job that waits for a newer key than the one issued at `triedIssuedAt`.
    init(_ message: KafkaMessage, user: UserKey, failure: DecryptFailure, triedIssuedAt: Int64?) {
        self.init(
            source: SourceCoordinates(topic: message.topic, partition: message.partition, offset: message.offset),
            sourceTimestamp: message.timestamp, user: user, reason: failure.reason.rawValue, detail: failure.detail,
            triedIssuedAt: triedIssuedAt, key: message.key, value: message.value ?? [], headers: PackedHeaders.pack(message.headers))
    }

    /// The job as it was consumed: its key, value, headers, timestamp and coordinates.
    var message: KafkaMessage {
        KafkaMessage(
            id: KafkaMessageID(topic: source.topic, partition: source.partition, offset: source.offset), key: key, value: value,
            headers: PackedHeaders.unpack(headers), timestamp: sourceTimestamp)
    }
}

/// A job's headers as one byte string, for `parked_jobs.job_headers`: per header, the name's length
/// (4 bytes, big-endian), the value's length (4 bytes, -1 for no value), the name, the value.
enum PackedHeaders {
    static func pack(_ headers: [KafkaHeader]) -> [UInt8] {
        var bytes: [UInt8] = []
        for header in headers {
            let name = Array(header.name.utf8)
            append(UInt32(name.count), to: &bytes)
            append(header.value.map { UInt32($0.count) } ?? UInt32.max, to: &bytes)
            bytes += name
            bytes += header.value ?? []
        }
        return bytes
    }

    /// The headers `pack` made; what does not parse (it never should) ends the list there.
    static func unpack(_ bytes: [UInt8]) -> [KafkaHeader] {
        var headers: [KafkaHeader] = []
        var position = 0
        func length() -> UInt32? {
            guard position + 4 <= bytes.count else { return nil }
            defer { position += 4 }
            return bytes[position..<position + 4].reduce(0) { $0 << 8 | UInt32($1) }
        }
        while let nameCount = length().map(Int.init), let valueCount = length() {
            let valueBytes = valueCount == UInt32.max ? 0 : Int(valueCount)
            guard position + nameCount + valueBytes <= bytes.count else { break }
            let name = String(decoding: bytes[position..<position + nameCount], as: UTF8.self)
            position += nameCount
            let value = valueCount == UInt32.max ? nil : Array(bytes[position..<position + valueBytes])
            position += valueBytes
            headers.append(KafkaHeader(name, value))
        }
        return headers
    }

    private static func append(_ value: UInt32, to bytes: inout [UInt8]) {
        bytes += [UInt8(value >> 24), UInt8(value >> 16 & 0xFF), UInt8(value >> 8 & 0xFF), UInt8(value & 0xFF)]
    }
}
