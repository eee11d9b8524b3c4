public import Foundation
public import Logging

/// Keeps every message logged through it, with its level and metadata, for tests that check what
/// was logged (and what never was).
public final class RecordingLogHandler: LogHandler, @unchecked Sendable {
    private let lock = NSLock()
    private var recorded: [(Logger.Level, String, Logger.Metadata)] = []
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level = .trace

    public init() {}

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        lock.withLock { recorded.append((event.level, "\(event.message)", event.metadata ?? [:])) }
    }

    public var messages: [(level: Logger.Level, text: String, metadata: Logger.Metadata)] { lock.withLock { recorded } }

    /// Each message as one line: level, text, metadata.
    public var lines: [String] { messages.map { "\($0.level) \($0.text) \($0.metadata)" } }

    /// A logger that logs only here.
    public var logger: Logger { Logger(label: "recorded") { _ in self } }
}
