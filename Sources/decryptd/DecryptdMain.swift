import ArgumentParser
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
            FileHandle.standardError.write(Data("decryptd: \(error.message)\n".utf8))
            code = 2
        } catch let error as RuntimeFailure {
            FileHandle.standardError.write(Data("decryptd: \(error.message)\n".utf8))
            code = 1
        } catch {
            let exitCode = Decryptd.exitCode(for: error)
            if exitCode == .success {
                print(Decryptd.fullMessage(for: error))  // --help, --version
                code = 0
            } else if exitCode == .validationFailure {
                let message = Decryptd.message(for: error).split(separator: "\n").first.map(String.init) ?? "bad usage"
                FileHandle.standardError.write(Data("decryptd: \(message) (see --help)\n".utf8))
                code = 2
            } else if let exit = error as? ExitCode {
                code = exit.rawValue
            } else {
                FileHandle.standardError.write(Data("decryptd: \(error)\n".utf8))
                code = 1
            }
        }
        exit(code)
    }
}

/// Bad usage or configuration: exit 2 with this one line.
struct UsageError: Error {
    var message: String
    init(_ message: String) { self.message = message }
}

/// A failure at run time: exit 1 with this one line.
struct RuntimeFailure: Error {
    var message: String
    init(_ message: String) { self.message = message }
}
