import DecryptdStore
import DecryptdTestSupport
import Foundation
import KafkaClient
import PhoneDecryption
import Testing

@testable import DecryptdWorker
@testable import SyntheticLoad

@Suite("User slots")
struct UserSlotsTests {
    @Test("user slots: equal users share a slot, different ones never do, also when their hashes collide")
    func userSlots() {
        var slots = UserSlots(capacity: 3000)
        var expected: [UserKey: Int32] = [:]
        for index in 0..<3000 {
            // Users repeat; the same openid under two appids is two users; every third hash collides.
            let user = UserKey(appid: index % 7 == 0 ? "wx2" : "wx1", openid: "o\(index % 900)")
            let hash = index % 3 == 0 ? 42 : WorkBatch.laneHash(user.openid)
            let slot = slots.slot(appid: user.appid, openid: user.openid, hash: hash)
            #expect(slots.users[Int(slot)] == user)
            if let earlier = expected[user] { #expect(slot == earlier) } else { expected[user] = slot }
        }
        #expect(slots.users.count == expected.count)
        #expect(Set(slots.users).count == slots.users.count, "each user once")

        // Two spellings of one Unicode text (precomposed and decomposed é) are two openids in
        // PostgreSQL, so two users here, even when their hashes collide.
        var spellings = UserSlots(capacity: 2)
        let precomposed = spellings.slot(appid: "wx1", openid: "caf\u{E9}", hash: 7)
        let decomposed = spellings.slot(appid: "wx1", openid: "cafe\u{301}", hash: 7)
        #expect(precomposed != decomposed)
        #expect(spellings.slot(appid: "wx1", openid: "cafe\u{301}", hash: 7) == decomposed)
    }
}
