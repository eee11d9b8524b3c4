import PhoneDecryption

/// What a batch's jobs came to, for the metrics and the progress line.
struct OutcomeTally {
    /// Jobs by outcome name: "ok", "parked" or a failure code; outcomes with no job are absent.
    private(set) var counts: [String: Int] = [:]
    /// Payloads that only an older session key decrypted.
    private(set) var fallbacks = 0
    /// Payloads per repair kind, in the order of `Base64Repairs.named`.
    private(set) var repairs = [Int](repeating: 0, count: Base64Repairs.named.count)
    /// Jobs by kind (jobs too malformed to tell are in neither).
    private(set) var kinds: [JobKind: Int] = [:]

    /// Every job must have its outcome.
    init(_ jobs: [PendingJob]) {
        // Counted by position (0: ok, then the failure reasons in declaration order) and named once
        // per batch: a dictionary keyed by name would hash a string per job.
        let reasons = FailureReason.allCases
        var tally = [Int](repeating: 0, count: reasons.count + 1)
        var parked = 0
        var encrypted = 0
        var code = 0
        // Through the buffer, reading one field: `for job in jobs` would copy (retain and release)
        // every string and array of every job.
        jobs.withUnsafeBufferPointer { jobs in
            for index in jobs.indices {
                switch jobs[index].payload {
                case .code: code += 1
                case .encrypted: encrypted += 1
                case nil: break
                }
                switch jobs[index].outcome! {
                case .success(let payload):
                    tally[0] += 1
                    if payload.keyIndex > 0 { fallbacks += 1 }
                    if !payload.repairs.isEmpty {
                        for (kind, (repair, _)) in Base64Repairs.named.enumerated() where payload.repairs.contains(repair) {
                            repairs[kind] += 1
                        }
                    }
                case .alreadyStored:
                    tally[0] += 1
                case .failure(let failure):
                    tally[reasons.firstIndex(of: failure.reason)! + 1] += 1
                case .parked:
                    parked += 1
                }
            }
        }
        if encrypted > 0 { kinds[.encrypted] = encrypted }
        if code > 0 { kinds[.code] = code }
        for (position, count) in tally.enumerated() where count > 0 {
            counts[position == 0 ? "ok" : reasons[position - 1].rawValue] = count
        }
        if parked > 0 { counts["parked"] = parked }
    }
}
