import DedicatedThread

/// One stage of the pipeline: a name, a dedicated thread of its own, and the queue it takes its
/// work from. Its body runs once per item until the queue is closed and empty. A stage is
/// declared (see ``Worker``'s `startStages`), not woven into a run loop.
///
/// Once `abandon` is requested the stage drains its queue without working (the work stays
/// unfinished, so uncommitted, and is redelivered). A retry that gives up because of it
/// (`Backoff.GaveUp`) is the same; any other error is permanent and goes to `onError`.
final class Stage: Sendable {
    let name: String
    private let thread: DedicatedThread

    init<Item: Sendable>(
        _ name: String, take: @escaping @Sendable () -> Item?, abandon: StopRequest,
        onError: @escaping @Sendable (_ error: any Error, _ stage: String) -> Void,
        _ body: @escaping @Sendable (inout Item) throws -> Void
    ) {
        self.name = name
        thread = DedicatedThread(name: name) {
            while var item = take() {
                guard !abandon.isRequested else { continue }
                do {
                    try body(&item)
                } catch is Backoff.GaveUp {
                    continue
                } catch {
                    onError(error, name)
                }
            }
        }
    }

    /// Waits until the stage's queue is closed and its thread has ended.
    func join() { thread.join() }
}
