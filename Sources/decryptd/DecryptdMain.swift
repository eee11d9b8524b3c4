import ArgumentParser
import DecryptdWorker
import Foundation

/// Entry point: parses the command line, runs the command, and maps errors to SPEC.md's exit codes
/// (0 success, 1 runtime failure, 2 bad usage or configuration with a one-line reason).
@main
enum DecryptdMain {
    static func main() async {
        let code: Int32
        do {
            var command = try Decryptd.parseAsRoot()
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
            code = 0
        } catch let error as CommandError {
            for line in error.lines { printError(line) }
            code = error.status.rawValue
        } catch {
            let exitCode = Decryptd.exitCode(for: error)
            if exitCode == .success {
                print(Decryptd.fullMessage(for: error))  // --help, --version
                code = 0
            } else if exitCode == .validationFailure {
                let message = Decryptd.message(for: error).split(separator: "\n").first.map(String.init) ?? "bad usage"
                printError("\(message) (see --help)")
                code = 2
            } else if let exit = error as? ExitCode {
                code = exit.rawValue
            } else {
                printError("\(error)")
                code = 1
            }
        }
        exit(code)
    }
}

/// Writes one line to stderr: multi-line messages are folded (``Preflight/oneLine(_:)``).
func printError(_ message: String) {
    FileHandle.standardError.write(Data("decryptd: \(Preflight.oneLine(message))\n".utf8))
}

/// The one error the command line ends with: its exit status (SPEC: 1 a failure at run time, 2 bad
/// usage or configuration) and one line per problem for stderr. The error behind it, when there is
/// one, is kept whole for ``debugDescription``; the lines carry only its `description`, which
/// never quotes a secret or a job's input.
struct CommandError: Error, CustomStringConvertible, CustomDebugStringConvertible {
    enum Status: Int32 {
        case failure = 1
        case usage = 2
    }

    var status: Status
    var lines: [String]
    var cause: (any Error)?

    /// Bad usage or configuration, one line per problem.
    static func usage(lines: [String]) -> CommandError { CommandError(status: .usage, lines: lines) }
    static func usage(_ message: String) -> CommandError { usage(lines: [message]) }
    /// Bad configuration that `cause` says in its own words (libpq's, librdkafka's).
    static func usage(cause: any Error) -> CommandError { CommandError(status: .usage, lines: ["\(cause)"], cause: cause) }

    /// A failure at run time: `what` failed because of `cause`.
    static func failure(_ what: String, cause: any Error) -> CommandError {
        CommandError(status: .failure, lines: ["\(what): \(cause)"], cause: cause)
    }
    static func failure(cause: any Error) -> CommandError { CommandError(status: .failure, lines: ["\(cause)"], cause: cause) }
    static func failure(_ message: String) -> CommandError { CommandError(status: .failure, lines: [message]) }

    var description: String { lines.joined(separator: "; ") }
    var debugDescription: String {
        "CommandError(status: \(status.rawValue), lines: \(lines)\(cause.map { ", cause: \(String(reflecting: $0))" } ?? ""))"
    }
}
