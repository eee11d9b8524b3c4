/// An error that says whether the same work may succeed later (a server down or busy, a timeout):
/// the retries retry exactly these, and rethrow every other error at once. The clients' own errors
/// (`PostgresError`, `KafkaError`) say it of themselves.
public protocol RetriableError: Error {
    var isRetriable: Bool { get }
}

extension Error {
    /// Whether retrying may help: only a ``RetriableError`` that says so.
    public var isRetriable: Bool { (self as? any RetriableError)?.isRetriable ?? false }
}
