import Foundation
import PSPosix
import Synchronization

/// A launched executable whose standard output and error are captured, for tests that run the real binaries.
///
/// Output is read by two dedicated threads into memory, so the child never blocks on a full pipe. A child still
/// running when the value is released is killed with `SIGKILL` and reaped: a test never leaves a process behind.
public final class ChildProcess {
    /// One of the two captured output streams.
    public enum Stream: Sendable, CustomStringConvertible {
        /// Standard output.
        case standardOutput
        /// Standard error.
        case standardError

        /// `stdout` or `stderr`.
        public var description: String {
            self == .standardOutput ? "stdout" : "stderr"
        }
    }

    private let process: Process
    private let outputCapture = OutputCapture()
    private let errorCapture = OutputCapture()
    /// A short name for messages: the executable's file name.
    public let name: String

    /// Launches `executable` with `arguments`; `environment` entries are added to (or replace) this process's.
    ///
    /// Standard input is `/dev/null`.
    public init(
        executable: URL,
        arguments: [String] = [],
        environment: [String: String] = [:],
        currentDirectory: URL? = nil
    ) throws {
        name = executable.lastPathComponent
        process = Process()
        process.executableURL = executable
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        if let currentDirectory {
            process.currentDirectoryURL = currentDirectory
        }
        let outputPipe = Pipe()
        let errorPipe = Pipe()
        process.standardOutput = outputPipe
        process.standardError = errorPipe
        process.standardInput = FileHandle.nullDevice
        try process.run()
        try? outputPipe.fileHandleForWriting.close()
        try? errorPipe.fileHandleForWriting.close()
        outputCapture.startReading(outputPipe.fileHandleForReading, threadName: "\(name)-stdout")
        errorCapture.startReading(errorPipe.fileHandleForReading, threadName: "\(name)-stderr")
    }

    /// Launches the built executable `binaryName` (see ``TestPaths/binary(named:)``).
    public convenience init(
        binary binaryName: String,
        arguments: [String] = [],
        environment: [String: String] = [:]
    ) throws {
        try self.init(
            executable: try TestPaths.binary(named: binaryName), arguments: arguments, environment: environment)
    }

    deinit {
        if process.isRunning {
            kill(signal: Signals.kill)
            _ = wait(timeout: .seconds(10))
        }
    }

    /// The child's process id.
    public var processID: Int32 {
        process.processIdentifier
    }

    /// Whether the child has not exited yet.
    public var isRunning: Bool {
        process.isRunning
    }

    /// Everything the child wrote to standard output so far (invalid UTF-8 repaired).
    public var standardOutput: String {
        outputCapture.text
    }

    /// Everything the child wrote to standard error so far.
    public var standardError: String {
        errorCapture.text
    }

    private func capture(_ stream: Stream) -> OutputCapture {
        stream == .standardOutput ? outputCapture : errorCapture
    }

    /// Waits for a complete line of `stream` that matches the regular expression `pattern` and returns it.
    ///
    /// Looks at every line written so far, so a line printed before the call is found too. Throws, quoting both
    /// streams, if `timeout` passes first or the child exits without printing such a line.
    public func waitForLine(
        matching pattern: String,
        in stream: Stream = .standardOutput,
        timeout: Duration = .seconds(30)
    ) throws -> String {
        let regex = try Regex(pattern)
        let capture = capture(stream)
        var found: String?
        var streamEnded = false
        waitUntil(timeout: timeout, poll: .milliseconds(2)) {
            let (lines, finished) = capture.lines()
            found = lines.first { $0.contains(regex) }.map(String.init)
            streamEnded = finished
            return found != nil || finished
        }
        if let found {
            return found
        }
        let reason =
            streamEnded
            ? "\(stream) ended (exit code \(wait(timeout: .seconds(2)).map(String.init) ?? "none yet"))"
            : "\(timeout) passed"
        throw TestSupportError(
            """
            \(name): no line matching '\(pattern)' on \(stream): \(reason)
            --- stdout ---
            \(standardOutput)
            --- stderr ---
            \(standardError)
            """
        )
    }

    /// Waits for the child to exit and for its output to be read; returns the exit code, or nil if `timeout` passed.
    ///
    /// A child killed by signal `n` returns `128 + n` (the shell's convention, so SIGKILL gives 137).
    public func wait(timeout: Duration = .seconds(30)) -> Int32? {
        let deadline = MonotonicClock.nanoseconds() + nanoseconds(timeout)
        guard waitUntil(timeout: timeout, poll: .milliseconds(2), { !process.isRunning }) else { return nil }
        let remaining = Duration.nanoseconds(Int64(clamping: deadline &- min(deadline, MonotonicClock.nanoseconds())))
        waitUntil(timeout: max(remaining, .milliseconds(200)), poll: .milliseconds(2)) {
            outputCapture.isFinished && errorCapture.isFinished
        }
        if process.terminationReason == .uncaughtSignal {
            return 128 + process.terminationStatus
        }
        return process.terminationStatus
    }

    /// The signal that killed the child, or nil if it is running or exited normally.
    public var terminationSignal: Int32? {
        guard !process.isRunning, process.terminationReason == .uncaughtSignal else { return nil }
        return process.terminationStatus
    }

    /// Sends `signal` (default `SIGTERM`) to the child if it is still running.
    public func kill(signal: Int32 = Signals.terminate) {
        guard process.isRunning else { return }
        try? Signals.send(signal, toProcess: process.processIdentifier)
    }

    /// Sends `SIGTERM` and waits up to `timeout`; if the child is still running, kills it with `SIGKILL`.
    ///
    /// Returns the exit code as ``wait(timeout:)`` does (nil only if even `SIGKILL` did not end it).
    @discardableResult
    public func terminateAndWait(timeout: Duration = .seconds(10)) -> Int32? {
        kill(signal: Signals.terminate)
        if let code = wait(timeout: timeout) {
            return code
        }
        kill(signal: Signals.kill)
        return wait(timeout: .seconds(10))
    }

    /// The number after the last `:` of `line`, e.g. 7000 from `listening on 127.0.0.1:7000`.
    public static func port(inLine line: String) -> UInt16? {
        guard let colon = line.lastIndex(of: ":") else { return nil }
        let digits = line[line.index(after: colon)...].prefix { $0.isASCII && $0.isNumber }
        return UInt16(digits)
    }
}

/// The bytes read so far from one of a child's pipes, filled by a dedicated reader thread.
final class OutputCapture: Sendable {
    private struct State {
        var bytes: [UInt8] = []
        var finished = false
    }

    private let state = Mutex(State())

    func startReading(_ handle: FileHandle, threadName: String) {
        let thread = Thread { [self] in
            while case let data = handle.availableData, !data.isEmpty {
                state.withLock { $0.bytes.append(contentsOf: data) }
            }
            try? handle.close()
            state.withLock { $0.finished = true }
        }
        thread.name = threadName
        thread.start()
    }

    var isFinished: Bool {
        state.withLock { $0.finished }
    }

    var text: String {
        String(decoding: state.withLock { $0.bytes }, as: UTF8.self)
    }

    /// The complete lines so far (and the unterminated last one once the stream has ended).
    func lines() -> (lines: [Substring], finished: Bool) {
        let (bytes, finished) = state.withLock { ($0.bytes, $0.finished) }
        let text = String(decoding: bytes, as: UTF8.self)
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        if !finished {
            lines.removeLast()
        }
        return (lines, finished)
    }
}
