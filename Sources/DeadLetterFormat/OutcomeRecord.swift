public import KafkaClient
public import PhoneDecryption

/// SPEC's outcome record: what became of a job, for the next step of a signup pipeline. Key: the
/// openid. Value: `{"status", "kind", "appid", "openid", "requestId"?, "reason"?, "waitedMs"?,
/// "source": {"topic", "partition", "offset", "timestamp"}}`. Headers: the job's own. Never a
/// phone number, a key, a code or a token: only the job's identifiers and where it came from.
public enum OutcomeRecord {
    public enum Status: String, Sendable, CaseIterable {
        case ok, failed, parked
    }

    /// The record announcing `status` for the job in `message` (the original job, as consumed).
    /// `appid` and `openid` as the job named them (`nil` for a value that was not a job), `reason`
    /// for failed and parked jobs, `waitedMilliseconds` for a job that was parked.
    public static func record(
        for message: KafkaMessage, status: Status, kind: JobKind?, appid: String?, openid: String?, reason: FailureReason? = nil,
        waitedMilliseconds: Int64? = nil, topic: String
    ) -> KafkaRecord {
        var writer = JSONWriter()
        writer.beginObject()
        writer.field("status", status.rawValue)
        writer.key("kind")
        if let kind { writer.string(kind.rawValue) } else { writer.null() }
        writer.key("appid")
        if let appid { writer.string(appid) } else { writer.null() }
        writer.key("openid")
        if let openid { writer.string(openid) } else { writer.null() }
        if let requestId = requestId(of: message) { writer.field("requestId", requestId) }
        if let reason { writer.field("reason", reason.rawValue) }
        if let waitedMilliseconds { writer.field("waitedMs", waitedMilliseconds) }
        writer.key("source")
        writer.beginObject()
        writer.field("topic", message.topic)
        writer.field("partition", message.partition)
        writer.field("offset", message.offset)
        writer.key("timestamp")
        if let timestamp = message.timestamp { writer.integer(timestamp) } else { writer.null() }
        writer.endObject()
        writer.endObject()
        return KafkaRecord(
            topic: topic, key: openid.map { Array($0.utf8) } ?? message.key, value: Array(writer.text.utf8), headers: message.headers)
    }

    /// The job's `requestId`, when it is a job and has one.
    static func requestId(of message: KafkaMessage) -> String? {
        message.withValue { value in
            guard let value, case .success(let job) = DecryptJob.locate(value), let token = job.requestId else { return nil }
            return job.string(token, in: value)
        }
    }
}
