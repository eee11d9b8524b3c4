import ArgumentParser
import Dispatch
import Foundation
import Locks
import PhoneDecryption
import SyntheticLoad

/// `decryptd-bench decrypt`: decrypts per second of realistic phone payloads, single thread and with
/// a Dispatch pool over all cores, against the OpenSSL floor measured in the same run.
struct DecryptBenchmark: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "decrypt",
        abstract: "Decrypts per second: OpenSSL floor, core on one thread, core on all cores."
    )

    @Option(help: "Seconds to measure each figure in each round.")
    var seconds: Double = 1

    @Option(help: "Interleaved rounds; each figure reports its best round (the least disturbed by other load on the machine).")
    var rounds = 3

    @Option(help: "Threads for the all-cores figure (default: active cores).")
    var threads: Int = ProcessInfo.processInfo.activeProcessorCount

    @Option(help: "Distinct payloads to cycle through.")
    var payloads: Int = 4096

    @Option(help: "Measure only this figure (floor, single, all, or parse: job values parsed per second on one thread); for profiling.")
    var only: String?

    @Flag(help: "Print one JSON line instead of a table.")
    var json = false

    static let appid = "wx6ede2086ee29a89f"

    func validate() throws {
        guard seconds > 0, threads > 0, payloads > 0, rounds > 0 else {
            throw ValidationError("--seconds, --threads, --payloads and --rounds must be positive")
        }
        if let only, !["floor", "single", "all", "parse"].contains(only) {
            throw ValidationError("--only takes floor, single, all or parse, not '\(only)'")
        }
    }

    func run() throws {
        var synthetic = SyntheticPayloads(appid: Self.appid, generator: SystemRandomNumberGenerator())
        let inputs = (0..<payloads).map { _ in synthetic.make(.none) }

        if let only {
            let make: @Sendable (Int) -> (Int) -> Bool =
                switch only {
                case "floor": floorWorker(inputs)
                case "parse": parseWorker(inputs)
                default: coreWorker(inputs)
                }
            print(Int(measure(threads: only == "all" ? threads : 1, make)))
            return
        }
        var floor = 0.0
        var single = 0.0
        var all = 0.0
        for _ in 0..<rounds {
            floor = max(floor, measure(threads: 1, floorWorker(inputs)))
            single = max(single, measure(threads: 1, coreWorker(inputs)))
            all = max(all, measure(threads: threads, coreWorker(inputs)))
        }

        if json {
            var writer = JSONWriter()
            writer.beginObject()
            writer.field("single_thread_per_s", Int(single))
            writer.field("all_cores_per_s", Int(all))
            writer.field("threads", threads)
            writer.field("openssl_floor_single_thread_per_s", Int(floor))
            writer.field("single_thread_vs_floor", (single / floor * 100).rounded() / 100)
            writer.endObject()
            print(writer.text)
        } else {
            let rows: [(String, Double, String)] = [
                ("OpenSSL floor, 1 thread", floor, "1.00 (reference)"),
                ("decryptd core, 1 thread", single, "\(twoDecimals(single / floor)) of floor"),
                ("decryptd core, \(threads) threads", all, "\(twoDecimals(all / single))x one thread"),
            ]
            print("decrypts per second, \(payloads) distinct phone payloads, best of \(rounds) interleaved rounds of \(seconds) s")
            for (name, value, note) in rows {
                print(name.padding(toLength: 28, withPad: " ", startingAt: 0) + String(Int(value)).leftPad(12) + "   " + note)
            }
        }
    }

    private func floorWorker(_ inputs: [SyntheticPayloads<SystemRandomNumberGenerator>.Payload]) -> @Sendable (Int) -> (Int) -> Bool {
        { _ in
            let floor = OpenSSLFloor()
            let appid = UnsafeBufferPointer(copying: Array("\"appid\":\"\(Self.appid)\"".utf8))
            let prepared = inputs.map {
                OpenSSLFloor.Input(
                    key: Array($0.sessionKeys[0].utf8), iv: Array($0.iv.utf8), encryptedData: Array($0.encryptedData.utf8),
                    padding: $0.encryptedData.reversed().prefix { $0 == "=" }.count
                )
            }
            return { index in floor.run(prepared[index], appid: appid) }
        }
    }

    private func coreWorker(_ inputs: [SyntheticPayloads<SystemRandomNumberGenerator>.Payload]) -> @Sendable (Int) -> (Int) -> Bool {
        { _ in
            let decryptor = PhoneDecryptor()
            return { index in
                let input = inputs[index]
                if case .success = decryptor.decrypt(
                    appid: Self.appid, sessionKeys: input.sessionKeys, iv: input.iv, encryptedData: input.encryptedData)
                {
                    return true
                }
                return false
            }
        }
    }

    /// Job values as `decryptd loadgen` writes them, parsed the way the worker parses them.
    private func parseWorker(_ inputs: [SyntheticPayloads<SystemRandomNumberGenerator>.Payload]) -> @Sendable (Int) -> (Int) -> Bool {
        { _ in
            let values = inputs.enumerated().map { index, payload in
                var writer = JSONWriter()
                writer.beginObject()
                writer.field("openid", "oBench" + String(index).leftPad(22).replacingOccurrences(of: " ", with: "x"))
                writer.field("encryptedData", payload.encryptedData)
                writer.field("iv", payload.iv)
                writer.field("appid", Self.appid)
                writer.endObject()
                return UnsafeBufferPointer(copying: Array(writer.text.utf8))
            }
            return { index in
                if case .success = DecryptJob.parse(values[index]) { return true }
                return false
            }
        }
    }

    /// Runs `threads` workers, each with its own state from `make`, for `seconds`; returns total/s.
    /// Every worker must succeed on every payload, or the figure would measure a failure path.
    private func measure(threads: Int, _ make: @escaping @Sendable (Int) -> (Int) -> Bool) -> Double {
        let counts = Counts(threads)
        let payloadCount = payloads
        let duration = seconds
        let start = DispatchTime.now()
        DispatchQueue.concurrentPerform(iterations: threads) { slot in
            let work = make(slot)
            let deadline = DispatchTime.now().uptimeNanoseconds + UInt64(duration * 1e9)
            var done = 0
            var index = slot * 997 % payloadCount
            while true {
                for _ in 0..<256 {
                    precondition(work(index), "benchmark payload failed to decrypt")
                    index = index + 1 == payloadCount ? 0 : index + 1
                }
                done += 256
                if DispatchTime.now().uptimeNanoseconds >= deadline { break }
            }
            counts.set(slot, done)
        }
        let elapsed = Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9
        return Double(counts.total) / elapsed
    }
}

/// Per-worker totals, written once per worker under a lock.
extension UnsafeBufferPointer where Element == UInt8 {
    /// A copy that lives for the rest of the process (benchmark inputs only).
    init(copying bytes: [UInt8]) {
        let copy = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: bytes.count)
        _ = copy.initialize(from: bytes)
        self.init(copy)
    }
}

private final class Counts: Sendable {
    private let values: Mutex<[Int]>
    init(_ count: Int) { values = Mutex(Array(repeating: 0, count: count)) }
    func set(_ slot: Int, _ value: Int) { values.withLock { $0[slot] = value } }
    var total: Int { values.withLock { $0.reduce(0, +) } }
}

private func twoDecimals(_ value: Double) -> String {
    let hundredths = Int((value * 100).rounded())
    return "\(hundredths / 100).\(String(hundredths % 100).leftPad(2).replacingOccurrences(of: " ", with: "0"))"
}

extension String {
    func leftPad(_ width: Int) -> String { count >= width ? self : String(repeating: " ", count: width - count) + self }
}
