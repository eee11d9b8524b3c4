/// Which consumed offsets are finished, per partition, so that only work that is done is committed.
///
/// Work finishes out of order (a concurrent pool); the committable position of a partition is the
/// lowest offset still unfinished, i.e. one past the contiguous run of finished offsets from the
/// oldest delivered message. Not thread-safe: ``KafkaConsumer`` keeps it behind its lock.
struct OffsetTracker {
    struct Partition {
        /// Offsets handed out, in increasing order; `done[i]` says whether `offsets[i]` finished.
        var offsets: [Int64] = []
        var done: [Bool] = []
        /// Creation time of each offset's message, ms since the epoch (-1: unknown).
        var timestamps: [Int64] = []
        /// Index of the oldest unfinished entry.
        var head = 0
        /// The broker reported end of partition and nothing was delivered since.
        var atEnd = false
        /// Being revoked: deliver nothing more, but let in-flight work finish and store.
        var revoking = false
        /// Something was delivered in this assignment.
        var started = false

        var inFlight: Int { done[head...].lazy.filter { !$0 }.count }

        /// When the oldest unfinished message was created (ms), if one is unfinished and it says.
        var oldestUnfinished: Int64? {
            guard head < offsets.count, timestamps[head] >= 0 else { return nil }
            return timestamps[head]
        }
    }

    private(set) var partitions: [TopicPartition: Partition] = [:]
    /// Messages delivered and not yet finished, over all partitions.
    private(set) var inFlight = 0

    var assigned: [TopicPartition] { partitions.keys.sorted() }

    mutating func assign(_ added: [TopicPartition]) {
        for partition in added where partitions[partition] == nil {
            partitions[partition] = Partition()
        }
    }

    mutating func beginRevoke(_ removed: [TopicPartition]) {
        for partition in removed { partitions[partition]?.revoking = true }
    }

    /// Forgets the partitions: later completions for them are ignored and never stored.
    mutating func revoke(_ removed: [TopicPartition]) {
        for partition in removed {
            if let state = partitions.removeValue(forKey: partition) { inFlight -= state.inFlight }
        }
    }

    enum Delivery: Equatable {
        /// Not assigned, or being revoked: the message must not be handed out.
        case refused
        /// Recorded; the first message of this assignment of the partition.
        case first
        case delivered
    }

    /// Records a message handed to the application, unless its partition is not (or no longer)
    /// deliverable. Offsets must increase per partition. One hash lookup: this runs per message.
    mutating func deliver(_ partition: TopicPartition, offset: Int64, timestamp: Int64 = -1) -> Delivery {
        guard let index = partitions.index(forKey: partition), !partitions.values[index].revoking else { return .refused }
        // Mutating through `values[index]` works in place; copying the value out and back would
        // copy its arrays on every call.
        let first = Self.append(offset, timestamp: timestamp, to: &partitions.values[index])
        inFlight += 1
        return first ? .first : .delivered
    }

    private static func append(_ offset: Int64, timestamp: Int64, to state: inout Partition) -> Bool {
        precondition(state.offsets.last.map { $0 < offset } ?? true, "offsets must increase within a partition")
        let first = !state.started
        state.started = true
        state.offsets.append(offset)
        state.done.append(false)
        state.timestamps.append(timestamp)
        state.atEnd = false
        return first
    }

    /// Marks an offset finished. Returns the new committable offset (next to consume) when the
    /// contiguous finished run grew, `nil` otherwise (out-of-order completion, unknown partition,
    /// unknown or repeated offset).
    mutating func completed(_ partition: TopicPartition, offset: Int64) -> Int64? {
        completed(partition, offsets: CollectionOfOne(offset))
    }

    /// ``completed(_:offset:)`` for several offsets of one partition: the highest new committable
    /// offset, if any.
    mutating func completed(_ partition: TopicPartition, offsets: some Sequence<Int64>) -> Int64? {
        guard let index = partitions.index(forKey: partition) else { return nil }
        var highest: Int64?
        for offset in offsets {
            let (found, next) = Self.complete(offset, in: &partitions.values[index])
            if found { inFlight -= 1 }
            if let next { highest = max(highest ?? next, next) }
        }
        return highest
    }

    /// Marks `offset` done in place. `found` is false for an unknown or repeated offset; `next` is
    /// the new committable offset when the contiguous finished run grew.
    private static func complete(_ offset: Int64, in state: inout Partition) -> (found: Bool, next: Int64?) {
        // binary search for the offset among the unfinished window
        var low = state.head
        var high = state.offsets.count
        while low < high {
            let mid = (low + high) / 2
            if state.offsets[mid] < offset { low = mid + 1 } else { high = mid }
        }
        guard low < state.offsets.count, state.offsets[low] == offset, !state.done[low] else { return (false, nil) }
        state.done[low] = true
        let before = state.head
        while state.head < state.offsets.count, state.done[state.head] { state.head += 1 }
        let next: Int64? = state.head > before ? state.offsets[state.head - 1] + 1 : nil
        if state.head > 4096, state.head * 2 > state.offsets.count {  // compact occasionally
            state.offsets.removeFirst(state.head)
            state.done.removeFirst(state.head)
            state.timestamps.removeFirst(state.head)
            state.head = 0
        }
        return (true, next)
    }

    func inFlight(of subset: [TopicPartition]) -> Int {
        subset.reduce(0) { $0 + (partitions[$1]?.inFlight ?? 0) }
    }

    mutating func reachedEnd(_ partition: TopicPartition) {
        partitions[partition]?.atEnd = true
    }

    /// Every assigned partition is at its end and nothing is in flight.
    var isDrained: Bool {
        !partitions.isEmpty && inFlight == 0 && partitions.values.allSatisfy(\.atEnd)
    }
}
