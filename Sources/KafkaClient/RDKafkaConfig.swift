internal import CRDKafka
import Logging

/// Builds an `rd_kafka_conf_t` from properties. The one place where settings become C.
///
/// Ownership: the returned conf is owned by the caller until `rd_kafka_new` succeeds (which takes
/// it); if `rd_kafka_new` fails the caller must destroy it. ``RDKafkaHandle`` does both.
enum RDKafkaConfig {
    static func make(_ properties: [String: String]) throws(KafkaError) -> OpaquePointer {
        let conf = rd_kafka_conf_new()!
        for (key, value) in properties.sorted(by: { $0.key < $1.key }) {
            if let problem = set(conf, key, value) {
                rd_kafka_conf_destroy(conf)
                throw KafkaError.configuration("kafka property \(key): \(problem)")
            }
        }
        return conf
    }

    /// Sets one property on `conf`; returns librdkafka's reason when it refuses it.
    static func set(_ conf: OpaquePointer, _ key: String, _ value: String) -> String? {
        var errorText = [CChar](repeating: 0, count: 512)
        guard rd_kafka_conf_set(conf, key, value, &errorText, errorText.count) == RD_KAFKA_CONF_OK else {
            return String(errorBuffer: errorText)
        }
        return nil
    }
}

/// Forwards librdkafka's log lines (syslog levels) to swift-log. Set on every client.
enum RDKafkaLog {
    static func level(_ syslog: Int32) -> Logger.Level {
        switch syslog {
        case ...2: .critical  // emerg, alert, crit
        case 3: .error
        case 4: .warning
        case 5: .notice
        case 6: .info
        default: .debug
        }
    }
}

extension String {
    /// The NUL-terminated text librdkafka wrote into an error buffer.
    init(errorBuffer buffer: [CChar]) {
        self.init(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
