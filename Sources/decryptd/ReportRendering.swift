import DecryptdStore
import Foundation
import PhoneDecryption

/// The three shapes of `decryptd report`.
enum ReportRendering {
    static func percent(_ part: Int, _ whole: Int) -> String {
        whole == 0 ? "0.0%" : String(format: "%.1f%%", Double(part) / Double(whole) * 100)
    }

    // MARK: - Table

    static func table(_ report: FailureReport, since: String) -> String {
        guard report.total > 0 else { return "no failures in the last \(since)" }
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
        lines.append("")
        lines.append("by hour (UTC):")
        let hours = Dictionary(grouping: report.hourly, by: \.hour).sorted { $0.key < $1.key }
        let peak = hours.map { $0.value.reduce(0) { $0 + $1.count } }.max() ?? 1
        for (hour, buckets) in hours {
            let count = buckets.reduce(0) { $0 + $1.count }
            let bar = String(repeating: "#", count: max(1, count * 40 / max(peak, 1)))
            lines.append("  \(hour)  \(String(count).leftPadded(7))  \(bar)")
        }
        return lines.joined(separator: "\n")
    }

    // MARK: - JSON

    static func json(_ report: FailureReport, since: String) -> String {
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
        writer.endObject()
        return writer.text
    }

    // MARK: - HTML

    static let colors: [String: String] = [
        "malformed_job": "#8c564b", "session_not_found": "#1f77b4", "invalid_session_key": "#9467bd", "invalid_iv": "#e377c2",
        "invalid_ciphertext": "#7f7f7f", "bad_padding": "#d62728", "invalid_plaintext": "#bcbd22", "appid_mismatch": "#ff7f0e",
        "code_invalid": "#17becf", "code_expired": "#2ca02c", "invalid_phone_info": "#aec7e8", "exchange_not_configured": "#c49c94",
        "wechat_error": "#393b79",
    ]

    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }

    /// A single self-contained page: summary, a stacked bar chart by hour (inline SVG), the table.
    static func html(_ report: FailureReport, since: String) -> String {
        let reasons = report.rows.map(\.reason)
        let hours = Dictionary(grouping: report.hourly, by: \.hour).sorted { $0.key < $1.key }
        let peak = max(1, hours.map { $0.value.reduce(0) { $0 + $1.count } }.max() ?? 1)
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
            if hours.count <= 24 || index % max(1, hours.count / 12) == 0 {
                let label = String(hour.dropFirst(11).prefix(5))
                bars +=
                    ##"<text x="\##(x + slot * 0.4)" y="\##(height - bottom + 16)" font-size="11" text-anchor="middle">\##(escape(label))</text>"##
            }
        }
        let axis =
            ##"<line x1="\##(left)" y1="\##(height - bottom)" x2="\##(width - 10)" y2="\##(height - bottom)" stroke="#999"/>"##
            + ##"<text x="\##(left - 6)" y="24" font-size="11" text-anchor="end">\##(peak)</text><text x="\##(left - 6)" y="\##(height - bottom)" font-size="11" text-anchor="end">0</text>"##
        let legend = reasons.map { ##"<span class="key"><i style="background:\##(colors[$0] ?? "#333")"></i>\##(escape($0))</span>"## }
            .joined()
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
            <svg width="\(width)" height="\(height)" role="img" aria-label="failures per hour by reason">\(axis)\(bars)</svg>
            <div>\(legend)</div>
            <table><tr><th>reason</th><th>count</th><th>share</th><th>encrypted jobs</th><th>code jobs</th><th>recovered</th><th>first seen</th><th>last seen</th></tr>\(rows)</table>
            </body></html>
            """
    }
}
