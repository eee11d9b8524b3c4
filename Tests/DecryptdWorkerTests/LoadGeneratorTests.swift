import DecryptdStore
import DecryptdTestSupport
import Foundation
import KafkaClient
import PhoneDecryption
import Testing

@testable import DecryptdWorker
@testable import SyntheticLoad

@Suite("Load generator")
struct LoadGeneratorTests {
    @Test("loadgen makes its load a chunk at a time, and the same seed gives the same load")
    func loadInChunks() {
        var plan = LoadGenerator.Plan(jobs: 2005, appid: "wx1")
        plan.chunkSize = 1002
        #expect(plan.chunkSize == 1000, "a multiple of 5")
        plan.faults = [.invalidSessionKey: 0.05, .badPadding: 0.05]
        func chunks(seed: UInt64) -> [(records: [KafkaRecord], sessions: [String])] {
            plan.seed = seed
            var maker = LoadGenerator.JobMaker(LoadGenerator(plan: plan))
            var chunks: [(records: [KafkaRecord], sessions: [String])] = []
            while maker.next < plan.jobs {
                let (jobs, sessions, _) = maker.chunk()
                chunks.append((jobs.map(\.record), sessions.map { "\($0.user.openid) \($0.sessionKey)" }))
            }
            return chunks
        }
        let first = chunks(seed: 3)
        #expect(first.map(\.records.count) == [1000, 1000, 5])
        #expect(first[0].sessions.count > 20, "invalid_session_key jobs bring their own broken keys")
        let again = chunks(seed: 3)
        #expect(first.map(\.records) == again.map(\.records))
        #expect(first.map(\.sessions) == again.map(\.sessions))
        #expect(chunks(seed: 4)[0].records != first[0].records)
        // Users derive from the seed and their number alone.
        let generator = LoadGenerator(plan: plan)
        #expect(generator.user(17).storedKeys == generator.user(17).storedKeys)
        #expect(generator.user(17).secret != generator.user(18).secret)
    }
}
