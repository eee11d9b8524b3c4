import DecryptdStore
import Foundation
import KafkaClient
public import Logging

/// Start-up checks: everything that would make a run fail for configuration reasons, found before
/// consuming anything, each as one line for the user (`decryptd run` exits 2 with them).
public enum Preflight {
    /// The one wording of a missing database setting, for every command that needs one.
    public static let noDatabase = "no database: give --database-url or set DATABASE_URL"

    /// The one wording of a database that cannot be used, for every command that needs one: a bad
    /// URL as libpq words it, anything else (refused, timed out, authentication) as unreachable.
    public static func databaseProblem(_ error: any Error) -> String {
        DecryptdDatabase.problem(error)
    }

    /// What the start-up checks found: the problems, one line each, and the partition count of every
    /// topic the brokers reported (empty when they could not be asked or did not answer).
    public struct Findings: Sendable {
        public var problems: [String]
        public var partitions: [String: Int]
    }

    /// The problems ``check(_:topics:produced:settings:timeout:logger:)`` finds.
    public static func problems(
        _ configuration: WorkerConfiguration, topics required: [String], produced: [String] = [], settings: [String] = [],
        timeout: Double = 10, logger: Logger
    ) -> [String] {
        check(configuration, topics: required, produced: produced, settings: settings, timeout: timeout, logger: logger).problems
    }

    /// `required` topics must exist (the ones read: a misspelt name must not read an empty new
    /// topic). `produced` topics, only written to, may be missing where the brokers create topics
    /// on demand, as they would for the first record sent: they are asked to create them now.
    /// `settings` are the calling command's own problems with its flags, listed after the shared ones
    /// and before anything found by reaching the services. A command that names no topic does not
    /// use Kafka: its brokers are neither required nor probed. `timeout` (seconds) bounds the wait
    /// for an unreachable broker, and for the database unless its URL sets `connect_timeout`.
    public static func check(
        _ configuration: WorkerConfiguration, topics required: [String], produced: [String] = [], settings: [String] = [],
        timeout: Double = 10, logger: Logger
    ) -> Findings {
        var problems: [String] = []
        var partitions: [String: Int] = [:]
        let usesKafka = !required.isEmpty || !produced.isEmpty
        if configuration.appids.isEmpty { problems.append("no appid: give --appid (repeatable) or set WECHAT_APPIDS") }
        if usesKafka, configuration.brokers.isEmpty { problems.append("no brokers: give --brokers or set KAFKA_BROKERS") }
        if !configuration.jobsTopic.isEmpty, configuration.jobsTopic == configuration.deadLetterTopic {
            problems.append("--jobs-topic and --dlq-topic must differ: dead letters would come back as jobs")
        }
        problems += settings

        if configuration.databaseURL.isEmpty {
            problems.append(noDatabase)
        } else if let problem = databaseProblem(at: configuration.databaseURL, timeout: timeout) {
            problems.append(problem)
        }

        if usesKafka, !configuration.brokers.isEmpty {
            do {
                // The probe's own connection errors would repeat what the one line below says.
                var quiet = logger
                quiet.logLevel = .critical
                let cluster = try KafkaClusterProbe.topics(
                    bootstrapServers: configuration.brokers, properties: configuration.kafkaProperties,
                    timeout: timeout, creating: produced.filter { !$0.isEmpty }, logger: quiet
                )
                partitions = cluster.partitions
                for topic in cluster.created {
                    logger.notice(
                        "topic \(topic) did not exist; the brokers created it on demand, with \(partitions[topic] ?? 0) partition(s)")
                }
                for topic in required where !topic.isEmpty && partitions[topic] == nil {
                    problems.append("topic \(topic) does not exist on \(configuration.brokers)")
                }
                for (topic, error) in cluster.notCreated.sorted(by: { $0.key < $1.key }) {
                    problems.append(
                        "topic \(topic) does not exist on \(configuration.brokers), and the brokers did not create it on demand: \(error.message)"
                    )
                }
            } catch {
                problems.append("cannot reach Kafka: \(error.message)")
            }
        }
        return Findings(problems: problems.map(oneLine), partitions: partitions)
    }

    /// A message as one line, as every problem and error line is printed: line breaks and tabs
    /// (a library's multi-line message, say) become single spaces between trimmed pieces.
    public static func oneLine(_ message: String) -> String {
        message.split(whereSeparator: { $0.isNewline || $0 == "\t" }).map { $0.trimmingCharacters(in: .whitespaces) }.joined(separator: " ")
    }

    /// What keeps the database at `url` from serving a run, if anything (see
    /// ``DecryptdDatabase/startupProblem(url:timeoutSeconds:)``).
    private static func databaseProblem(at url: String, timeout: Double) -> String? {
        DecryptdDatabase.startupProblem(url: url, timeoutSeconds: Int(timeout.rounded(.up)))
    }
}
