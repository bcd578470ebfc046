import Foundation
import PSPosix
import XCTest

/// A launched executable whose standard output and error are captured, for tests that run the real binaries.
///
/// Output is read by two dedicated threads into memory, so the child never blocks on a full pipe. A child still
/// running when the value is released is killed with `SIGKILL` and reaped: a test never leaves a process behind.
///
/// A child that prints a ThreadSanitizer report (a `make tsan` build) fails the running test with the report,
/// once the child has exited or is released, unless it was launched with `expectsSanitizerReport`.
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
    /// Set by the process's termination handler; `wait(timeout:)` sleeps on its condition.
    private let exited = LockedValue(false)
    /// A short name for messages: the executable's file name.
    public let name: String
    private let expectsSanitizerReport: Bool
    private let sanitizerReportHandled = LockedValue(false)

    /// Launches `executable` with `arguments`; `environment` entries are added to (or replace) this process's.
    ///
    /// Standard input is `/dev/null`. `expectsSanitizerReport` is for the test that proves the sanitizer is live.
    public init(
        executable: URL,
        arguments: [String] = [],
        environment: [String: String] = [:],
        currentDirectory: URL? = nil,
        expectsSanitizerReport: Bool = false
    ) throws {
        name = executable.lastPathComponent
        self.expectsSanitizerReport = expectsSanitizerReport
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
        process.terminationHandler = { [exited] _ in exited.withLockAndBroadcast { $0 = true } }
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
        environment: [String: String] = [:],
        expectsSanitizerReport: Bool = false
    ) throws {
        try self.init(
            executable: try TestPaths.binary(named: binaryName), arguments: arguments, environment: environment,
            expectsSanitizerReport: expectsSanitizerReport)
    }

    deinit {
        if process.isRunning {
            kill(signal: Signals.kill)
            _ = wait(timeout: .seconds(10))
        }
        failOnSanitizerReport()
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
        let deadline = MonotonicClock.nanoseconds() + nanoseconds(timeout)
        var found: String?
        var streamEnded = false
        var offset = 0
        while true {
            let (lines, end, finished) = capture.lines(from: offset)
            found = lines.first { $0.contains(regex) }.map(String.init)
            streamEnded = finished
            offset = end
            if found != nil || finished || !capture.waitForMoreThan(offset, until: deadline) {
                break
            }
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
        guard exited.wait(until: deadline, while: { !$0 }) else { return nil }
        // The pipes close when the child (and anything it started) is gone; give them at least 200 ms to drain.
        let drainDeadline = max(deadline, MonotonicClock.nanoseconds() + 200_000_000)
        outputCapture.waitUntilFinished(until: drainDeadline)
        errorCapture.waitUntilFinished(until: drainDeadline)
        failOnSanitizerReport()
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

    /// Fails the running test, quoting the report, when the child's standard error holds a ThreadSanitizer report;
    /// once per child. A sanitized child exits 66 after a report, but a test that kills the child never sees that.
    private func failOnSanitizerReport() {
        guard !expectsSanitizerReport else { return }
        let text = standardError
        guard let marker = text.range(of: "ThreadSanitizer") else { return }
        let isFirst = sanitizerReportHandled.withLock { handled in
            defer { handled = true }
            return !handled
        }
        guard isFirst else { return }
        let reportStart =
            text[..<marker.lowerBound].lastIndex(of: "\n").map { text.index(after: $0) } ?? text.startIndex
        let report = text[reportStart...].prefix(20_000)
        XCTFail("\(name) (pid \(processID)) printed a ThreadSanitizer report on stderr:\n\(report)")
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

    private let state = LockedValue(State())

    func startReading(_ handle: FileHandle, threadName: String) {
        let thread = Thread { [self] in
            while case let data = handle.availableData, !data.isEmpty {
                state.withLockAndBroadcast { $0.bytes.append(contentsOf: data) }
            }
            try? handle.close()
            state.withLockAndBroadcast { $0.finished = true }
        }
        thread.name = threadName
        thread.start()
    }

    /// Blocks until the stream has ended or `deadline` (a `MonotonicClock` reading) passes.
    func waitUntilFinished(until deadline: UInt64) {
        state.wait(until: deadline, while: { !$0.finished })
    }

    /// Blocks until more than `byteCount` bytes have been read or the stream has ended; returns false if
    /// `deadline` (a `MonotonicClock` reading) passed first.
    func waitForMoreThan(_ byteCount: Int, until deadline: UInt64) -> Bool {
        state.wait(until: deadline, while: { $0.bytes.count <= byteCount && !$0.finished })
    }

    var text: String {
        String(decoding: state.withLock { $0.bytes }, as: UTF8.self)
    }

    /// The complete lines that start at byte `offset` (and the unterminated last one once the stream has ended),
    /// and the offset just past the last line returned, where the next call continues.
    func lines(from offset: Int) -> (lines: [Substring], end: Int, finished: Bool) {
        let (tail, finished) = state.withLock { (Array($0.bytes[offset...]), $0.finished) }
        let length = finished ? tail.count : (tail.lastIndex(of: UInt8(ascii: "\n")).map { $0 + 1 } ?? 0)
        var lines = String(decoding: tail[..<length], as: UTF8.self)
            .split(separator: "\n", omittingEmptySubsequences: false)
        if !finished {
            lines.removeLast()  // the empty string after the last newline
        }
        return (lines, offset + length, finished)
    }
}
