import Dispatch
import KafkaClient
import Logging
import PhoneDecryption

extension WorkBatch {
    /// Decrypts every job that still has no outcome, over a Dispatch pool of up to `concurrency`
    /// slots (fewer for small batches). Iteration `slot` touches only jobs slot, slot+width, ...
    /// and decryptor `slot`, so no two threads share a job or an OpenSSL context.
    mutating func decrypt(using decryptors: DecryptorPool, concurrency: Int) {
        let width = max(1, min(concurrency, jobs.count / 64 + 1))
        let pool = decryptors.slots(width)
        let keys = sessionKeys
        jobs.withUnsafeMutableBufferPointer { buffer in
            let shared = UnsafeSendable(buffer)
            DispatchQueue.concurrentPerform(iterations: width) { slot in
                let decryptor = pool.decryptor(slot)
                // Through the buffer's addressors, in place: copying a whole PendingJob out would
                // retain every string and array it holds, twice per job.
                let jobs = shared.value
                for index in stride(from: slot, to: jobs.count, by: width) {
                    guard case .none = jobs[index].outcome, jobs[index].ciphertext != nil else { continue }
                    let keySlot = Int(jobs[index].keySlot)
                    jobs[index].decrypt(with: decryptor, sessionKeys: keys.indices.contains(keySlot) ? keys[keySlot] : [])
                }
            }
        }
    }
}

/// A value handed to `concurrentPerform` iterations that each touch a disjoint part of it.
struct UnsafeSendable<Value>: @unchecked Sendable {
    var value: Value
    init(_ value: Value) { self.value = value }
}

/// One `PhoneDecryptor` per pool slot, created on first use and kept (their OpenSSL contexts and
/// buffers are reused across batches). Slot `i` is only ever used by one iteration at a time, and
/// the pool is grown only by the one stage thread that owns it.
final class DecryptorPool: @unchecked Sendable {
    private var decryptors: [PhoneDecryptor] = []

    func slots(_ count: Int) -> DecryptorPool {
        while decryptors.count < count { decryptors.append(PhoneDecryptor()) }
        return self
    }

    func decryptor(_ slot: Int) -> PhoneDecryptor { decryptors[slot] }
}

extension KafkaProducer {
    /// Produces dead letters and waits for every acknowledgement; retries only the records that
    /// failed transiently (the acknowledged ones are not sent twice). A record refused as too large
    /// is sent again at once without its value (then key, then original headers: see
    /// ``DeadLetter/shrunk(_:)``). Any other permanent rejection is thrown.
    func sendAll(
        _ records: [KafkaRecord], backoff: Backoff, logger: Logger, shouldStop: () -> Bool, onRetry: () -> Void
    ) throws {
        var pending = records
        try backoff.run("dead-letter produce", logger: logger, isTransient: { ($0 as? KafkaError)?.isRetriable ?? false },
                        shouldStop: shouldStop, onRetry: onRetry) {
            var firstError: KafkaError?
            while !pending.isEmpty {
                let results = send(pending)
                var failed: [KafkaRecord] = []
                var shrunk = false
                firstError = nil
                for (record, result) in zip(pending, results) {
                    guard case .failure(let error) = result else { continue }
                    if error.isTooLarge, let smaller = DeadLetter.shrunk(record) {
                        logger.warning("dead letter too large for its topic: sending it without part of the original", metadata: [
                            "omitted": "\(DeadLetter.header(DeadLetter.omitted, in: smaller.headers) ?? "")",
                            "source": "\(DeadLetter.header(DeadLetter.sourceTopic, in: record.headers) ?? "")/\(DeadLetter.header(DeadLetter.sourcePartition, in: record.headers) ?? "")@\(DeadLetter.header(DeadLetter.sourceOffset, in: record.headers) ?? "")",
                        ])
                        failed.append(smaller)
                        shrunk = true
                    } else {
                        failed.append(record)
                        if firstError == nil || !error.isRetriable { firstError = error }
                    }
                }
                pending = failed
                if !shrunk { break }
            }
            if let firstError { throw firstError }
        }
    }
}
