internal import CRDKafka
public import Foundation
import LogKeys
public import Logging

/// An at-least-once consumer-group member over librdkafka.
///
/// - Offsets are stored only for finished work (`enable.auto.offset.store=false`): call
///   ``complete(_:)`` from any thread when a message's outcome is durable. Work may finish out of
///   order; per partition only the contiguous finished run is stored.
/// - Our own rebalance callback (eager and cooperative): on revoke it stops handing out the
///   partitions' messages, waits (bounded) for their in-flight work, commits synchronously, then
///   unassigns. A lost assignment skips the commit; the revoke of ``close()`` does not wait.
///   Offsets of revoked partitions are never stored afterwards, because storing and revoking take
///   the same lock (librdkafka 2.0.x itself accepts such late stores and may commit them after a
///   later re-assignment).
/// - Batches come from `rd_kafka_consumer_poll`, not the 2.0.x batch APIs, which could skip
///   messages around pause/resume (fixed only in 2.1.0).
/// - Back-pressure, in two steps. At ``Configuration/maxInFlight`` unfinished messages, `poll`
///   first just waits (up to its timeout) for work to finish and hands out nothing, leaving
///   librdkafka's prefetched messages where they are. Only when the limit has held for
///   ``Configuration/pauseAfter`` (a stalled database, say) are the partitions paused, which lets
///   `poll` serve rebalances again; fetching resumes at half the limit. Pausing discards the
///   prefetched messages and refetching them stalls the pipeline for up to a second, so brief
///   saturation, the normal state of a busy worker, must not pause. Memory is bounded either way:
///   the in-flight limit plus librdkafka's prefetch queue (`queued.max.messages.kbytes`).
///   Keep calling ``poll(maxMessages:timeout:)`` meanwhile.
/// - ``isDrained`` tells batch mode when every assigned partition is at its end and all is done.
///
/// Threading: ``poll(maxMessages:timeout:)``, ``commit()`` and ``close()`` belong to one dedicated
/// thread (they block); ``complete(_:)`` and the read-only properties are safe from any thread.
/// `@unchecked Sendable` for that reason: `state` is only touched under `condition`, and
/// `lastTopic`, `lastCommit` and `closed` only by the polling thread.
public final class KafkaConsumer: @unchecked Sendable {
    public let configuration: Configuration
    private let logger: Logger
    private let handle: RDKafkaHandle
    /// Guards `state`; back-pressure, revoke and ``awaitCompletion(until:)`` wait on it for
    /// in-flight work, and ``complete(_:)`` signals it.
    private let condition = NSCondition()
    /// Everything the consumer knows about its work: see ``ConsumerState``.
    private var state = ConsumerState()
    // Consumer-thread caches and the handle's life (touched only by poll/commit/close and the
    // rebalance callback, which librdkafka runs inside them).
    /// librdkafka's topic handles live as long as the client, so a handle identifies its name.
    private var lastTopic: (handle: OpaquePointer, name: String)?
    private var lastCommit = Date()
    private var closed = false
    /// Whether the group ever gave this consumer an assignment (see ``close()``).
    private var everAssigned = false

    public init(configuration: Configuration, logger: Logger) throws(KafkaError) {
        self.configuration = configuration
        self.logger = logger
        let context = RDKafkaCallbackContext(logger: logger)
        let properties = try configuration.dictionary()
        handle = try RDKafkaHandle(RD_KAFKA_CONSUMER, properties: properties, context: context) { conf in
            rd_kafka_conf_set_rebalance_cb(conf) { handle, error, partitions, opaque in
                guard let handle, let partitions, let context = callbackContext(opaque) else { return }
                context.rebalance?(handle, error, partitions)
            }
            rd_kafka_conf_set_offset_commit_cb(conf) { _, error, offsets, opaque in
                guard let context = callbackContext(opaque) else { return }
                if let offsets { context.committed?(RDKafkaTopicPartitionList.entries(of: offsets)) }
                guard error != RD_KAFKA_RESP_ERR_NO_ERROR, error != RD_KAFKA_RESP_ERR__NO_OFFSET else { return }
                context.logger.warning(
                    "offset commit failed; it is retried with the next commit", metadata: [LogKey.error: "\(KafkaError(error))"])
            }
        }
        context.rebalance = { [unowned self] _, error, partitions in
            self.rebalance(error, partitions)
        }
        context.committed = { [unowned self] entries in
            self.condition.withLock {
                for (partition, offset, error) in entries where error == RD_KAFKA_RESP_ERR_NO_ERROR {
                    state.confirmed(partition, offset: offset)
                }
            }
        }
        // Route partition messages to the consumer queue that rd_kafka_consumer_poll serves.
        rd_kafka_poll_set_consumer(handle.pointer)
        let topics = RDKafkaTopicPartitionList(configuration.topics.map { (TopicPartition($0, CRDKafka_partitionUnassigned()), nil) })
        let status = rd_kafka_subscribe(handle.pointer, topics.pointer)
        guard status == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(status) }
    }

    /// Without ``close()``, leaves the group without committing (at least once: the next owner
    /// gets the uncommitted work again).
    deinit {
        guard !closed else { return }
        // Closing runs the rebalance callback, whose closure reaches this object, which is going
        // away: hand librdkafka a plain unassign instead.
        handle.context.committed = nil
        handle.context.rebalance = { handle, _, list in _ = Self.unassign(list, from: handle) }
        rd_kafka_consumer_close(handle.pointer)
    }

    // MARK: - Consuming (consumer thread)

    /// Up to `maxMessages` messages, waiting at most `timeout` seconds for the first one.
    /// Also serves rebalances, commits stored offsets periodically, and applies back-pressure.
    public func poll(maxMessages: Int, timeout: TimeInterval) throws(KafkaError) -> [KafkaMessage] {
        if let fatal = handle.context.fatalError { throw fatal }
        commitIfDue()
        guard applyBackPressure(waiting: timeout) else { return [] }
        var batch: [KafkaMessage] = []
        var waitMilliseconds = Int32(max(0, timeout * 1000))
        while batch.count < max(1, maxMessages) {
            guard let message = rd_kafka_consumer_poll(handle.pointer, waitMilliseconds) else { break }
            defer { rd_kafka_message_destroy(message) }
            waitMilliseconds = 0
            let error = message.pointee.err
            guard error == RD_KAFKA_RESP_ERR_NO_ERROR else {
                try handle(error, in: message)
                continue
            }
            let topic = topicName(message.pointee.rkt)
            let partition = TopicPartition(topic, message.pointee.partition)
            let offset = message.pointee.offset
            let timestamp = rd_kafka_message_timestamp(message, nil)
            let deliverable = condition.withLock { state.deliver(partition, offset: offset, timestamp: timestamp) }
            // A message of a partition being revoked is not handed out: its new owner gets it.
            if deliverable { batch.append(KafkaMessage(copying: message, topic: topic)) }
        }
        return batch
    }

    /// The topic's name, without a new string per message (a batch mostly comes from one topic).
    private func topicName(_ topic: OpaquePointer) -> String {
        if let last = lastTopic, last.handle == topic { return last.name }
        let name = String(cString: rd_kafka_topic_name(topic))
        lastTopic = (topic, name)
        return name
    }

    private func handle(_ error: rd_kafka_resp_err_t, in message: UnsafeMutablePointer<rd_kafka_message_t>) throws(KafkaError) {
        if error == RD_KAFKA_RESP_ERR__PARTITION_EOF {
            let partition = TopicPartition(topicName(message.pointee.rkt), message.pointee.partition)
            condition.withLock { state.reachedEnd(partition) }
            return
        }
        let text = rd_kafka_message_errstr(message).map { String(cString: $0) }
        if let fatal = handle.context.fatalError { throw fatal }
        let kafkaError = KafkaError(error, message: text)
        if error == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC || error == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART
            || error == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED || error == RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED
        {
            logger.error("consumer error", metadata: [LogKey.error: "\(kafkaError)"])
        } else {
            logger.warning("consumer error", metadata: [LogKey.error: "\(kafkaError)"])
        }
    }

    // MARK: - Finishing work (any thread)

    /// Marks messages finished; stores the new committable offsets of their partitions.
    public func complete(_ ids: some Sequence<KafkaMessageID>) {
        // A batch holds long runs of one partition: one lookup per run, not per message.
        var runs: [(partition: TopicPartition, offsets: [Int64])] = []
        for id in ids {
            if let last = runs.last?.partition, last.partition == id.partition, last.topic == id.topic {
                runs[runs.count - 1].offsets.append(id.offset)
            } else {
                runs.append((TopicPartition(id.topic, id.partition), [id.offset]))
            }
        }
        condition.withLock {
            let store = state.complete(runs)
            if !store.isEmpty {
                // Under the lock: a revoke cannot slip in between the check above and the store.
                let list = RDKafkaTopicPartitionList(store.map { ($0.key, $0.value) })
                let status = rd_kafka_offsets_store(handle.pointer, list.pointer)
                if status != RD_KAFKA_RESP_ERR_NO_ERROR {
                    logger.warning("storing offsets failed", metadata: [LogKey.error: "\(KafkaError(status))"])
                }
            }
            condition.broadcast()
        }
    }

    /// Messages handed out and not yet completed.
    public var inFlight: Int { condition.withLock { state.tracker.inFlight } }

    /// Waits until every message handed out is complete, `deadline` passes, or
    /// ``interruptWaits()`` is called (any thread). Returns how many are still unfinished.
    public func awaitCompletion(until deadline: Date) -> Int {
        condition.withLock {
            while state.tracker.inFlight > 0, !state.waitsInterrupted, condition.wait(until: deadline) {}
            return state.tracker.inFlight
        }
    }

    /// Ends ``awaitCompletion(until:)`` waits now and from now on (the caller abandons its work).
    public func interruptWaits() {
        condition.withLock {
            state.interruptWaits()
            condition.broadcast()
        }
    }

    /// Fetching is paused by back-pressure (consumer thread; for tests).
    var isFetchPaused: Bool { condition.withLock { state.isPaused } }

    /// The partitions this member owns now.
    public var assignment: [TopicPartition] { condition.withLock { state.tracker.assigned } }

    /// Messages the next owner of a revoked (or lost) partition will receive again: work still
    /// unfinished after the drain timeout, plus finished work whose offsets the broker refused to
    /// commit during the rebalance. These are the only duplicates a rebalance causes.
    public var redeliverableOnRevoke: Int { condition.withLock { state.redeliverable } }

    /// Every assigned partition reached its end, and every delivered message is complete.
    public var isDrained: Bool { condition.withLock { state.tracker.isDrained } }

    /// Assigned partitions whose end was reached with nothing delivered since.
    public var partitionsAtEnd: Set<TopicPartition> {
        condition.withLock { Set(state.tracker.partitions.filter { $0.value.atEnd }.keys) }
    }

    /// The current end (high watermark) of each partition of `topic`, asked of the brokers.
    public func highWatermarks(topic: String, partitions: Int, timeout: TimeInterval) throws(KafkaError) -> [Int32: Int64] {
        var result: [Int32: Int64] = [:]
        for partition in 0..<Int32(partitions) {
            var low: Int64 = 0
            var high: Int64 = 0
            let status = rd_kafka_query_watermark_offsets(handle.pointer, topic, partition, &low, &high, Int32(timeout * 1000))
            guard status == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(status) }
            result[partition] = high
        }
        return result
    }

    /// Whether `partition` is assigned to this member and not being revoked: work for it that has
    /// not started yet should start (else its new owner will do it).
    public func owns(_ partition: TopicPartition) -> Bool {
        condition.withLock { state.tracker.partitions[partition].map { !$0.revoking } ?? false }
    }

    /// Per assigned partition with unfinished work: when its oldest unfinished message was created
    /// (ms since the epoch). Partitions with nothing unfinished are absent.
    public var oldestUnfinished: [TopicPartition: Int64] {
        condition.withLock { state.tracker.partitions.compactMapValues(\.oldestUnfinished) }
    }

    /// Messages behind the end of each assigned partition: the broker's high watermark (as last
    /// seen by the fetcher) minus the committed offset (or where this member started).
    public func lag() -> [TopicPartition: Int64] {
        let bases = condition.withLock { (state.tracker.assigned, state.committed) }
        var result: [TopicPartition: Int64] = [:]
        for partition in bases.0 {
            var low: Int64 = 0
            var high: Int64 = 0
            guard
                rd_kafka_get_watermark_offsets(handle.pointer, partition.topic, partition.partition, &low, &high)
                    == RD_KAFKA_RESP_ERR_NO_ERROR,
                high >= 0
            else { continue }
            let base = bases.1[partition] ?? low
            result[partition] = max(0, high - base)
        }
        return result
    }

    // MARK: - Committing (consumer thread)

    /// Commits the stored offsets synchronously.
    public func commit() throws(KafkaError) {
        lastCommit = Date()
        let status = rd_kafka_commit(handle.pointer, nil, 0)
        guard status == RD_KAFKA_RESP_ERR_NO_ERROR || status == RD_KAFKA_RESP_ERR__NO_OFFSET else {
            throw KafkaError(status)
        }
        condition.withLock { state.commitSucceeded() }
    }

    /// Asynchronous commit of whatever is stored, at most once per interval. librdkafka sends only
    /// offsets newer than the committed ones, so a failed commit is simply retried by the next.
    private func commitIfDue() {
        guard Date().timeIntervalSince(lastCommit) >= configuration.commitInterval else { return }
        lastCommit = Date()
        _ = rd_kafka_commit(handle.pointer, nil, 1)
    }

    /// Commits what is finished and leaves the group. Work still in flight is not waited for (the
    /// caller had its chance to finish it before closing): it stays uncommitted, and the
    /// partitions' next owner gets it again.
    public func close() {
        guard !closed else { return }
        condition.withLock { state.beginClose() }
        do { try commit() } catch { logger.warning("final commit failed", metadata: [LogKey.error: "\(error)"]) }
        let status = rd_kafka_consumer_close(handle.pointer)
        if status != RD_KAFKA_RESP_ERR_NO_ERROR {
            logger.warning("consumer close reported an error", metadata: [LogKey.error: "\(KafkaError(status))"])
        }
        if !everAssigned, configuration.assignmentStrategy.contains("cooperative-sticky") {
            // librdkafka 2.0.2 aborts in rd_kafka_destroy here (#4312): see RDKafkaHandle.
            handle.leftToProcessExit = true
            logger.debug("consumer closed before its first assignment: its handle is left to process exit (librdkafka #4312)")
        }
        closed = true
    }

    // MARK: - Back-pressure (consumer thread)

    /// Whether `poll` may call into librdkafka now. At the limit it waits up to `timeout` for room;
    /// if the limit has held for `pauseAfter`, it pauses the partitions and lets `poll` go on
    /// serving events (a paused consumer fetches nothing). See the type's documentation.
    private func applyBackPressure(waiting timeout: TimeInterval) -> Bool {
        let limit = configuration.maxInFlight
        let deadline = Date(timeIntervalSinceNow: timeout)
        let action = condition.withLock {
            if !state.isPaused {
                while state.tracker.inFlight >= limit, condition.wait(until: deadline) {}
            }
            return state.pollAction(limit: limit, pauseAfter: configuration.pauseAfter, now: Date())
        }
        switch action {
        case .poll: return true
        case .holdBack: return false
        case .pauseThenPoll: setPaused(true)
        case .resumeThenPoll: setPaused(false)
        }
        return true
    }

    private func setPaused(_ pause: Bool) {
        var list: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?
        guard rd_kafka_assignment(handle.pointer, &list) == RD_KAFKA_RESP_ERR_NO_ERROR, let list else { return }
        defer { rd_kafka_topic_partition_list_destroy(list) }
        _ = pause ? rd_kafka_pause_partitions(handle.pointer, list) : rd_kafka_resume_partitions(handle.pointer, list)
        logger.info(
            pause ? "in-flight limit reached: fetching paused" : "in-flight work drained: fetching resumed",
            metadata: [LogKey.inFlight: "\(inFlight)"])
    }

    // MARK: - Rebalancing (consumer thread, inside poll or close)

    private func rebalance(_ error: rd_kafka_resp_err_t, _ list: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>) {
        let partitions = RDKafkaTopicPartitionList.partitions(of: list)
        let cooperative = Self.isCooperative(handle.pointer)
        switch error {
        case RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS:
            everAssigned = true
            let paused = condition.withLock {
                state.assign(partitions)
                return state.isPaused
            }
            let status =
                cooperative ? Self.errorCode(rd_kafka_incremental_assign(handle.pointer, list)) : rd_kafka_assign(handle.pointer, list)
            if status != RD_KAFKA_RESP_ERR_NO_ERROR {
                logger.error("assign failed", metadata: [LogKey.error: "\(KafkaError(status))"])
            }
            if paused { _ = rd_kafka_pause_partitions(handle.pointer, list) }
            logger.info("partitions assigned", metadata: [LogKey.partitions: "\(TopicPartition.summary(of: partitions))"])

        case RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS:
            let lost = rd_kafka_assignment_lost(handle.pointer) == 1
            let unfinished = condition.withLock {
                if state.beginRevoke(partitions, lost: lost) {
                    let deadline = Date(timeIntervalSinceNow: configuration.revokeDrainTimeout)
                    while state.tracker.inFlight(of: partitions) > 0, condition.wait(until: deadline) {}
                }
                return state.revoke(partitions)
            }
            var committedOnRevoke = false
            if !lost {
                do {
                    try commit()
                    committedOnRevoke = true
                } catch {
                    logger.warning(
                        "commit on revoke refused; finished work since the last commit will be redelivered",
                        metadata: [LogKey.error: "\(error)"])
                }
            }
            condition.withLock { state.forget(partitions, unfinished: unfinished, committedOnRevoke: committedOnRevoke) }
            let status = Self.unassign(list, from: handle.pointer)
            if status != RD_KAFKA_RESP_ERR_NO_ERROR {
                logger.error("unassign failed", metadata: [LogKey.error: "\(KafkaError(status))"])
            }
            logger.info(
                lost ? "partitions lost (not committed)" : "partitions revoked",
                metadata: [
                    LogKey.partitions: "\(TopicPartition.summary(of: partitions))",
                    LogKey.unfinishedInFlight: "\(unfinished)",
                ])

        default:
            logger.error("rebalance error", metadata: [LogKey.error: "\(KafkaError(error))"])
            condition.withLock { state.dropAssignment() }
            _ = rd_kafka_assign(handle.pointer, nil)
        }
    }

    /// Whether the group runs the cooperative (incremental) rebalance protocol.
    private static func isCooperative(_ handle: OpaquePointer) -> Bool {
        String(cString: rd_kafka_rebalance_protocol(handle)) == "COOPERATIVE"
    }

    /// Gives up `list`: incrementally under the cooperative protocol, the whole assignment otherwise.
    private static func unassign(_ list: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>, from handle: OpaquePointer)
        -> rd_kafka_resp_err_t
    {
        isCooperative(handle) ? errorCode(rd_kafka_incremental_unassign(handle, list)) : rd_kafka_assign(handle, nil)
    }

    /// Turns an `rd_kafka_error_t` (owned, may be NULL) into a response code and frees it.
    private static func errorCode(_ error: OpaquePointer?) -> rd_kafka_resp_err_t {
        guard let error else { return RD_KAFKA_RESP_ERR_NO_ERROR }
        defer { rd_kafka_error_destroy(error) }
        return rd_kafka_error_code(error)
    }
}
