public import Foundation

extension KafkaConsumer {
    /// What the consumer is given; ``dictionary()`` is the one place it becomes librdkafka properties.
    public struct Configuration: Sendable {
        public var bootstrapServers: String
        public var groupID: String
        public var topics: [String]
        /// `cooperative-sticky` (default) or an eager assignor such as `range` or `roundrobin`.
        public var assignmentStrategy = "cooperative-sticky"
        /// Hand out no more messages at this many unfinished ones. Default: 20,000.
        public var maxInFlight = 20_000
        /// How long the in-flight limit may hold before the partitions are paused (resumed at
        /// half the limit). Default: 2 s.
        public var pauseAfter: TimeInterval = 2
        /// How long a revoke waits for the revoked partitions' in-flight work. Default: 15 s.
        public var revokeDrainTimeout: TimeInterval = 15
        /// How often stored offsets are committed (asynchronously). Default: 1 s.
        public var commitInterval: TimeInterval = 1
        /// Any librdkafka property (SASL, SSL, tuning). The settings at-least-once depends on
        /// (`enable.auto.offset.store`, `enable.auto.commit`, `enable.partition.eof`) are refused.
        public var properties: [String: String] = [:]

        public init(bootstrapServers: String, groupID: String, topics: [String]) {
            self.bootstrapServers = bootstrapServers
            self.groupID = groupID
            self.topics = topics
        }

        static let managed: Set<String> = ["enable.auto.offset.store", "enable.auto.commit", "enable.partition.eof"]

        /// Why `key` may not be set by the caller, when it is one of the ``managed`` properties.
        static func managedProblem(_ key: String) -> String? {
            managed.contains(key) ? "decryptd manages \(key) (at-least-once delivery depends on it)" : nil
        }

        /// The librdkafka properties: defaults, then the caller's, then the managed ones.
        func dictionary() throws(KafkaError) -> [String: String] {
            if let problem = properties.keys.sorted().lazy.compactMap(Self.managedProblem).first {
                throw KafkaError.configuration("kafka property: \(problem)")
            }
            var result = [
                "bootstrap.servers": bootstrapServers,
                "group.id": groupID,
                "auto.offset.reset": "earliest",
                "partition.assignment.strategy": assignmentStrategy,
                "client.id": "decryptd",
                // librdkafka's default is 45 s. That is how long a crashed worker's partitions wait
                // for a new owner, and how long the embedded broker (which keeps a group rebalancing
                // for the last member's session timeout after it leaves) makes the next run in the
                // same group wait for its partitions. Heartbeats come from librdkafka's own thread,
                // so a busy worker does not miss them; 10 s was Kafka's default before 3.0.
                "session.timeout.ms": "10000",
                // A broker connection that silently stops answering (a network partition, a broker
                // that came back without the requests it had) is noticed only when a request times
                // out: librdkafka's default of 60 s outlasted a graceful stop (30 s), which then
                // abandoned its work (docs/chaos.md). 10 s notices it within seconds, and stays
                // far above a healthy broker's answer time; JoinGroup keeps its own, longer limit.
                "socket.timeout.ms": KafkaTimeouts.socket,
                "socket.connection.setup.timeout.ms": KafkaTimeouts.connectionSetup,
                "reconnect.backoff.ms": "100",
                "reconnect.backoff.max.ms": "2000",
                // Prefetch at most 16 MB (librdkafka's default is 64 MB): the in-flight limit, not
                // the fetch queue, is what should bound memory.
                "queued.max.messages.kbytes": "16384",
            ]
            result.merge(KafkaPropertyScope.forConsumer(properties)) { _, caller in caller }
            result["enable.auto.offset.store"] = "false"
            result["enable.auto.commit"] = "false"
            result["enable.partition.eof"] = "true"
            return result
        }
    }
}

/// librdkafka's network timeouts, the same for consumer and producer (see the consumer's defaults).
enum KafkaTimeouts {
    static let socket = "10000"
    static let connectionSetup = "10000"
}
