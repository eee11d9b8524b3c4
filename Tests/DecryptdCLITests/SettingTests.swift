import Foundation
import Testing

@testable import decryptd

@Suite("Settings table")
struct SettingTests {
    @Test("help says what, the allowed values, the variable and the default, all from the table")
    func help() {
        #expect(Settings.batchSize.help.abstract == "Jobs per batch. Allowed: 1 to 100000. Env: DECRYPTD_BATCH_SIZE. Default: 1000.")
        #expect(Settings.concurrency.help.abstract.hasSuffix("Env: DECRYPTD_CONCURRENCY. Default: active cores."))
        #expect(Settings.metricsPort.help.abstract.hasSuffix("Default: off."))
        #expect(Settings.progressInterval.help.abstract.contains("Allowed: 0 (none) to 86400."))
        #expect(Settings.maxAttempts.help.abstract.contains("Allowed: at least 1."))
        #expect(Settings.group.help.abstract == "Consumer group. Env: DECRYPTD_GROUP. Default: decryptd.")
    }

    @Test("the flag wins over the default; the default stands when nothing is given")
    func precedence() throws {
        var problems: [String] = []
        // No DECRYPTD_TEST_UNSET_* variable exists: only the flag and the default are in play.
        let setting = Setting<Int>(
            flag: "things", environment: "DECRYPTD_TEST_UNSET_THINGS", defaultValue: 7, rule: .range(1...9), summary: "Things.")
        #expect(try setting.resolved(nil, problems: &problems) == 7)
        #expect(try setting.resolved(3, problems: &problems) == 3)
        let off = Setting<Int>(flag: "port", environment: "DECRYPTD_TEST_UNSET_PORT", rule: .range(0...65535), summary: "Port.")
        #expect(try off.resolve(nil, problems: &problems) == nil)
        #expect(problems.isEmpty)
    }

    @Test("the environment variable stands in for a missing flag; one that is not a value is bad configuration")
    func environment() throws {
        let setting = Setting<Int>(
            flag: "things", environment: "DECRYPTD_TEST_SETTING_THINGS", defaultValue: 7, rule: .range(1...9), summary: "Things.")
        var problems: [String] = []
        setenv("DECRYPTD_TEST_SETTING_THINGS", "5", 1)
        defer { unsetenv("DECRYPTD_TEST_SETTING_THINGS") }
        #expect(try setting.resolved(nil, problems: &problems) == 5)
        #expect(try setting.resolved(3, problems: &problems) == 3, "the flag wins")
        setenv("DECRYPTD_TEST_SETTING_THINGS", "12", 1)
        #expect(try setting.resolved(nil, problems: &problems) == 12)
        #expect(problems == ["--things must be 1 to 9"])
        setenv("DECRYPTD_TEST_SETTING_THINGS", "five", 1)
        #expect(throws: CommandError.self) { try setting.resolved(nil, problems: &problems) }
    }

    @Test(
        "every rule names the flag and what it allows, and lets good values through",
        arguments: [
            (
                Setting<Double>(
                    flag: "wait", environment: "X", defaultValue: 1, rule: .seconds(longest: 60, zeroMeansNone: false), summary: ""),
                [0, -1, .nan, .infinity, 61], [0.5, 60], "--wait must be more than 0 and at most 60 seconds"
            ),
            (
                Setting<Double>(
                    flag: "every", environment: "X", defaultValue: 1, rule: .seconds(longest: 60, zeroMeansNone: true), summary: ""),
                [-1, .nan, 61], [0, 60], "--every must be 0 (none) or up to 60 seconds"
            ),
        ])
    func durations(setting: Setting<Double>, bad: [Double], good: [Double], message: String) {
        for value in bad { #expect(setting.problem(with: value) == message, "\(value)") }
        for value in good { #expect(setting.problem(with: value) == nil, "\(value)") }
    }

    @Test("ranges, lower bounds and empty text")
    func otherRules() {
        #expect(Settings.databaseConnections.problem(with: 1) == "--database-connections must be 2 to 64")
        #expect(Settings.databaseConnections.problem(with: 64) == nil)
        #expect(Settings.maxAttempts.problem(with: 0) == "--max-attempts must be at least 1")
        #expect(Settings.maxAttempts.problem(with: 1) == nil)
        #expect(Settings.reprocessGroup.problem(with: "") == "--group must not be empty")
        #expect(Settings.jobsTopic.problem(with: "t") == nil)
        #expect(Settings.maxInFlight.problem(with: -5) == nil, "checked against --batch-size by run, not alone")
    }

    @Test("the defaults are the library's: nothing typed twice")
    func defaultsFromTheLibrary() {
        #expect(Settings.batchSize.defaultValue == 1000 && Settings.maxSessionKeys.defaultValue == 3)
        #expect(Settings.reprocessGroup.defaultValue == "decryptd-reprocess" && Settings.maxAttempts.defaultValue == 5)
        #expect(Settings.jobsTopic.defaultValue == "wechat.phone.jobs" && Settings.deadLetterTopic.defaultValue == "wechat.phone.dlq")
    }
}
