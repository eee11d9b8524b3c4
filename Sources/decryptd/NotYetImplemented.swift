import ArgumentParser

/// Subcommands whose issues have not landed yet: they exist so `--help` lists the whole tool,
/// and exit 2 so no script mistakes them for a run.
protocol NotYetImplementedCommand: ParsableCommand {}

extension NotYetImplementedCommand {
    func run() throws {
        throw UsageError("'\(Self._commandName)' is not implemented yet")
    }
}

struct ReprocessCommand: NotYetImplementedCommand {
    static let configuration = CommandConfiguration(commandName: "reprocess", abstract: "Replay the dead-letter topic (not implemented yet).")
}

struct ReportCommand: NotYetImplementedCommand {
    static let configuration = CommandConfiguration(commandName: "report", abstract: "Failures by reason (not implemented yet).")
}

