import DecryptdStore
import KafkaClient
import PhoneDecryption

/// One consumed message and what the pipeline has made of it so far.
///
/// A job is read where it lies, in its message's buffer: only the openid (and an appid this
/// worker does not serve) become strings; `encryptedData` and `iv` are decrypted in place. Each
/// string a job owns is an allocation and a reference to count on every copy, and batches move
/// between threads.
struct PendingJob: Sendable {
    let message: KafkaMessage
    /// `nil` when the value was not a job (`outcome` then holds `malformed_job`).
    let openid: String?
    /// The appid the job is for: its own, or the worker's default. `nil` for malformed jobs.
    let appid: String?
    /// What the job asks for; `nil` when the value was not a job (`outcome` then holds
    /// `malformed_job`).
    let payload: Payload?
    /// Set by parsing (failures), by decryption, or by the exchange stage.
    var outcome: JobOutcome?
    /// Held until the job's outcome is durable (its exchange's slot: see ``ExchangeStage``); the
    /// batch it is dealt into carries it to whoever completes the batch.
    var lease: SlotLease?
    /// Where the session keys of this job's user are in its batch's `sessionKeys` (set by
    /// ``WorkBatch/assignKeySlots(_:)`` for the jobs that still need decrypting).
    var keySlot: Int32 = -1
    /// ``WorkBatch/laneHash(_:)`` of the openid (0 without a job): computed once, it picks the
    /// job's lane and finds its user's key slot.
    let openidHash: UInt64

    /// `encryptedData` and `iv` of a job: byte ranges of the message value, or their text when
    /// JSON escapes had to be resolved (a PHP client writes `/` as `\/`).
    enum Ciphertext: Sendable {
        case inValue(encryptedData: Range<Int32>, iv: Range<Int32>)
        case unescaped(encryptedData: String, iv: String)
    }

    /// The two kinds of job (SPEC "Jobs").
    enum Payload: Sendable {
        /// The legacy flow: where its ciphertext and iv are, to decrypt with the user's session key.
        case encrypted(Ciphertext)
        /// WeChat's recommended flow: a one-time code to exchange with WeChat's API.
        case code(String)
    }

    /// What kind of job this is; `nil` when the value was not a job.
    var kind: JobKind? {
        switch payload {
        case .encrypted: .encrypted
        case .code: .code
        case nil: nil
        }
    }

    /// An encrypted job that still needs decrypting.
    var awaitsDecryption: Bool {
        guard case .encrypted = payload, case .none = outcome else { return false }
        return true
    }

    var user: UserKey? {
        guard let openid, let appid else { return nil }
        return UserKey(appid: appid, openid: openid)
    }

    /// Parses a message: a job for one of `appids`, or a failure that needs no decryption.
    init(_ message: KafkaMessage, appids: [String]) {
        self.message = message
        // Parsed where the value lies: no copy of it is made.
        let parsed = message.withValue { value in
            value.map { value in DecryptJob.locate(value).map { Self.fields(of: $0, in: value, appids: appids) } }
        }
        // Field by field, not through tuples: tuple assignments copied the outcome and the job.
        guard case .success(let fields) = parsed else {
            openid = nil
            appid = nil
            payload = nil
            openidHash = 0
            if case .failure(let failure) = parsed {
                outcome = .failure(failure)
            } else {
                outcome = .failure(DecryptFailure(.malformedJob, "message has no value"))
            }
            return
        }
        openid = fields.openid
        appid = fields.appid
        payload = fields.payload
        openidHash = WorkBatch.laneHash(fields.openid)
        if !fields.served {
            outcome = .failure(
                DecryptFailure(.appidMismatch, "job appid \(Self.quoted(appid: fields.appid)) is not one this worker serves"))
        }
    }

    /// A job's appid as a failure detail may show it: as given when it could be one (short,
    /// printable ASCII), else only its size. Details are short and go into dead-letter headers;
    /// the appid is whatever the job said, up to the broker's message size.
    static func quoted(appid: String) -> String {
        let bytes = appid.utf8
        guard bytes.count <= 64, bytes.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else { return "of \(bytes.count) bytes" }
        return appid
    }

    /// The strings a located job needs and where its ciphertext is. A served appid is taken from
    /// `appids` (no copy); a job without one is for the first.
    private static func fields(
        of job: DecryptJob.Located, in value: UnsafeBufferPointer<UInt8>, appids: [String]
    ) -> (openid: String, appid: String, served: Bool, payload: Payload) {
        var appid = appids[0]
        var served = true
        if let token = job.appid {
            let scanner = JSONScanner(value)
            // Byte for byte, like the watermark check and the tables.
            if let index = appids.firstIndex(where: { scanner.token(token, equalsText: $0) }) {
                appid = appids[index]
            } else {
                (appid, served) = (job.string(token, in: value), false)
            }
        }
        let openid = job.string(job.openid, in: value)
        switch job.payload {
        case .code(let code):
            return (openid, appid, served, .code(job.string(code, in: value)))
        case .encrypted(let encryptedData, let iv) where encryptedData.hasEscapes || iv.hasEscapes:
            let text = Ciphertext.unescaped(encryptedData: job.string(encryptedData, in: value), iv: job.string(iv, in: value))
            return (openid, appid, served, .encrypted(text))
        case .encrypted(let encryptedData, let iv):
            let ranges = Ciphertext.inValue(
                encryptedData: Int32(encryptedData.start)..<Int32(encryptedData.end), iv: Int32(iv.start)..<Int32(iv.end))
            return (openid, appid, served, .encrypted(ranges))
        }
    }

    /// Decrypts the job with its user's session keys (newest first) and sets its outcome.
    ///
    /// Mutating, so that a job in a buffer is worked on where it lies: calling a non-mutating
    /// method on `buffer[index]` makes Swift copy the whole job (and retain all it holds) first.
    mutating func decrypt(with decryptor: PhoneDecryptor, sessionKeys: [String]) {
        guard case .encrypted(let ciphertext) = payload, let appid else {
            preconditionFailure("only encrypted jobs are decrypted (see awaitsDecryption)")
        }
        switch ciphertext {
        case .inValue(let encryptedData, let iv):
            outcome = message.withValue { value in
                JobOutcome(
                    decryptor.decrypt(
                        appid: appid, sessionKeys: sessionKeys,
                        iv: UnsafeBufferPointer(rebasing: value![Int(iv.lowerBound)..<Int(iv.upperBound)]),
                        encryptedData: UnsafeBufferPointer(rebasing: value![Int(encryptedData.lowerBound)..<Int(encryptedData.upperBound)])
                    ))
            }
        case .unescaped(let encryptedData, let iv):
            outcome = JobOutcome(decryptor.decrypt(appid: appid, sessionKeys: sessionKeys, iv: iv, encryptedData: encryptedData))
        }
    }
}

/// What became of a job.
enum JobOutcome: Sendable {
    /// Decrypted, or exchanged: the member row to write.
    case success(PhonePayload)
    /// A code job whose code the exchange ledger shows exchanged with success before (a
    /// redelivery): its member row is durable already, and it writes nothing.
    case alreadyStored
    /// The job failed: its failure row and dead letter to write.
    case failure(DecryptFailure)
    /// The job failed for a reason a newer session key can cure: it waits in `parked_jobs` (SPEC
    /// "Waiting for a session key"). `triedIssuedAt`: the newest key it was tried with (µs since
    /// the epoch), `nil` when there was none.
    case parked(DecryptFailure, triedIssuedAt: Int64?)

    init(_ result: Result<PhonePayload, DecryptFailure>) {
        switch result {
        case .success(let payload): self = .success(payload)
        case .failure(let failure): self = .failure(failure)
        }
    }

    var failureValue: DecryptFailure? {
        if case .failure(let failure) = self { return failure }
        return nil
    }
}

/// A code job on its way through the exchange stage, with what its exchange needs unwrapped once.
struct CodeJob: Sendable {
    var job: PendingJob
    /// The code to exchange; empty for a session check.
    let code: String
    let appid: String
    let user: UserKey
    /// Set for an encrypted job about to fail `bad_padding` that asks WeChat's checksession first
    /// (SPEC "Telling stale keys apart"): the newest stored key, as stored, and the failure.
    let check: (sessionKey: String, failure: DecryptFailure)?

    /// The job as a code job that still needs its exchange, or nil.
    init?(_ job: PendingJob) {
        guard case .code(let code) = job.payload, case .none = job.outcome, let user = job.user else { return nil }
        self.job = job
        self.code = code
        appid = user.appid
        self.user = user
        check = nil
    }

    /// An encrypted job that failed `failure` with `newestKey` first among its keys, for a session check.
    init(checking job: PendingJob, user: UserKey, newestKey: String, failure: DecryptFailure) {
        self.job = job
        code = ""
        appid = user.appid
        self.user = user
        check = (newestKey, failure)
    }
}
