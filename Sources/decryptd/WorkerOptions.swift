import ArgumentParser
import DecryptdWorker
import Foundation
import KafkaClient

/// The connection options `run`, `reprocess` and `loadgen` share. Every option also reads an
/// environment variable (named in its help); flags win.
struct ConnectionOptions: ParsableArguments {
    @Option(help: "Kafka bootstrap servers, host:port[,host:port]. Env: KAFKA_BROKERS.")
    var brokers: String?

    @OptionGroup var database: DatabaseOptions

    @Option(
        name: .customLong("appid"),
        help:
            "An appid this worker serves (repeatable; the first is the default for jobs without one). Env: WECHAT_APPIDS, comma-separated.")
    var appids: [String] = []

    @Option(name: Settings.jobsTopic.name, help: Settings.jobsTopic.help)
    var jobsTopic: String?

    @Option(
        name: .customLong("kafka-property"),
        help: ArgumentHelp(
            "A librdkafka property, key=value (repeatable): SASL, SSL, tuning. Env: DECRYPTD_KAFKA_PROPERTIES, key=value;key=value.",
            valueName: "key=value"))
    var kafkaProperties: [String] = []

    @Option(
        name: .customLong("log-level"),
        help:
            "trace, debug, info, notice, warning, error or critical. Env: DECRYPTD_LOG_LEVEL. Default: info for run, warning for reprocess and loadgen (which print a summary)."
    )
    var logLevel: String?

    /// The worker configuration these options describe (numbers and lists still to be validated).
    /// A bad `--kafka-property` is left out of it and named in `problems`, so that it is reported
    /// together with every other mistake instead of alone.
    func configuration(problems: inout [String]) throws -> WorkerConfiguration {
        let appidList =
            appids.isEmpty
            ? Environment.appids : appids.flatMap { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } }
        var configuration = WorkerConfiguration(
            brokers: brokers ?? Environment.value("KAFKA_BROKERS") ?? "",
            databaseURL: database.url ?? "",
            appids: appidList.filter { !$0.isEmpty }
        )
        configuration.jobsTopic = try Settings.jobsTopic.resolved(jobsTopic, problems: &problems)
        let properties =
            kafkaProperties.isEmpty
            ? (Environment.value("DECRYPTD_KAFKA_PROPERTIES") ?? "").split(separator: ";").map(String.init)
            : kafkaProperties
        for property in properties where !property.trimmingCharacters(in: .whitespaces).isEmpty {
            guard let setting = KafkaPropertySetting.parse(property) else {
                problems.append("bad --kafka-property \(property): use key=value")
                continue
            }
            if let problem = KafkaPropertySetting.problem(key: setting.key, value: setting.value) {
                problems.append("bad --kafka-property \(property): \(problem)")
                continue
            }
            configuration.kafkaProperties[setting.key] = setting.value
        }
        return configuration
    }
}

/// The options of the commands that decrypt and dead-letter jobs, `run` and `reprocess`.
struct DecryptionOptions: ParsableArguments {
    @Option(name: Settings.deadLetterTopic.name, help: Settings.deadLetterTopic.help)
    var deadLetterTopic: String?

    @Option(name: Settings.maxSessionKeys.name, parsing: .unconditional, help: Settings.maxSessionKeys.help)
    var maxSessionKeys: Int?

    /// Sets these options (or their environment variables) in `configuration`; a bad value is
    /// named in `problems`.
    func apply(to configuration: inout WorkerConfiguration, problems: inout [String]) throws {
        configuration.deadLetterTopic = try Settings.deadLetterTopic.resolved(deadLetterTopic, problems: &problems)
        configuration.maxSessionKeys = try Settings.maxSessionKeys.resolved(maxSessionKeys, problems: &problems)
    }
}
