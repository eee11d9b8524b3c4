import DecryptdStore
import Dispatch
import Foundation
import KafkaClient
import PhoneDecryption

/// One consumed message and what the pipeline has made of it so far.
struct PendingJob: Sendable {
    let message: KafkaMessage
    /// `nil` when the value was not a job (`outcome` then holds `malformed_job`).
    let job: DecryptJob?
    /// The appid the job is for: its own, or the worker's default. `nil` for malformed jobs.
    let appid: String?
    /// Set by parsing (failures) or by decryption.
    var outcome: Result<PhonePayload, DecryptFailure>?

    var user: UserKey? {
        guard let job, let appid else { return nil }
        return UserKey(appid: appid, openid: job.openid)
    }

    /// Parses a message: a job for one of `appids`, or a failure that needs no decryption.
    init(_ message: KafkaMessage, appids: [String]) {
        self.message = message
        guard let value = message.value else {
            (job, appid, outcome) = (nil, nil, .failure(DecryptFailure(.malformedJob, "message has no value")))
            return
        }
        switch DecryptJob.parse(value) {
        case .failure(let failure):
            (job, appid, outcome) = (nil, nil, .failure(failure))
        case .success(let parsed):
            let resolved = parsed.appid ?? appids[0]
            job = parsed
            appid = resolved
            outcome = appids.contains(resolved)
                ? nil
                : .failure(DecryptFailure(.appidMismatch, "job appid \(resolved) is not one this worker serves"))
        }
    }
}

/// A batch on its way through lookup → decrypt → persist.
struct WorkBatch: Sendable {
    var jobs: [PendingJob]
    /// Session keys for the batch's users, newest first (filled by the lookup stage).
    var sessionKeys: [UserKey: [String]] = [:]
    let fetchedAt: DispatchTime
    let fetchedDate = Date()

    init(_ messages: [KafkaMessage], appids: [String]) {
        jobs = messages.map { PendingJob($0, appids: appids) }
        fetchedAt = .now()
    }

    /// Users whose jobs still need decrypting.
    var usersToLookUp: [UserKey] {
        jobs.compactMap { $0.outcome == nil ? $0.user : nil }
    }
}
