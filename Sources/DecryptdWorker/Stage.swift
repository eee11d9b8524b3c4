import DedicatedThread

/// One stage of the pipeline: a name, a dedicated thread of its own, and the queue it takes its
/// work from. Its body runs once per item until the queue is closed and empty. A stage is
/// declared (see ``Worker``'s `startStages`), not woven into a run loop.
///
/// A stage may own a resource that only its thread ever uses (a PostgreSQL connection): it is made
/// on that thread, handed to each run of the body, and never leaves it, so "one connection per
/// thread" is a matter of types, not of convention.
///
/// Once `abandon` is requested the stage drains its queue without working (the work stays
/// unfinished, so uncommitted, and is redelivered). A retry that gives up because of it
/// (`Backoff.GaveUp`) is the same; any other error, making the resource included, is permanent
/// and goes to `onError`, with the stage's name.
final class Stage: Sendable {
    let name: String
    private let thread: DedicatedThread

    init<Item: Sendable, Resource>(
        _ name: String, take: @escaping @Sendable () -> Item?, abandon: StopRequest,
        onError: @escaping @Sendable (_ error: any Error, _ stage: String) -> Void,
        resource makeResource: @escaping @Sendable () throws -> Resource,
        _ body: @escaping @Sendable (inout Item, Resource) throws -> Void
    ) {
        self.name = name
        thread = DedicatedThread(name: name) {
            let resource: Resource
            do {
                resource = try makeResource()
            } catch {
                onError(error, name)
                while take() != nil {}  // nothing can be worked on: it stays unfinished
                return
            }
            while var item = take() {
                guard !abandon.isRequested else { continue }
                do {
                    try body(&item, resource)
                } catch is Backoff.GaveUp {
                    continue  // the one error a stop causes: the item stays unfinished, as intended
                } catch {
                    onError(error, name)
                }
            }
        }
    }

    /// A stage that owns nothing but its thread.
    convenience init<Item: Sendable>(
        _ name: String, take: @escaping @Sendable () -> Item?, abandon: StopRequest,
        onError: @escaping @Sendable (_ error: any Error, _ stage: String) -> Void,
        _ body: @escaping @Sendable (inout Item) throws -> Void
    ) {
        let nothing: @Sendable () -> Void = {}
        self.init(name, take: take, abandon: abandon, onError: onError, resource: nothing) { item, _ in try body(&item) }
    }

    /// Waits until the stage's queue is closed and its thread has ended.
    func join() { thread.join() }
}
