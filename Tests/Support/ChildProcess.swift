public import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A child process started with `posix_spawn` and reaped with `waitpid`. (Foundation's
/// `Process.waitUntilExit` can hang on Linux when called from a Swift-concurrency thread.)
public final class ChildProcess: @unchecked Sendable {
    public let pid: pid_t
    /// Where its stdout and stderr go.
    public let logPath: String
    private var status: Int32?

    /// Starts `arguments[0]` (searched in PATH) with `environment`; stdout and stderr go to `logPath`.
    public init(_ arguments: [String], environment: [String: String] = ProcessInfo.processInfo.environment, logPath: String = "/dev/null")
        throws
    {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, logPath, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        // As a shell starts it: no signal blocked, SIGINT and SIGTERM at their defaults. Otherwise the
        // child inherits the mask of the test's thread, which blocks most signals, and a signal
        // sent to it would stay pending where a real one would be delivered (or dropped).
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        sigaddset(&defaults, SIGINT)
        sigaddset(&defaults, SIGTERM)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        let argv = arguments.map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { for pointer in argv + envp { free(pointer) } }
        var child: pid_t = 0
        let result = posix_spawnp(&child, arguments[0], &actions, &attributes, argv, envp)
        guard result == 0 else { throw SpawnError(description: "cannot start \(arguments[0]): \(String(cString: strerror(result)))") }
        pid = child
        self.logPath = logPath
    }

    /// What it has written to stdout and stderr so far ("" while its log file does not exist).
    public var output: String {
        (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
    }

    /// This process's environment without decryptd's configuration (SPEC's three variables and
    /// every DECRYPTD_*), so that a child decryptd sees only what its test gives it.
    public static let environmentWithoutDecryptdConfiguration = ProcessInfo.processInfo.environment.filter {
        !["DATABASE_URL", "KAFKA_BROKERS", "WECHAT_APPIDS"].contains($0.key) && !$0.key.hasPrefix("DECRYPTD_")
    }

    public struct SpawnError: Error, CustomStringConvertible {
        public var description: String
    }

    /// Runs a command to completion and returns its exit status.
    public static func run(_ arguments: [String], timeout: TimeInterval = 120) throws -> Int32 {
        let child = try ChildProcess(arguments)
        return try child.wait(timeout: timeout)
    }

    public func kill(_ signal: Int32) {
        _ = Glibc.kill(pid, signal)
    }

    /// `nil` while running; afterwards the exit status, or 128 + signal number.
    public var exitStatus: Int32? {
        if let status { return status }
        var raw: Int32 = 0
        guard waitpid(pid, &raw, WNOHANG) == pid else { return nil }
        let signal = raw & 0x7F
        status = signal == 0 ? (raw >> 8) & 0xFF : 128 + signal
        return status
    }

    public func wait(timeout: TimeInterval) throws -> Int32 {
        try waitUntil(timeout: timeout, "process \(pid) exited") { exitStatus != nil }
        return exitStatus!
    }
}

/// The `decryptd` binary built beside the tests (or `$DECRYPTD_BINARY`), for every test that
/// runs it as a child process.
public let decryptdBinary: URL = {
    if let path = ProcessInfo.processInfo.environment["DECRYPTD_BINARY"] { return URL(fileURLWithPath: path) }
    let beside = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("decryptd")
    if FileManager.default.isExecutableFile(atPath: beside.path) { return beside }
    // Tests/Support/ChildProcess.swift -> the repository's debug build
    return URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent(".build/debug/decryptd")
}()
