import DecryptdStore
import Foundation
import PhoneDecryption

/// The three shapes of `decryptd report`.
enum ReportRendering {
    static func percent(_ part: Int, _ whole: Int) -> String {
        whole == 0 ? "0.0%" : String(format: "%.1f%%", Double(part) / Double(whole) * 100)
    }

    /// Jobs waiting for their session key now, and those that stopped waiting in the window.
    struct Parking {
        var now: ParkedSummary
        var ended: ParkedEndings

        static let none = Parking(
            now: ParkedSummary(rows: []),
            ended: ParkedEndings(healed: 0, expired: 0, medianWaitMilliseconds: 0, p99WaitMilliseconds: 0, healedHourly: []))

        var isEmpty: Bool { now.total == 0 && ended.healed == 0 && ended.expired == 0 }
    }

    static func seconds(_ milliseconds: Int64) -> String { String(format: "%.1f s", Double(milliseconds) / 1000) }

    /// The table's lines about waiting jobs.
    static func parkingLines(_ parking: Parking, since: String) -> [String] {
        let reasons = parking.now.rows.map { "\($0.reason) \($0.count)" }.joined(separator: ", ")
        return [
            "waiting for a session key now: \(parking.now.total)"
                + (parking.now.total > 0 ? " (\(reasons)), oldest \(ParkedCommand.age(parking.now.oldestSeconds))" : ""),
            "healed in the last \(since): \(parking.ended.healed)"
                + (parking.ended.healed > 0
                    ? " (wait: median \(seconds(parking.ended.medianWaitMilliseconds)), p99 \(seconds(parking.ended.p99WaitMilliseconds)))"
                    : "")
                + "; expired (failed at their deadline): \(parking.ended.expired)",
        ]
    }

    // MARK: - Table

    static func table(_ report: FailureReport, parking: Parking = .none, since: String) -> String {
        guard report.total > 0 else {
            let none = "no failures in the last \(since)"
            return parking.isEmpty ? none : ([none, ""] + parkingLines(parking, since: since)).joined(separator: "\n")
        }
        var lines = [
            "failures in the last \(since): \(report.total) (encrypted jobs \(report.encrypted), code jobs \(report.code)), recovered \(report.recovered) (\(percent(report.recovered, report.total)))",
            "",
        ]
        let header = [
            "reason".padding(toLength: 24, withPad: " ", startingAt: 0), "count".leftPadded(8), "share".leftPadded(8),
            "encrypted".leftPadded(10), "code".leftPadded(7), "recovered".leftPadded(10), "  first seen            last seen",
        ]
        lines.append(header.joined())
        for row in report.rows {
            lines.append(
                row.reason.padding(toLength: 24, withPad: " ", startingAt: 0) + String(row.count).leftPadded(8)
                    + percent(row.count, report.total).leftPadded(8) + String(row.encrypted).leftPadded(10) + String(row.code).leftPadded(7)
                    + percent(row.recovered, row.count).leftPadded(10) + "  \(row.firstSeen)  \(row.lastSeen)")
        }
        let owned = report.rows.compactMap { row in owners[row.reason].map { (row.reason, $0) } }
        if !owned.isEmpty {
            lines.append("")
            lines.append("who acts:")
            for (reason, owner) in owned { lines.append("  \(reason.padding(toLength: 20, withPad: " ", startingAt: 0))  \(owner)") }
        }
        lines.append("")
        lines.append("by hour (UTC):")
        let hours = Dictionary(grouping: report.hourly, by: \.hour).sorted { $0.key < $1.key }
        let peak = hours.map { $0.value.reduce(0) { $0 + $1.count } }.max() ?? 1
        for (hour, buckets) in hours {
            let count = buckets.reduce(0) { $0 + $1.count }
            let bar = String(repeating: "#", count: max(1, count * 40 / max(peak, 1)))
            lines.append("  \(hour)  \(String(count).leftPadded(7))  \(bar)")
        }
        if !parking.isEmpty { lines += [""] + parkingLines(parking, since: since) }
        return lines.joined(separator: "\n")
    }

    // MARK: - JSON

    static func json(_ report: FailureReport, parking: Parking = .none, since: String) -> String {
        var writer = JSONWriter()
        writer.beginObject()
        writer.field("since", since)
        writer.field("window_seconds", report.windowSeconds)
        writer.field("total", report.total)
        writer.field("recovered", report.recovered)
        writer.key("by_kind")
        writer.beginObject()
        writer.field("encrypted", report.encrypted)
        writer.field("code", report.code)
        writer.endObject()
        writer.key("reasons")
        writer.beginArray()
        for row in report.rows {
            writer.beginObject()
            writer.field("reason", row.reason)
            writer.field("count", row.count)
            writer.field("share", report.total == 0 ? 0 : Double(row.count) / Double(report.total))
            writer.field("recovered", row.recovered)
            writer.field("recovered_share", row.count == 0 ? 0 : Double(row.recovered) / Double(row.count))
            writer.field("first_seen", row.firstSeen)
            writer.field("last_seen", row.lastSeen)
            writer.key("by_kind")
            writer.beginObject()
            writer.field("encrypted", row.encrypted)
            writer.field("code", row.code)
            writer.endObject()
            writer.endObject()
        }
        writer.endArray()
        writer.key("hourly")
        writer.beginArray()
        for bucket in report.hourly {
            writer.beginObject()
            writer.field("hour", bucket.hour)
            writer.field("reason", bucket.reason)
            writer.field("count", bucket.count)
            writer.endObject()
        }
        writer.endArray()
        writer.key("parked")
        writer.beginObject()
        writer.field("now", parking.now.total)
        writer.field("oldest_seconds", Int(parking.now.oldestSeconds))
        writer.key("by_reason")
        writer.beginArray()
        for row in parking.now.rows {
            writer.beginObject()
            writer.field("reason", row.reason)
            writer.field("count", row.count)
            writer.field("oldest_seconds", Int(row.oldestSeconds))
            writer.endObject()
        }
        writer.endArray()
        writer.field("healed", parking.ended.healed)
        writer.field("expired", parking.ended.expired)
        writer.field("median_wait_ms", parking.ended.medianWaitMilliseconds)
        writer.field("p99_wait_ms", parking.ended.p99WaitMilliseconds)
        writer.key("healed_hourly")
        writer.beginArray()
        for hour in parking.ended.healedHourly {
            writer.beginObject()
            writer.field("hour", hour.hour)
            writer.field("count", hour.count)
            writer.endObject()
        }
        writer.endArray()
        writer.endObject()
        writer.endObject()
        return writer.text
    }

    // MARK: - HTML

    static let colors: [String: String] = [
        "malformed_job": "#8c564b", "session_not_found": "#1f77b4", "invalid_session_key": "#9467bd", "invalid_iv": "#e377c2",
        "invalid_ciphertext": "#7f7f7f", "bad_padding": "#d62728", "invalid_plaintext": "#bcbd22", "appid_mismatch": "#ff7f0e",
        "code_invalid": "#17becf", "code_expired": "#2ca02c", "invalid_phone_info": "#aec7e8", "exchange_not_configured": "#c49c94",
        "wechat_error": "#393b79", "stale_session_key": "#ff9896",
    ]

    /// Who acts on a reason, and how, for the reasons whose owner is not obvious.
    static let owners: [String: String] = [
        "stale_session_key":
            "login service: it missed the user's newest session_key (store every key code2Session returns); then reprocess --reason stale_session_key",
        "bad_padding":
            "client: the payload was not made with the user's current key (checksession said the stored key is current), or could not be told: see the detail",
        "session_not_found": "login service: no key stored for the user yet (parking waits for it); reprocess once it is stored",
    ]

    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }

    /// A single self-contained page: summary, a stacked bar chart by hour (inline SVG), the table.
    static func html(_ report: FailureReport, parking: Parking = .none, since: String) -> String {
        let reasons = report.rows.map(\.reason)
        var grouped = Dictionary(grouping: report.hourly, by: \.hour)
        for hour in parking.ended.healedHourly where grouped[hour.hour] == nil { grouped[hour.hour] = [] }
        let hours = grouped.sorted { $0.key < $1.key }
        let healedByHour = Dictionary(uniqueKeysWithValues: parking.ended.healedHourly.map { ($0.hour, $0.count) })
        let peak = max(1, hours.map { $0.value.reduce(0) { $0 + $1.count } }.max() ?? 1, healedByHour.values.max() ?? 1)
        let width = 760
        let height = 260
        let left = 50
        let bottom = 40
        let slot = hours.isEmpty ? 0 : min(48, Double(width - left - 10) / Double(hours.count))
        var bars = ""
        for (index, (hour, buckets)) in hours.enumerated() {
            var y = Double(height - bottom)
            let x = Double(left) + Double(index) * slot + slot * 0.1
            for reason in reasons {
                guard let count = buckets.first(where: { $0.reason == reason })?.count, count > 0 else { continue }
                let h = Double(count) / Double(peak) * Double(height - bottom - 20)
                y -= h
                bars +=
                    ##"<rect x="\##(x)" y="\##(y)" width="\##(slot * 0.8)" height="\##(h)" fill="\##(colors[reason] ?? "#333")"><title>\##(escape(hour)) \##(escape(reason)): \##(count)</title></rect>"##
            }
            if let healed = healedByHour[hour], healed > 0 {
                // The healed series: a marker per hour at its count, on the same scale.
                let cy = Double(height - bottom) - Double(healed) / Double(peak) * Double(height - bottom - 20)
                bars +=
                    ##"<circle class="healed" cx="\##(x + slot * 0.4)" cy="\##(cy)" r="4" fill="#2e9e44" stroke="#fff"><title>\##(escape(hour)) healed: \##(healed)</title></circle>"##
            }
            if hours.count <= 24 || index % max(1, hours.count / 12) == 0 {
                let label = String(hour.dropFirst(11).prefix(5))
                bars +=
                    ##"<text x="\##(x + slot * 0.4)" y="\##(height - bottom + 16)" font-size="11" text-anchor="middle">\##(escape(label))</text>"##
            }
        }
        let axis =
            ##"<line x1="\##(left)" y1="\##(height - bottom)" x2="\##(width - 10)" y2="\##(height - bottom)" stroke="#999"/>"##
            + ##"<text x="\##(left - 6)" y="24" font-size="11" text-anchor="end">\##(peak)</text><text x="\##(left - 6)" y="\##(height - bottom)" font-size="11" text-anchor="end">0</text>"##
        let legend =
            reasons.map { ##"<span class="key"><i style="background:\##(colors[$0] ?? "#333")"></i>\##(escape($0))</span>"## }
            .joined()
            + (parking.ended.healedHourly.isEmpty
                ? ""
                : ##"<span class="key"><i style="background:#2e9e44;border-radius:5px"></i>healed (waited for a late session key)</span>"##)
        let rows = report.rows.map { row in
            "<tr><td><i class=\"dot\" style=\"background:\(colors[row.reason] ?? "#333")\"></i>\(escape(row.reason))</td><td>\(row.count)</td><td>\(percent(row.count, report.total))</td>"
                + "<td>\(row.encrypted)</td><td>\(row.code)</td>"
                + "<td>\(row.recovered) (\(percent(row.recovered, row.count)))</td><td>\(escape(row.firstSeen))</td><td>\(escape(row.lastSeen))</td></tr>"
        }.joined()
        return """
            <!doctype html>
            <html lang="en"><head><meta charset="utf-8"><title>decryptd failures, last \(escape(since))</title>
            <style>
            body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:32px;color:#222;max-width:820px}
            h1{font-size:22px;margin:0 0 4px} .sub{color:#666;margin:0 0 20px}
            .cards{display:flex;gap:16px;margin-bottom:20px}.card{border:1px solid #ddd;border-radius:8px;padding:12px 16px}
            .card b{display:block;font-size:24px}
            table{border-collapse:collapse;width:100%;margin-top:16px;font-size:14px}
            th,td{text-align:left;padding:6px 8px;border-bottom:1px solid #eee} th{color:#555;font-weight:600}
            td:nth-child(2),td:nth-child(3),td:nth-child(4),td:nth-child(5){text-align:right}
            .key{margin-right:14px;font-size:13px;white-space:nowrap}.key i,.dot{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:5px}
            </style></head><body>
            <h1>Decryption failures</h1>
            <p class="sub">last \(escape(since)), by reason and by hour (UTC); from decrypt_failures</p>
            <div class="cards"><div class="card">failures<b>\(report.total)</b></div>
            <div class="card">recovered by reprocessing<b>\(report.recovered) (\(percent(report.recovered, report.total)))</b></div>
            <div class="card">of encrypted jobs<b>\(report.encrypted)</b></div>
            <div class="card">of code jobs<b>\(report.code)</b></div>
            <div class="card">reasons<b>\(report.rows.count)</b></div></div>
            <div class="cards"><div class="card">waiting for a session key now<b>\(parking.now.total)</b></div>
            <div class="card">oldest waiting<b>\(escape(ParkedCommand.age(parking.now.oldestSeconds)))</b></div>
            <div class="card">healed<b>\(parking.ended.healed)</b></div>
            <div class="card">healed wait, median / p99<b>\(escape(seconds(parking.ended.medianWaitMilliseconds))) / \(escape(seconds(parking.ended.p99WaitMilliseconds)))</b></div>
            <div class="card">expired<b>\(parking.ended.expired)</b></div></div>
            <svg width="\(width)" height="\(height)" role="img" aria-label="failures per hour by reason">\(axis)\(bars)</svg>
            <div>\(legend)</div>
            <table><tr><th>reason</th><th>count</th><th>share</th><th>encrypted jobs</th><th>code jobs</th><th>recovered</th><th>first seen</th><th>last seen</th></tr>\(rows)</table>
            </body></html>
            """
    }
}
