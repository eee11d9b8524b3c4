import DecryptdStore
import DecryptdTestSupport
import DecryptdWorker
import Foundation
import KafkaClient
import PhoneDecryption
import Testing

@Suite("Worker end to end (embedded broker + PostgreSQL)", .enabled(if: IsolatedDatabase.enabled, "needs scripts/test.sh"), .timeLimit(.minutes(10)))
struct WorkerEndToEndTests {
    @Test("every failure code, several jobs per user out of order: tables, dead letters and offsets exactly right")
    func generatedLoad() throws {
        let pipeline = try Pipeline()
        let expectation = try pipeline.generate(jobs: 3000)
        #expect(Set(LoadGenerator.Kind.allCases.map(\.rawValue)) == Set(FailureReason.allCases.map(\.rawValue) + ["ok"]), "the generator knows every code")
        #expect(Set(expectation.counts.keys) == Set(LoadGenerator.Kind.allCases.map(\.rawValue)), "the load has every code")

        let summary = try WorkerRun(pipeline.configuration(group: "g1")).wait()
        #expect(summary.drained)
        #expect(summary.total == 3000)
        #expect(summary.abandoned == 0)
        for (kind, count) in expectation.counts {
            #expect(summary.outcomes[kind] == count, "outcome \(kind)")
        }
        try pipeline.expectTables(expectation)
        try pipeline.expectDeadLetters(expectation, group: "g1", exactly: true)
        try pipeline.expectCommitted(group: "g1")

        // A replay of the whole topic by another group changes nothing in the tables.
        _ = try WorkerRun(pipeline.configuration(group: "g2")).wait()
        try pipeline.expectTables(expectation)
    }

    @Test("two workers share the partitions, one stops mid-run: nothing lost")
    func twoWorkers() throws {
        let pipeline = try Pipeline(partitions: 6)
        let expectation = try pipeline.generate(jobs: 6000, seed: 11)
        var first = pipeline.configuration(group: "shared", exitAtEnd: false)
        first.batchSize = 100
        let a = try WorkerRun(first)
        try waitUntil(timeout: 60, "first worker progress") { try pipeline.members().count > 200 }
        let b = try WorkerRun(pipeline.configuration(group: "shared", exitAtEnd: false))
        try waitUntil(timeout: 60, "second worker joined") { !b.worker.consumerAssignment.isEmpty }
        a.worker.stop()
        let summaryA = try a.wait()
        #expect(summaryA.abandoned == 0, "a graceful stop finishes in-flight work")
        // The survivor now owns every partition; it is done when all of them are drained.
        try waitUntil(timeout: 120, "second worker drained every partition") {
            b.worker.consumerAssignment.count == 6 && b.worker.isDrained
        }
        b.worker.stop()
        _ = try b.wait()
        try pipeline.expectTables(expectation)
        try pipeline.expectDeadLetters(expectation, group: "shared", exactly: false)
        try pipeline.expectCommitted(group: "shared")
    }
}
