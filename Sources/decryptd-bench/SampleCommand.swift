import ArgumentParser
import PhoneDecryption

/// `decryptd-bench sample`: JSON lines for `decryptd decrypt`, one per fault kind in turn.
struct SampleCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sample",
        abstract: "Print synthetic decrypt-tool input lines (every fault kind, plus one malformed line)."
    )

    @Option(help: "Lines to print.")
    var count = 12

    @Option(help: "The appid the payloads are for.")
    var appid = "wx6ede2086ee29a89f"

    func run() {
        var synthetic = SyntheticPayloads(appid: appid, generator: SystemRandomNumberGenerator())
        let faults = SyntheticPayloads<SystemRandomNumberGenerator>.Fault.allCases
        for index in 0..<count {
            if index % (faults.count + 1) == faults.count {
                print(#"{"appid": "\#(appid)", "iv": 42}"#)
                continue
            }
            let payload = synthetic.make(faults[index % (faults.count + 1)])
            var writer = JSONWriter()
            writer.beginObject()
            writer.field("appid", appid)
            writer.key("session_keys")
            writer.beginArray()
            for key in payload.sessionKeys { writer.string(key) }
            writer.endArray()
            writer.field("iv", payload.iv)
            writer.field("encryptedData", payload.encryptedData)
            writer.endObject()
            print(writer.text)
        }
    }
}
