import ArgumentParser
import DecryptdStore
import Foundation
import PhoneDecryption

/// `decryptd report`: failures by reason, as a table, JSON or a self-contained HTML page.
struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract:
            "Failures by reason over a window (count, share, recovered, first/last seen) and by hour; jobs waiting for their session key now, and those healed.",
        discussion:
            "Reads decrypt_failures, parked_jobs and parked_job_endings, so it works while workers run. --since takes a number and a unit: 90s, 30m, 24h, 7d or 2w (at most a century)."
    )

    enum Format: String, ExpressibleByArgument, CaseIterable { case table, json, html }

    @OptionGroup var database: DatabaseOptions

    @Option(help: "Window: 90s, 30m, 24h, 7d, 2w. Env: DECRYPTD_REPORT_SINCE. Default: 24h.")
    var since: String?

    @Option(help: "table, json or html. Env: DECRYPTD_REPORT_FORMAT. Default: table.")
    var format: Format?

    func run() throws {
        let since = since ?? Environment.value("DECRYPTD_REPORT_SINCE") ?? "24h"
        let format = try format ?? Environment.choice("DECRYPTD_REPORT_FORMAT", of: Format.self) ?? .table
        guard let seconds = Self.seconds(since) else {
            throw CommandError.usage("bad --since \(since): use a number and s, m, h, d or w, e.g. 24h, at most 36500d")
        }
        let connection = try database.connectedConnection()
        let report: FailureReport
        let parking: ReportRendering.Parking
        do {
            let database = DecryptdDatabase(connection: connection)
            report = try database.failureReport(windowSeconds: seconds)
            parking = .init(now: try database.parkedSummary(), ended: try database.parkedEndings(windowSeconds: seconds))
        } catch {
            throw CommandError.failure("report failed", cause: error)
        }
        switch format {
        case .table: print(ReportRendering.table(report, parking: parking, since: since))
        case .json: print(ReportRendering.json(report, parking: parking, since: since))
        case .html: print(ReportRendering.html(report, parking: parking, since: since))
        }
    }

    /// The longest window: a century (beyond it PostgreSQL's interval arithmetic overflows).
    static let longestWindow = 36_500 * 86_400

    /// A window such as 90s, 30m, 24h, 7d or 2w, in seconds; nil when it is not one, or is longer
    /// than ``longestWindow``.
    static func seconds(_ text: String) -> Int? {
        let units: [Character: Int] = ["s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800]
        guard let unit = text.last.flatMap({ units[$0] }),
            let value = Int(text.dropLast()), value > 0, value <= longestWindow / unit
        else { return nil }
        return value * unit
    }
}
