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
    /// already stored (a code found in the exchange ledger) writes no member row again.
    init(fresh jobs: [PendingJob], deadLetters context: @autoclosure () -> DeadLetterContext) {
        rows.members.reserveCapacity(jobs.count)
        var shared: DeadLetterContext?
        // Through the buffer, reading only the fields needed: copying whole jobs out would retain
        // every string they hold.
        jobs.withUnsafeBufferPointer { jobs in
            for index in jobs.indices {
                switch jobs[index].outcome! {
                case .success(let payload):
                    rows.members.append(MemberRecord(user: jobs[index].user!, payload: payload))
                case .alreadyStored:
                    continue
                case .failure(let failure):
                    let message = jobs[index].message
                    if shared == nil { shared = context() }  // formatted once, if a job failed
                    let source = DeadLetter.Source(
                        topic: message.topic, partition: message.partition, offset: message.offset, timestamp: message.timestamp)
                    addFailure(of: jobs[index], failure, origin: Origin(source: source, attempts: 1), context: shared!)
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
