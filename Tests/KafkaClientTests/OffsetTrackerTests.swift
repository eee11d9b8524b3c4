import Testing

@testable import KafkaClient

@Suite("Offset tracker")
struct OffsetTrackerTests {
    let p0 = TopicPartition("t", 0)

    @Test("out-of-order completion stores only the contiguous low watermark + 1")
    func contiguous() {
        var tracker = OffsetTracker()
        tracker.assign([p0])
        #expect(tracker.deliver(p0, offset: 10) == .first)
        for offset in [11, 12, 15, 16] as [Int64] { #expect(tracker.deliver(p0, offset: offset) == .delivered) }
        #expect(tracker.inFlight == 5)
        #expect(tracker.completed(p0, offset: 12) == nil)
        #expect(tracker.completed(p0, offset: 11) == nil)
        #expect(tracker.completed(p0, offset: 10) == 13)
        #expect(tracker.completed(p0, offset: 16) == nil)
        #expect(tracker.completed(p0, offset: 15) == 17)  // gaps in offsets (compaction, markers) are fine
        #expect(tracker.inFlight == 0)
        #expect(tracker.completed(p0, offset: 15) == nil)  // repeated completion is ignored
    }

    @Test("the oldest unfinished message's creation time: the one that holds the partition's commit back")
    func oldestUnfinished() {
        var tracker = OffsetTracker()
        tracker.assign([p0])
        #expect(tracker.partitions[p0]?.oldestUnfinished == nil)
        _ = tracker.deliver(p0, offset: 0, timestamp: 1000)
        _ = tracker.deliver(p0, offset: 1, timestamp: 2000)
        _ = tracker.deliver(p0, offset: 2, timestamp: 3000)
        #expect(tracker.partitions[p0]?.oldestUnfinished == 1000)
        _ = tracker.completed(p0, offset: 1)
        #expect(tracker.partitions[p0]?.oldestUnfinished == 1000, "finished out of order: offset 0 still holds it back")
        _ = tracker.completed(p0, offset: 0)
        #expect(tracker.partitions[p0]?.oldestUnfinished == 3000)
        _ = tracker.completed(p0, offset: 2)
        #expect(tracker.partitions[p0]?.oldestUnfinished == nil)
        _ = tracker.deliver(p0, offset: 3)
        #expect(tracker.partitions[p0]?.oldestUnfinished == nil, "a message without a timestamp says nothing")
    }

    @Test("completing a run of offsets at once gives the highest new committable offset")
    func runs() {
        var tracker = OffsetTracker()
        tracker.assign([p0])
        for offset in 0..<10 as Range<Int64> { _ = tracker.deliver(p0, offset: offset) }
        #expect(tracker.completed(p0, offsets: [5, 3, 4]) == nil)
        #expect(tracker.completed(p0, offsets: [1, 0, 9]) == 2)
        #expect(tracker.completed(p0, offsets: [2, 2, 6, 7, 8]) == 10)  // a repeat within a run is ignored
        #expect(tracker.inFlight == 0)
        #expect(tracker.completed(TopicPartition("t", 9), offsets: [0]) == nil)
    }

    @Test("revoked partitions forget their work; completions after revoke are ignored")
    func revoke() {
        var tracker = OffsetTracker()
        let p1 = TopicPartition("t", 1)
        tracker.assign([p0, p1])
        #expect(tracker.deliver(TopicPartition("t", 2), offset: 0) == .refused)  // not assigned
        #expect(tracker.deliver(p0, offset: 0) == .first)
        #expect(tracker.deliver(p1, offset: 0) == .first)
        tracker.beginRevoke([p0])
        #expect(tracker.deliver(p0, offset: 1) == .refused)
        #expect(tracker.deliver(p1, offset: 1) == .delivered)
        #expect(tracker.inFlight(of: [p0]) == 1)
        #expect(tracker.completed(p0, offset: 0) == 1)  // still stored while revoking (drain)
        tracker.revoke([p0])
        #expect(tracker.inFlight == 2)
        #expect(tracker.completed(p0, offset: 1) == nil)
        #expect(tracker.assigned == [p1])
        tracker.assign([p0])
        #expect(tracker.deliver(p0, offset: 1) == .first)  // a new assignment starts afresh
    }

    @Test("drained only when every partition is at its end and nothing is in flight")
    func drained() {
        var tracker = OffsetTracker()
        #expect(!tracker.isDrained)
        let p1 = TopicPartition("t", 1)
        tracker.assign([p0, p1])
        tracker.reachedEnd(p0)
        #expect(!tracker.isDrained)
        tracker.reachedEnd(p1)
        #expect(tracker.isDrained)
        _ = tracker.deliver(p1, offset: 3)
        #expect(!tracker.isDrained)
        _ = tracker.completed(p1, offset: 3)
        #expect(!tracker.isDrained)  // a message arrived after the end: wait for the next end
        tracker.reachedEnd(p1)
        #expect(tracker.isDrained)
    }

    @Test("200,000 completions in random order end at the right offset, in linear time")
    func manyRandom() {
        var tracker = OffsetTracker()
        tracker.assign([p0])
        let count: Int64 = 200_000
        for offset in 0..<count { _ = tracker.deliver(p0, offset: offset) }
        var last: Int64?
        for offset in (0..<count).shuffled() {
            if let next = tracker.completed(p0, offset: offset) {
                #expect(last.map { next > $0 } ?? true)
                last = next
            }
        }
        #expect(last == count)
        #expect(tracker.inFlight == 0)
    }
}
