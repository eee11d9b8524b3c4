import Dispatch
import Foundation

/// Traps SIGINT and SIGTERM: while it lives they no longer end the process, and `handler` runs on a
/// global queue for each one that arrives. ``cancel()`` stops calling the handler (the signals stay
/// ignored by default: trap them again, or hand them to a service group, which traps them the same way).
/// `@unchecked Sendable`: its one property never changes, and a Dispatch source is thread-safe
/// (Dispatch's protocol types are not marked Sendable on Linux).
final class TerminationSignals: @unchecked Sendable {
    private let sources: [any DispatchSourceSignal]

    init(_ handler: @escaping @Sendable (_ name: String) -> Void) {
        _ = Self.ignoreOnce
        sources = [(SIGINT, "SIGINT"), (SIGTERM, "SIGTERM")].map { signalNumber, name in
            let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: .global())
            source.setEventHandler { handler(name) }
            source.resume()
            return source
        }
    }

    /// Until the first dispatch source for a signal is registered, the signal would end the
    /// process: it is ignored first. Only once per process: on Linux, libdispatch then installs a
    /// handler of its own for the signal (once), and ignoring it again would replace that handler,
    /// so that later signals were dropped and no source saw them.
    private static let ignoreOnce: Void = {
        signal(SIGINT, SIG_IGN)
        signal(SIGTERM, SIG_IGN)
    }()

    func cancel() {
        for source in sources { source.cancel() }
    }
}
