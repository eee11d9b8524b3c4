import DecryptdStore
import Testing

@Suite("Outcome batches")
struct OutcomeBatchTests {
    func member(_ openid: String, _ phone: String, _ timestamp: Int64, appid: String = "wx1") -> MemberRecord {
        MemberRecord(
            user: UserKey(appid: appid, openid: openid), phoneNumber: phone, purePhoneNumber: phone,
            countryCode: "86", watermarkTimestamp: timestamp)
    }

    @Test("one row per user: newest watermark, the later entry on a tie; sorted byte by byte")
    func newestPerUser() {
        let batch = OutcomeBatch(members: [
            member("bob", "b1", 10), member("alice", "a1", 20), member("bob", "b2", 30),
            member("Zed", "z1", 5), member("alice", "a2", 20), member("bob", "b3", 20),
            member("alice", "x", 99, appid: "wx0"),
        ])
        let rows = batch.newestMemberPerUser
        #expect(rows.map(\.user.appid) == ["wx0", "wx1", "wx1", "wx1"])
        #expect(rows.map(\.user.openid) == ["alice", "Zed", "alice", "bob"], "uppercase sorts first, as in the C collation")
        #expect(rows.map(\.phoneNumber) == ["x", "z1", "a2", "b2"])
    }

    @Test("identifiers compare as bytes: two spellings of the same text stay two users")
    func bytesNotCanonicalEquivalence() {
        let composed = "caf\u{E9}"
        let decomposed = "cafe\u{301}"
        #expect(composed == decomposed, "Swift calls them equal")
        let rows = OutcomeBatch(members: [member(composed, "1", 1), member(decomposed, "2", 1)]).newestMemberPerUser
        #expect(rows.count == 2)
        #expect(Set(rows.map(\.phoneNumber)) == ["1", "2"])
    }
}
