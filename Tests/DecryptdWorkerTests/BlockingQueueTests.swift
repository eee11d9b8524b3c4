import DecryptdStore
import DecryptdTestSupport
import Foundation
import KafkaClient
import PhoneDecryption
import Testing

@testable import DecryptdWorker
@testable import SyntheticLoad

@Suite("Blocking queue")
struct BlockingQueueTests {
    @Test("queue: putFirst jumps the line, takeAll empties it, a closed queue ends")
    func queue() {
        let queue = BlockingQueue<Int>()
        queue.put(1)
        queue.put(2)
        queue.putFirst(0)
        #expect(queue.take() == 0)
        queue.put(3)
        #expect(queue.takeAll() == [1, 2, 3])
        queue.put(4)
        queue.close()
        #expect(queue.take() == 4)
        #expect(queue.take() == nil)
        #expect(queue.takeAll() == nil)
    }
}
