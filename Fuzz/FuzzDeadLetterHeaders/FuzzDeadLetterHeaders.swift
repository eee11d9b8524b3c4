import DeadLetterFormat
import Foundation
import FuzzDriver
import KafkaClient
import PhoneDecryption

/// libFuzzer target: the headers of a record on the dead-letter topic, as `reprocess` reads them
/// (``DeadLetter/source(of:)``) and as its next dead letter rewrites them.
///
/// Input: NUL-separated fields, taken in pairs as header name and value (a value of the single
/// byte 0xFF is a header without a value). Properties: the source is the record's own coordinates
/// or names a legal topic; the dead letter built from the record carries each `decrypt.*` header
/// once and the record's other headers unchanged, in order; reading that dead letter gives back
/// the same source; shrinking it ends, with value, key and original headers gone.
func fuzzDeadLetterHeaders(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data else { return 0 }
    let fields = UnsafeBufferPointer(start: data, count: size).split(separator: 0, omittingEmptySubsequences: false)
    var headers: [KafkaHeader] = []
    var index = fields.startIndex
    while index + 1 < fields.endIndex {
        let value = Array(fields[index + 1])
        headers.append(KafkaHeader(String(decoding: fields[index], as: UTF8.self), value == [0xFF] ? nil : value))
        index += 2
    }
    let letter = KafkaMessage(
        id: KafkaMessageID(topic: "wechat.phone.dlq", partition: 1, offset: 42), key: Array("o-user".utf8),
        value: Array(#"{"openid":"o-user"}"#.utf8), headers: headers, timestamp: 1_764_000_000_000)

    let source = DeadLetter.source(of: letter)
    let own =
        source == DeadLetter.Source(topic: letter.topic, partition: letter.partition, offset: letter.offset, timestamp: letter.timestamp)
    precondition(own || DeadLetter.isTopicName(source.topic), "a source that is neither the record's own nor a legal topic")

    let next = DeadLetter.record(
        for: letter, failure: DecryptFailure(.badPadding, "replayed"), source: source, attempts: 2, topic: "wechat.phone.dlq",
        group: "decryptd-reprocess", failedAt: "2026-12-04T00:00:00.000Z")
    let added = next.headers.filter { $0.name.hasPrefix("decrypt.") }.map(\.name)
    precondition(Set(added).count == added.count, "a decrypt.* header twice: \(added)")
    let original = headers.filter { !$0.name.hasPrefix("decrypt.") }
    precondition(Array(next.headers.prefix(original.count)) == original, "the record's own headers changed")

    let reread = DeadLetter.source(
        of: KafkaMessage(id: letter.id, key: next.key, value: next.value, headers: next.headers, timestamp: letter.timestamp))
    precondition(reread == source, "the dead letter's source reads back as another: \(reread) for \(source)")

    var shrinking = next
    var steps = 0
    while let smaller = DeadLetter.shrunk(shrinking) {
        shrinking = smaller
        steps += 1
        precondition(steps <= 3, "shrinking does not end")
    }
    precondition(shrinking.value == nil && shrinking.key == nil && !shrinking.headers.contains { !$0.name.hasPrefix("decrypt.") })
    return 0
}

// The entry point (SwiftPM names it FuzzDeadLetterHeaders_main): libFuzzer runs the target from here.
exit(runFuzzer(CommandLine.argc, CommandLine.unsafeArgv) { data, size in fuzzDeadLetterHeaders(data, size) })
