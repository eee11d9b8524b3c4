internal import CRDKafka
import Foundation
import LogKeys
import Logging

/// Shared by the callbacks of one client: its logger and the fatal error, if one happened.
/// Lives (retained through `rd_kafka_conf_set_opaque`) until the handle is destroyed.
///
/// `@unchecked Sendable`: the callbacks are set once, before the handle exists (librdkafka calls
/// them on its threads only after that), and never changed; `fatal` is only touched under `lock`.
final class RDKafkaCallbackContext: @unchecked Sendable {
    let logger: Logger
    /// Called on librdkafka's threads; forwards to the owner (consumer or producer).
    var rebalance: ((OpaquePointer, rd_kafka_resp_err_t, UnsafeMutablePointer<rd_kafka_topic_partition_list_t>) -> Void)?
    /// Offsets the broker confirmed (or refused) in a commit, per partition.
    var committed: (([(TopicPartition, Int64, rd_kafka_resp_err_t)]) -> Void)?
    private let lock = NSLock()
    private var fatal: KafkaError?

    init(logger: Logger) {
        self.logger = logger
    }

    var fatalError: KafkaError? { lock.withLock { fatal } }
    func recordFatal(_ error: KafkaError) { lock.withLock { if fatal == nil { fatal = error } } }
}

/// Owns one `rd_kafka_t` (consumer or producer) and destroys it in `deinit`.
///
/// `@unchecked Sendable`: its stored properties never change, and librdkafka documents `rd_kafka_t`
/// as safe to use from any thread (its own locking); what is not (polling a consumer) is the
/// owning client's to keep on one thread.
final class RDKafkaHandle: @unchecked Sendable {
    let pointer: OpaquePointer
    let context: RDKafkaCallbackContext
    private let contextReference: Unmanaged<RDKafkaCallbackContext>

    /// Creates the client. `configure` may install further callbacks on the conf before it is
    /// handed over. `rd_kafka_new` takes the conf only on success; on failure it is destroyed here.
    init(
        _ type: rd_kafka_type_t,
        properties: [String: String],
        context: RDKafkaCallbackContext,
        configure: (OpaquePointer) -> Void = { _ in }
    ) throws(KafkaError) {
        let conf = try RDKafkaConfig.make(properties)
        let reference = Unmanaged.passRetained(context)
        rd_kafka_conf_set_opaque(conf, reference.toOpaque())
        rd_kafka_conf_set_log_cb(conf) { handle, level, facility, message in
            guard let handle, let opaque = rd_kafka_opaque(handle) else { return }
            let context = Unmanaged<RDKafkaCallbackContext>.fromOpaque(opaque).takeUnretainedValue()
            context.logger.log(
                level: RDKafkaLog.level(level),
                "\(message.map { String(cString: $0) } ?? "")",
                metadata: [LogKey.rdkafkaFacility: .string(facility.map { String(cString: $0) } ?? "")]
            )
        }
        rd_kafka_conf_set_error_cb(conf) { handle, error, reason, opaque in
            guard let opaque else { return }
            let context = Unmanaged<RDKafkaCallbackContext>.fromOpaque(opaque).takeUnretainedValue()
            let text = reason.map { String(cString: $0) } ?? ""
            let code = rd_kafka_resp_err_t(rawValue: error)
            if code == RD_KAFKA_RESP_ERR__FATAL, let handle {
                var buffer = [CChar](repeating: 0, count: 512)
                let original = rd_kafka_fatal_error(handle, &buffer, buffer.count)
                let fatal = KafkaError(original, message: String(errorBuffer: buffer), fatal: true)
                context.recordFatal(fatal)
                context.logger.critical("kafka fatal error", metadata: [LogKey.error: "\(fatal)"])
            } else {
                context.logger.warning("kafka error", metadata: [LogKey.error: "\(KafkaError(code, message: text))"])
            }
        }
        configure(conf)
        var errorText = [CChar](repeating: 0, count: 512)
        guard let handle = rd_kafka_new(type, conf, &errorText, errorText.count) else {
            rd_kafka_conf_destroy(conf)  // rd_kafka_new frees the conf only on success
            reference.release()
            throw KafkaError.configuration(String(errorBuffer: errorText))
        }
        self.pointer = handle
        self.context = context
        self.contextReference = reference
    }

    /// Set (by the owner, before its last reference goes) when `rd_kafka_destroy` would abort the
    /// process: librdkafka 2.0.2 asserts when a cooperative-sticky consumer that never received an
    /// assignment is destroyed (librdkafka #4312, fixed in 2.3.0). The handle is then left to
    /// process exit instead: its memory and threads, nothing else (it has left the group already).
    var leftToProcessExit = false

    deinit {
        guard !leftToProcessExit else { return }
        rd_kafka_destroy(pointer)
        contextReference.release()  // after destroy: no callback can run any more
    }
}

/// The callback context of a handle, from a C callback's `opaque`.
func callbackContext(_ opaque: UnsafeMutableRawPointer?) -> RDKafkaCallbackContext? {
    opaque.map { Unmanaged<RDKafkaCallbackContext>.fromOpaque($0).takeUnretainedValue() }
}
