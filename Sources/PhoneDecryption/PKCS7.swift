/// Strict PKCS#7 unpadding for 16-byte blocks.
public enum PKCS7 {
    /// The length of the message without padding, or `nil` when the padding is not exactly
    /// `n` bytes of value `n` with `1 <= n <= 16`.
    @inlinable
    public static func unpaddedCount(_ plaintext: UnsafeBufferPointer<UInt8>) -> Int? {
        guard let last = plaintext.last, last >= 1, last <= 16, Int(last) <= plaintext.count else { return nil }
        var difference: UInt8 = 0
        for index in plaintext.count - Int(last)..<plaintext.count {
            difference |= plaintext[index] ^ last
        }
        return difference == 0 ? plaintext.count - Int(last) : nil
    }
}
