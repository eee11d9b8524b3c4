import Testing

@testable import DecryptdWorker

@Suite("Worker lifecycle")
struct WorkerLifecycleTests {
    struct Broken: Error, Equatable { var id: Int }

    private func name(_ lifecycle: WorkerLifecycle) -> String {
        switch lifecycle.state {
        case .starting: "starting"
        case .running: "running"
        case .draining: "draining"
        case .stopped: "stopped"
        case .failed: "failed"
        }
    }

    @Test("starting → running → draining → stopped; polling goes on only before the stop")
    func gracefulStop() {
        var lifecycle = WorkerLifecycle()
        #expect(name(lifecycle) == "starting" && lifecycle.keepsPolling)
        lifecycle.started()
        #expect(name(lifecycle) == "running" && lifecycle.keepsPolling)
        lifecycle.stopRequested()
        #expect(name(lifecycle) == "draining" && !lifecycle.keepsPolling)
        lifecycle.started()
        #expect(name(lifecycle) == "draining", "a late start does not undo the stop")
        lifecycle.finished()
        #expect(name(lifecycle) == "stopped" && lifecycle.error == nil)
        lifecycle.stopRequested()
        #expect(name(lifecycle) == "stopped")
    }

    @Test("a stop asked for before run starts polling still holds")
    func stopBeforeStart() {
        var lifecycle = WorkerLifecycle()
        lifecycle.stopRequested()
        lifecycle.started()
        #expect(name(lifecycle) == "draining" && !lifecycle.keepsPolling)
    }

    @Test("the first permanent error wins and stays, through a stop and the end")
    func failure() {
        var lifecycle = WorkerLifecycle()
        lifecycle.started()
        let first = lifecycle.failed(Broken(id: 1))
        let second = lifecycle.failed(Broken(id: 2))
        #expect(first && !second, "a later error is not the first")
        lifecycle.stopRequested()
        lifecycle.finished()
        #expect(name(lifecycle) == "failed" && !lifecycle.keepsPolling)
        #expect(lifecycle.error as? Broken == Broken(id: 1))
    }

    @Test("an error while draining still fails the run")
    func failureWhileDraining() {
        var lifecycle = WorkerLifecycle()
        lifecycle.started()
        lifecycle.stopRequested()
        let first = lifecycle.failed(Broken(id: 3))
        #expect(first)
        lifecycle.finished()
        #expect(lifecycle.error as? Broken == Broken(id: 3))
    }
}
