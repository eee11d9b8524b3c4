import KafkaClient
import PostgresClient

/// An error that says whether the same work may succeed later (a server down or busy, a timeout):
/// ``Backoff`` retries exactly these, and rethrows every other error at once.
public protocol RetriableError: Error {
    var isRetriable: Bool { get }
}

extension PostgresError: RetriableError {}
extension KafkaError: RetriableError {}

extension Error {
    /// Whether retrying may help: only a ``RetriableError`` that says so.
    var isRetriable: Bool { (self as? any RetriableError)?.isRetriable ?? false }
}
