import DecryptdStore
import DecryptdTestSupport
import Foundation
import KafkaClient
import PhoneDecryption
import Testing

@testable import DecryptdWorker
@testable import SyntheticLoad

@Suite("Pending jobs: parsing a message")
struct PendingJobTests {
    @Test(
        "an unserved appid shows in the failure detail only when it could be an appid",
        arguments: [
            ("wxother", "wxother"),
            (String(repeating: "w", count: 64), String(repeating: "w", count: 64)),
            (String(repeating: "w", count: 65), "of 65 bytes"),
            ("wx other", "of 8 bytes"),
            (#"wx\n1"#, "of 4 bytes"),  // JSON escapes, decoded before the check
            (#"wx\u00e91"#, "of 5 bytes"),
        ])
    func unservedAppidDetail(appid: String, shown: String) {
        let value = #"{"openid":"o1","appid":"\#(appid)","encryptedData":"AAAA","iv":"AAAAAAAAAAAAAAAAAAAAAA=="}"#
        let job = PendingJob(jobMessage(0, partition: 0, value: value), appids: ["wx1"])
        guard case .failure(let failure) = job.outcome else {
            Issue.record("expected appid_mismatch, got \(String(describing: job.outcome))")
            return
        }
        #expect(failure.reason == .appidMismatch)
        #expect(failure.detail == "job appid \(shown) is not one this worker serves")
    }
}
