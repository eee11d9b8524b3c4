import ArgumentParser
import Foundation
import PhoneDecryption

/// `decryptd decrypt`: the support tool over the decryption core.
struct DecryptCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "decrypt",
        abstract: "Decrypt one payload given by flags, or JSON lines on stdin.",
        discussion: """
            With --iv and --encrypted-data, decrypts that payload. Otherwise reads JSON lines on stdin, \
            each an object with "appid" (string), "session_key" (string) or "session_keys" (array of \
            strings, newest first), "iv" and "encryptedData" (base64 strings).

            Prints one JSON line per input line: on success "ok": true with "phoneNumber", \
            "purePhoneNumber", "countryCode", "watermarkTimestamp", "keyIndex" (which key worked) and \
            "repaired" (whether base64 needed repair); otherwise "ok": false with "reason" (a failure \
            code) and "detail". A line that is not such an object gives reason malformed_job and the \
            run goes on. Blank lines are skipped. Exit 0 when it ran (whatever the outcomes), 2 on \
            unusable flags.
            """
    )

    @Option(help: "Expected appid, the default for lines that carry none. Env: WECHAT_APPIDS (its first entry).")
    var appid: String?

    @Option(
        name: .customLong("session-key"),
        help:
            "A candidate session key, newest first (repeatable). Env: DECRYPTD_SESSION_KEYS, comma-separated (keeps keys out of the process list)."
    )
    var sessionKeys: [String] = []

    @Option(help: "The iv, base64. Env: DECRYPTD_IV.")
    var iv: String?

    @Option(name: .customLong("encrypted-data"), help: "The encryptedData, base64. Env: DECRYPTD_ENCRYPTED_DATA.")
    var encryptedData: String?

    func run() throws {
        let defaultAppid = appid ?? Environment.appids.first
        let sessionKeys = sessionKeys.isEmpty ? Environment.list("DECRYPTD_SESSION_KEYS") : sessionKeys
        let iv = iv ?? Environment.value("DECRYPTD_IV")
        let encryptedData = encryptedData ?? Environment.value("DECRYPTD_ENCRYPTED_DATA")
        let decryptor = PhoneDecryptor()
        if iv != nil || encryptedData != nil || !sessionKeys.isEmpty {
            guard let iv, let encryptedData else {
                throw CommandError.usage("--iv and --encrypted-data go together (or give neither and pipe JSON lines)")
            }
            guard let defaultAppid else { throw CommandError.usage("--appid is required with --iv (or set WECHAT_APPIDS)") }
            guard !sessionKeys.isEmpty else { throw CommandError.usage("--session-key is required with --iv") }
            let request = DecryptRequest(appid: defaultAppid, sessionKeys: sessionKeys, iv: iv, encryptedData: encryptedData)
            print(decryptor.outputLine(for: .success(request)))
            return
        }
        while let line = readLine(strippingNewline: true) {
            var line = line
            if line.allSatisfy({ $0.isWhitespace }) { continue }
            let output = line.withUTF8 { bytes in
                decryptor.outputLine(for: DecryptRequest.parse(bytes, defaultAppid: defaultAppid))
            }
            print(output)
        }
    }
}
