import Foundation
import Testing

@testable import KafkaClient

@Suite("Consumer state")
struct ConsumerStateTests {
    let p0 = TopicPartition("t", 0)
    let p1 = TopicPartition("t", 1)

    @Test("delivering and completing: offsets to store only where the finished run moved; a revoking partition's messages are held back")
    func deliverAndComplete() {
        var state = ConsumerState()
        state.assign([p0, p1])
        for offset in 10..<14 as Range<Int64> {
            let r1 = state.deliver(p0, offset: offset, timestamp: -1)
            #expect(r1)
        }
        let r2 = state.deliver(p1, offset: 0, timestamp: -1)
        #expect(r2)
        #expect(state.committed[p0] == 10, "the first message of an assignment is where its committed position starts")
        let r3 = state.complete([(p0, [11, 12])])
        #expect(r3.isEmpty, "10 is still out")
        let r4 = state.complete([(p0, [10]), (p1, [0])])
        #expect(r4 == [p0: 13, p1: 1])
        #expect(state.stored == [p0: 13, p1: 1])
        #expect(state.tracker.inFlight == 1)

        let r5 = state.beginRevoke([p1], lost: false)
        #expect(r5)
        let r6 = state.deliver(p1, offset: 1, timestamp: -1)
        #expect(!r6, "its new owner gets it")
        let r7 = state.deliver(p0, offset: 14, timestamp: -1)
        #expect(r7)
    }

    @Test("commits: a successful commit makes the stored offsets committed; confirmations only move a position on")
    func commits() {
        var state = ConsumerState()
        state.assign([p0])
        _ = state.deliver(p0, offset: 5, timestamp: -1)
        _ = state.complete([(p0, [5])])
        state.commitSucceeded()
        #expect(state.committed[p0] == 6)
        state.confirmed(p0, offset: 4)
        #expect(state.committed[p0] == 6, "an older confirmation does not move it back")
        state.confirmed(p0, offset: 9)
        #expect(state.committed[p0] == 9)
        state.confirmed(p1, offset: 3)
        #expect(state.committed[p1] == nil, "not assigned: not tracked")
    }

    @Test("back-pressure: hold back at the limit, pause once it has held for pauseAfter, resume at half")
    func backPressure() {
        var state = ConsumerState()
        state.assign([p0])
        let start = Date(timeIntervalSince1970: 1000)
        let r8 = state.pollAction(limit: 4, pauseAfter: 2, now: start)
        #expect(r8 == .poll)
        for offset in 0..<4 as Range<Int64> { _ = state.deliver(p0, offset: offset, timestamp: -1) }
        let r9 = state.pollAction(limit: 4, pauseAfter: 2, now: start)
        #expect(r9 == .holdBack)
        let r10 = state.pollAction(limit: 4, pauseAfter: 2, now: start + 1.9)
        #expect(r10 == .holdBack)
        let r11 = state.pollAction(limit: 4, pauseAfter: 2, now: start + 2)
        #expect(r11 == .pauseThenPoll)
        #expect(state.isPaused)
        let r12 = state.pollAction(limit: 4, pauseAfter: 2, now: start + 3)
        #expect(r12 == .poll, "paused: poll serves events")
        _ = state.complete([(p0, [0])])
        let r13 = state.pollAction(limit: 4, pauseAfter: 2, now: start + 4)
        #expect(r13 == .poll, "3 unfinished: above half the limit")
        _ = state.complete([(p0, [1])])
        let r14 = state.pollAction(limit: 4, pauseAfter: 2, now: start + 5)
        #expect(r14 == .resumeThenPoll)
        #expect(!state.isPaused)
    }

    @Test("back-pressure: room again before pauseAfter starts the clock over")
    func briefSaturation() {
        var state = ConsumerState()
        state.assign([p0])
        let start = Date(timeIntervalSince1970: 1000)
        for offset in 0..<2 as Range<Int64> { _ = state.deliver(p0, offset: offset, timestamp: -1) }
        let r15 = state.pollAction(limit: 2, pauseAfter: 2, now: start)
        #expect(r15 == .holdBack)
        _ = state.complete([(p0, [0])])
        let r16 = state.pollAction(limit: 2, pauseAfter: 2, now: start + 1.5)
        #expect(r16 == .poll)
        _ = state.deliver(p0, offset: 2, timestamp: -1)
        let r17 = state.pollAction(limit: 2, pauseAfter: 2, now: start + 2.5)
        #expect(r17 == .holdBack, "the clock started again at 2.5")
        let r18 = state.pollAction(limit: 2, pauseAfter: 2, now: start + 4.4)
        #expect(r18 == .holdBack)
        let r19 = state.pollAction(limit: 2, pauseAfter: 2, now: start + 4.5)
        #expect(r19 == .pauseThenPoll)
    }

    @Test("revoke: wait unless lost or closing; what is redelivered is the unfinished work, plus the finished work a refused commit leaves")
    func revoke() {
        var state = ConsumerState()
        state.assign([p0, p1])
        for offset in 100..<110 as Range<Int64> { _ = state.deliver(p0, offset: offset, timestamp: -1) }
        _ = state.complete([(p0, Array(100..<107))])
        let r20 = state.beginRevoke([p0], lost: false)
        #expect(r20, "a plain revoke waits for in-flight work")
        let unfinished = state.revoke([p0])
        #expect(unfinished == 3)
        state.forget([p0], unfinished: unfinished, committedOnRevoke: false)
        #expect(state.redeliverable == 3 + 7, "the commit was refused: the 7 finished ones come again too")
        #expect(state.stored[p0] == nil && state.committed[p0] == nil)
        #expect(state.tracker.assigned == [p1])

        _ = state.deliver(p1, offset: 0, timestamp: -1)
        _ = state.complete([(p1, [0])])
        let r21 = state.beginRevoke([p1], lost: true)
        #expect(!r21, "a lost partition is not waited for")
        state.forget([p1], unfinished: state.revoke([p1]), committedOnRevoke: true)
        #expect(state.redeliverable == 10, "committed on revoke: nothing more")

        var closing = ConsumerState()
        closing.assign([p0])
        closing.beginClose()
        let r22 = closing.beginRevoke([p0], lost: false)
        #expect(!r22, "close's revoke does not wait")
    }

    @Test("a rebalance error drops the whole assignment and its offsets")
    func dropAssignment() {
        var state = ConsumerState()
        state.assign([p0, p1])
        _ = state.deliver(p0, offset: 1, timestamp: -1)
        _ = state.complete([(p0, [1])])
        state.dropAssignment()
        #expect(state.tracker.assigned.isEmpty && state.stored.isEmpty && state.committed.isEmpty)
        let r23 = state.deliver(p0, offset: 2, timestamp: -1)
        #expect(!r23)
    }
}
