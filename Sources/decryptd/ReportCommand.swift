import ArgumentParser
import DecryptdStore
import Foundation
import PhoneDecryption

/// `decryptd report`: failures by reason, as a table, JSON or a self-contained HTML page.
struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Failures by reason over a window (count, share, recovered, first/last seen) and by hour.",
        discussion: "Reads decrypt_failures, so it works while workers run. --since takes 90s, 30m, 24h or 7d."
    )

    enum Format: String, ExpressibleByArgument, CaseIterable { case table, json, html }

    @OptionGroup var database: DatabaseOptions

    @Option(help: "Window: 90s, 30m, 24h, 7d. Env: DECRYPTD_REPORT_SINCE. Default: 24h.")
    var since: String?

    @Option(help: "table, json or html. Env: DECRYPTD_REPORT_FORMAT. Default: table.")
    var format: Format?

    func run() throws {
        let since = since ?? Environment.value("DECRYPTD_REPORT_SINCE") ?? "24h"
        let format = try format ?? Environment.choice("DECRYPTD_REPORT_FORMAT", of: Format.self) ?? .table
        guard let seconds = Self.seconds(since) else { throw UsageError("bad --since \(since): use a number and s, m, h or d, e.g. 24h") }
        let connection = try database.connectedConnection()
        let report: FailureReport
        do {
            report = try DecryptdDatabase(connection: connection).failureReport(windowSeconds: seconds)
        } catch {
            throw RuntimeFailure("report failed: \(error.description)")
        }
        switch format {
        case .table: print(ReportRendering.table(report, since: since))
        case .json: print(ReportRendering.json(report, since: since))
        case .html: print(ReportRendering.html(report, since: since))
        }
    }

    static func seconds(_ text: String) -> Int? {
        guard let unit = text.last, let value = Int(text.dropLast()), value > 0 else { return nil }
        switch unit {
        case "s": return value
        case "m": return value * 60
        case "h": return value * 3600
        case "d": return value * 86400
        default: return nil
        }
    }
}
