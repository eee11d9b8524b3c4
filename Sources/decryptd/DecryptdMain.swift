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
        } catch let error as UsageError {
            for line in error.lines { printError(line) }
            code = 2
        } catch let error as RuntimeFailure {
            printError(error.message)
            code = 1
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

/// Bad usage or configuration: exit 2 with one line per problem.
struct UsageError: Error {
    var lines: [String]
    init(_ message: String) { lines = [message] }
    init(lines: [String]) { self.lines = lines }
}

/// A failure at run time: exit 1 with this one line.
struct RuntimeFailure: Error {
    var message: String
    init(_ message: String) { self.message = message }
}
