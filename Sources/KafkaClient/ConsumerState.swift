import Foundation

/// Everything a ``KafkaConsumer`` knows about its work, in one value that the consumer keeps
/// under one lock: which offsets are out and done (``OffsetTracker``), what is stored for commit
/// and known committed, back-pressure, closing, and how much a rebalance will hand out again.
/// Its methods decide; they return what the consumer must then do with librdkafka, so that the
/// decisions are tested without a broker (as swift-kafka-client's `KafkaConsumer.StateMachine`).
struct ConsumerState {
    private(set) var tracker = OffsetTracker()
    /// Per assigned partition: the offset stored for commit, and the offset known committed (the
    /// broker's, from commit callbacks; or where this assignment started). Their difference is
    /// finished work that a failed commit would hand to the next owner again.
    private(set) var stored: [TopicPartition: Int64] = [:]
    private(set) var committed: [TopicPartition: Int64] = [:]
    /// Fetching is paused by back-pressure.
    private(set) var isPaused = false
    /// When the in-flight limit was reached, while it holds and fetching is not paused.
    private var saturatedSince: Date?
    /// ``close()`` has begun: its revoke commits what is finished without waiting for the rest.
    private(set) var isClosing = false
    /// Messages the next owners of revoked or lost partitions get again (see
    /// ``KafkaConsumer/redeliverableOnRevoke``).
    private(set) var redeliverable = 0
    /// Waits for in-flight work end at once (the caller abandons its work).
    private(set) var waitsInterrupted = false

    // MARK: - Delivering and completing

    /// Whether a fetched message is handed out: not for a partition being revoked (its new owner
    /// gets it). The first message of an assignment is where its committed position starts.
    mutating func deliver(_ partition: TopicPartition, offset: Int64, timestamp: Int64) -> Bool {
        switch tracker.deliver(partition, offset: offset, timestamp: timestamp) {
        case .refused: return false
        case .first:
            if committed[partition] == nil { committed[partition] = offset }
            return true
        case .delivered: return true
        }
    }

    /// Marks runs of offsets finished. Returns the offsets to store for commit now (the next
    /// offset after each partition's contiguous finished run, where it moved).
    mutating func complete(_ runs: [(partition: TopicPartition, offsets: [Int64])]) -> [TopicPartition: Int64] {
        var store: [TopicPartition: Int64] = [:]
        for run in runs {
            if let next = tracker.completed(run.partition, offsets: run.offsets) {
                store[run.partition] = next
                stored[run.partition] = next
            }
        }
        return store
    }

    mutating func reachedEnd(_ partition: TopicPartition) { tracker.reachedEnd(partition) }

    // MARK: - Committing

    /// A synchronous commit of everything stored succeeded.
    mutating func commitSucceeded() {
        for (partition, offset) in stored { committed[partition] = offset }
    }

    /// The broker confirmed these offsets (a commit callback): committed positions only move on.
    mutating func confirmed(_ partition: TopicPartition, offset: Int64) {
        guard offset >= 0, let known = committed[partition] else { return }
        committed[partition] = max(known, offset)
    }

    // MARK: - Back-pressure

    enum PollAction: Equatable {
        /// Call into librdkafka.
        case poll
        /// At the limit, not for long enough to pause: hand out nothing this time.
        case holdBack
        /// The limit has held for `pauseAfter`: pause the partitions, then poll (to serve events).
        case pauseThenPoll
        /// Paused and drained to half the limit: resume the partitions, then poll.
        case resumeThenPoll
    }

    /// What `poll` does now, with `limit` unfinished messages at most and a pause after the limit
    /// has held for `pauseAfter` seconds. (The consumer first waits, bounded, for room.)
    mutating func pollAction(limit: Int, pauseAfter: TimeInterval, now: Date) -> PollAction {
        if isPaused {
            guard tracker.inFlight <= limit / 2 else { return .poll }
            isPaused = false
            return .resumeThenPoll
        }
        guard tracker.inFlight >= limit else {
            saturatedSince = nil
            return .poll
        }
        let since = saturatedSince ?? now
        saturatedSince = since
        guard now.timeIntervalSince(since) >= pauseAfter else { return .holdBack }
        saturatedSince = nil
        isPaused = true
        return .pauseThenPoll
    }

    // MARK: - Rebalancing and closing

    mutating func assign(_ partitions: [TopicPartition]) { tracker.assign(partitions) }

    /// A revoke begins: no more of these partitions' messages are handed out. Returns whether to
    /// wait (bounded) for their in-flight work: not when they are lost, nor when closing.
    mutating func beginRevoke(_ partitions: [TopicPartition], lost: Bool) -> Bool {
        tracker.beginRevoke(partitions)
        return !lost && !isClosing
    }

    /// The wait is over: the partitions leave the tracker. Returns their work still unfinished.
    mutating func revoke(_ partitions: [TopicPartition]) -> Int {
        let unfinished = tracker.inFlight(of: partitions)
        tracker.revoke(partitions)
        return unfinished
    }

    /// After the commit on revoke (or without it, when it was refused or the partitions were
    /// lost): forgets their offsets, and counts what their next owners get again.
    mutating func forget(_ partitions: [TopicPartition], unfinished: Int, committedOnRevoke: Bool) {
        var again = unfinished
        for partition in partitions {
            if !committedOnRevoke, let done = stored[partition], let base = committed[partition] { again += Int(max(0, done - base)) }
            stored[partition] = nil
            committed[partition] = nil
        }
        redeliverable += again
    }

    /// A rebalance error: the whole assignment is gone.
    mutating func dropAssignment() {
        tracker.revoke(tracker.assigned)
        stored = [:]
        committed = [:]
    }

    mutating func beginClose() { isClosing = true }

    mutating func interruptWaits() { waitsInterrupted = true }
}
