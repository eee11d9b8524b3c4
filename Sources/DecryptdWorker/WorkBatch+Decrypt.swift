import Dispatch
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
                    guard jobs[index].awaitsDecryption else { continue }
                    let keySlot = Int(jobs[index].keySlot)
                    jobs[index].decrypt(with: decryptor, sessionKeys: keys.indices.contains(keySlot) ? keys[keySlot] : [])
                }
            }
        }
    }
}

/// A value handed to `concurrentPerform` iterations that each touch a disjoint part of it: that
/// disjointness (iteration `slot` touches jobs slot, slot+width, ...) is why it may be sent.
struct UnsafeSendable<Value>: @unchecked Sendable {
    var value: Value
    init(_ value: Value) { self.value = value }
}

/// One `PhoneDecryptor` per pool slot, created on first use and kept (their OpenSSL contexts and
/// buffers are reused across batches). Slot `i` is only ever used by one iteration at a time, and
/// the pool is grown only by the one stage thread that owns it: `@unchecked Sendable` for that.
final class DecryptorPool: @unchecked Sendable {
    private var decryptors: [PhoneDecryptor] = []

    func slots(_ count: Int) -> DecryptorPool {
        while decryptors.count < count { decryptors.append(PhoneDecryptor()) }
        return self
    }

    func decryptor(_ slot: Int) -> PhoneDecryptor { decryptors[slot] }
}
