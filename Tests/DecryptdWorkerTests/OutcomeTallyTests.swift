import DecryptdStore
import DecryptdTestSupport
import Foundation
import KafkaClient
import PhoneDecryption
import Testing

@testable import DecryptdWorker
@testable import SyntheticLoad

@Suite("Outcome tally")
struct OutcomeTallyTests {
    @Test("outcome tally: jobs by outcome name, fallbacks, repairs by kind")
    func outcomeTally() {
        func job(_ outcome: JobOutcome) -> PendingJob {
            var pending = PendingJob(jobMessage(0, partition: 0, value: "{}"), appids: ["wx1"])
            pending.outcome = outcome
            return pending
        }
        func payload(keyIndex: Int = 0, repairs: Base64Repairs = []) -> JobOutcome {
            .success(
                PhonePayload(
                    phoneNumber: "1", purePhoneNumber: "1", countryCode: "86", watermarkTimestamp: 1, keyIndex: keyIndex, repairs: repairs))
        }
        let tally = OutcomeTally([
            job(payload()), job(payload(keyIndex: 1)), job(payload(keyIndex: 2, repairs: [.spaceAsPlus, .urlSafeAlphabet])),
            job(payload(repairs: [.urlSafeAlphabet])),
            job(.failure(DecryptFailure(.badPadding, ""))), job(.failure(DecryptFailure(.badPadding, ""))),
            job(.failure(DecryptFailure(.appidMismatch, ""))),
        ])
        #expect(tally.counts == ["ok": 4, "bad_padding": 2, "appid_mismatch": 1])
        #expect(tally.fallbacks == 2)
        let byName = Dictionary(uniqueKeysWithValues: zip(Base64Repairs.named.map(\.1), tally.repairs))
        #expect(byName["space_as_plus"] == 1 && byName["url_safe_alphabet"] == 2)
        #expect(tally.repairs.reduce(0, +) == 3)
        #expect(OutcomeTally([]).counts.isEmpty)
    }
}
