import DecryptdStore
import DecryptdTestSupport
import Foundation
import KafkaClient
import PhoneDecryption
import Testing

@testable import DecryptdWorker
@testable import SyntheticLoad

@Suite("Rendezvous")
struct RendezvousTests {
    @Test("rendezvous: only the last of the parts gets the payload, also when they race")
    func rendezvous() {
        let single = Rendezvous(parts: 2, payload: "batch")
        #expect(single.arrive() == nil)
        #expect(single.arrive() == "batch")

        let rounds = 2000
        let points = (0..<rounds).map { Rendezvous(parts: 2, payload: $0) }
        let winners = Collected()
        DispatchQueue.concurrentPerform(iterations: 2) { _ in
            for point in points { if let payload = point.arrive() { winners.add(payload) } }
        }
        #expect(winners.sorted == Array(0..<rounds))
    }
}

private final class Collected: @unchecked Sendable {
    private let lock = NSLock()
    private var values: [Int] = []
    func add(_ value: Int) {
        lock.lock()
        values.append(value)
        lock.unlock()
    }
    var sorted: [Int] {
        lock.lock()
        defer { lock.unlock() }
        return values.sorted()
    }
}
