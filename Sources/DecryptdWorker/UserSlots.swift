import DecryptdStore

/// Numbers distinct users in order of first appearance: an open-addressing table over the jobs'
/// precomputed openid hashes, so a job is not hashed again and no `UserKey` is made for a user
/// already seen (a `[UserKey: Int32]` spent more on hashing and reference counting than on
/// anything else in the lookup stage).
///
/// Users are equal when their identifiers are equal byte for byte, as in the tables ("C"
/// collation) and like the lane hash: Swift's `==` on strings would make two spellings of the same
/// Unicode text one user, though PostgreSQL keeps their sessions apart.
struct UserSlots {
    private(set) var users: [UserKey] = []
    /// Slot + 1 of the user at each position; 0 is empty.
    private var table: [Int32]
    private let mask: Int

    /// `capacity`: at least the number of distinct users to come (the table never grows).
    init(capacity: Int) {
        var size = 16
        while size < capacity * 2 { size <<= 1 }
        table = [Int32](repeating: 0, count: size)
        mask = size - 1
        users.reserveCapacity(capacity)
    }

    /// The user's slot, numbering it when it is new. `hash` is ``WorkBatch/laneHash(_:)`` of `openid`.
    mutating func slot(appid: String, openid: String, hash: UInt64) -> Int32 {
        var position = Int(truncatingIfNeeded: hash) & mask
        while true {
            let entry = table[position]
            if entry == 0 {
                precondition(users.count < table.count / 2, "more users than the capacity given")
                users.append(UserKey(appid: appid, openid: openid))
                table[position] = Int32(users.count)
                return Int32(users.count - 1)
            }
            if users[Int(entry) - 1].openid.utf8.elementsEqual(openid.utf8), users[Int(entry) - 1].appid.utf8.elementsEqual(appid.utf8) {
                return entry - 1
            }
            position = (position + 1) & mask
        }
    }
}
