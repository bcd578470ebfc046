import Foundation
import PSCLI
import PSPosix

/// `psctl run`: a local job in the spirit of `torchrun`: one psserver on a free loopback port and N psworkers as
/// child processes, their output streamed with a prefix, the job's exit status, and every process stopped on
/// failure, timeout or SIGINT/SIGTERM. `psctl demo` is a preset of it.
enum Launcher {
    /// How long the launcher waits for the server's `listening` line.
    static let listenTimeout = 120.0
    /// How long the workers may take to exit once the server exited, and the server once every worker exited.
    static let exitGrace = 30.0

    static let command = Command(
        name: "run", abstract: "Run a job locally: one psserver on a free loopback port and N psworkers.",
        discussion: """
            Like torchrun, for SwiftPS. Every option that is not run's own goes to psserver (after --, everything \
            does), e.g. \
            psctl run --workers 2 --model mlp:128 --data digits --epochs 5. Run starts psserver on 127.0.0.1 \
            with --port 0 and --workers N, waits for it to listen (at most 120 s; a server that exits first fails \
            the run at once with its last error line), then starts N psworkers named worker0, worker1, ... It \
            prefixes every output line with [server] or [workerR], keeps each process's whole output in \
            <directory>/<name>.log, and exits with the server's exit status (the job's: 0 when it finished). Every \
            wait is bounded: --timeout for the whole job, 30 s for the workers once the server exited, 30 s for \
            the server once every worker exited. On a failure, a timeout or SIGINT/SIGTERM it stops every process \
            it started (SIGTERM, then SIGKILL after 3 s). A psserver --token is handed to the workers (in their \
            PS_TOKEN environment variable, not on their command line); a psserver serving TLS needs \
            --worker-tls-ca, and one with --tls-ca (mutual TLS) also --worker-tls-cert and --worker-tls-key.
            """,
        options: [
            Option("workers", value: "n", help: "Worker processes to start (also psserver's --workers).", default: "2"),
            Option("worker-threads", value: "n", help: "Each psworker's --threads.", default: "1"),
            Option(
                "directory", value: "dir",
                help: "Logs, and psserver's --checkpoint-dir and --metrics-out unless given (default: a new temporary "
                    + "directory)."),
            Option(
                "timeout", value: "seconds", help: "Stop everything and fail when the job has not ended by then.",
                default: "86400"),
            Option("quiet", help: "Show only the server's epoch, summary, warning and error lines and worker 0's."),
            Option(
                "worker-tls-ca", value: "pem",
                help: "The CA the workers check psserver's --tls-cert against (needed when psserver serves TLS)."),
            Option(
                "worker-tls-cert", value: "pem",
                help: "The workers' certificate chain, for a psserver with --tls-ca (mutual TLS; needs "
                    + "--worker-tls-key)."),
            Option("worker-tls-key", value: "pem", help: "Private key of --worker-tls-cert."),
        ],
        arguments: [
            Argument(
                "psserver-flags", help: "psserver's job flags (--model, --data, --epochs, ...).", optional: true,
                variadic: true)
        ])

    /// Flags run sets on psserver itself.
    static let reservedServerFlags = ["--host", "--port", "-p", "--workers"]

    /// `run` with psserver's flags mixed among its own: moves the flags run does not know behind a `--`, so the
    /// parser hands them over as the variadic argument instead of refusing them.
    static func regroup(_ arguments: [String]) -> [String] {
        guard arguments.first == "run" else { return arguments }
        var own: [String] = []
        var passed: [String] = []
        var index = 1
        while index < arguments.count {
            let token = arguments[index]
            index += 1
            if token == "--" {
                passed += arguments[index...]
                break
            }
            if token == "--help" || token == "-h" {
                own.append(token)
                continue
            }
            let name = String(token.split(separator: "=", maxSplits: 1).first ?? "")
            guard name.hasPrefix("--"), let option = command.options.first(where: { "--" + $0.long == name }) else {
                passed.append(token)
                continue
            }
            own.append(token)
            if !option.isFlag, !token.contains("="), index < arguments.count {
                own.append(arguments[index])
                index += 1
            }
        }
        return ["run"] + own + (passed.isEmpty ? [] : ["--"] + passed)
    }

    /// `psctl run`.
    static func run(_ arguments: ParsedArguments) throws -> Int32 {
        let workers = try arguments.required("workers", as: Int.self, in: 1...256)
        let threads = try arguments.required("worker-threads", as: Int.self, in: 1...1024)
        let timeout = try arguments.required("timeout", as: Double.self, in: 1...(365 * 86_400))
        var serverFlags = arguments.arguments("psserver-flags")
        for flag in reservedServerFlags
        where hasFlag(flag, in: serverFlags) {
            throw UsageError("psctl run sets psserver's \(flag) itself; give the worker count as run's --workers")
        }
        guard hasFlag("--model", in: serverFlags) else {
            throw UsageError("psctl run needs psserver's --model (the job to run), e.g. --model mlp:128")
        }
        let directory = try makeDirectory(arguments.string("directory"), prefix: "swiftps-run")
        if !hasFlag("--checkpoint-dir", in: serverFlags) {
            serverFlags += ["--checkpoint-dir", directory + "/ckpt"]
        }
        if !hasFlag("--metrics-out", in: serverFlags) {
            serverFlags += ["--metrics-out", directory + "/metrics.jsonl"]
        }
        let (workerSecurityFlags, workerEnvironment) = try workerSecurity(serverFlags: serverFlags, arguments)
        let quiet = arguments.has("quiet")
        let echoServer: @Sendable (String) -> Bool = { line in !quiet || Launcher.isNotableServerLine(line) }
        let echoWorker: @Sendable (Int, String) -> Bool = { rank, _ in !quiet || rank == 0 }
        let outcome = try launchJob(
            serverFlags: serverFlags, workers: workers, workerFlags: ["--threads", "\(threads)"] + workerSecurityFlags,
            workerEnvironment: workerEnvironment, directory: directory, timeout: timeout, echoServer: echoServer,
            echoWorker: echoWorker)
        return finish(outcome, directory: directory)
    }

    /// Whether psserver flag `name` is among `flags` (`--name …` or `--name=…`).
    static func hasFlag(_ name: String, in flags: [String]) -> Bool {
        flags.contains { $0 == name || $0.hasPrefix(name + "=") }
    }

    /// The value of psserver flag `name` among `flags` (`--name value` or `--name=value`), if given.
    static func value(of name: String, in flags: [String]) -> String? {
        for (index, flag) in flags.enumerated() {
            if flag == name { return index + 1 < flags.count ? flags[index + 1] : nil }
            if flag.hasPrefix(name + "=") { return String(flag.dropFirst(name.count + 1)) }
        }
        return nil
    }

    /// What the workers need to reach a psserver started with `serverFlags`: its `--token` (in the environment, so
    /// that it is not on their command lines) and their TLS flags from run's --worker-tls-* options, checked
    /// against what the server requires.
    static func workerSecurity(serverFlags: [String], _ arguments: ParsedArguments) throws -> (
        flags: [String], environment: [String: String]
    ) {
        var environment: [String: String] = [:]
        if let token = value(of: "--token", in: serverFlags) { environment["PS_TOKEN"] = token }
        let ca = arguments.string("worker-tls-ca")
        let certificate = arguments.string("worker-tls-cert")
        let key = arguments.string("worker-tls-key")
        let servesTLS = hasFlag("--tls-cert", in: serverFlags)
        let requiresClientCertificates = hasFlag("--tls-ca", in: serverFlags)
        if (certificate == nil) != (key == nil) {
            throw UsageError("--worker-tls-cert and --worker-tls-key go together")
        }
        if !servesTLS, ca != nil || certificate != nil {
            throw UsageError("--worker-tls-ca and --worker-tls-cert are for a psserver that serves TLS (--tls-cert)")
        }
        if servesTLS, ca == nil {
            throw UsageError(
                "psserver serves TLS (--tls-cert): give --worker-tls-ca, the CA the workers check its certificate "
                    + "against")
        }
        if requiresClientCertificates, certificate == nil {
            throw UsageError(
                "psserver requires client certificates (--tls-ca): give --worker-tls-cert and --worker-tls-key")
        }
        var flags: [String] = []
        if let ca { flags += ["--tls-ca", ca] }
        if let certificate, let key { flags += ["--tls-cert", certificate, "--tls-key", key] }
        return (flags, environment)
    }

    /// Prints the end of a job and returns its exit status: the server's.
    static func finish(_ outcome: Outcome, directory: String) -> Int32 {
        let failedWorkers = outcome.workerCodes.enumerated().filter { $0.element != 0 }
        if !failedWorkers.isEmpty {
            let list = failedWorkers.map { "worker\($0.offset) exit \($0.element)" }.joined(separator: ", ")
            FileHandle.standardError.write(Data("psctl run: \(list); logs in \(directory)\n".utf8))
        }
        if outcome.serverCode != 0 {
            let reason = outcome.serverLastError.map { ": \($0)" } ?? ""
            FileHandle.standardError.write(
                Data(
                    "Error: the job failed (psserver exit \(outcome.serverCode))\(reason); logs in \(directory)\n".utf8)
            )
        }
        return outcome.serverCode
    }

    /// The server lines `--quiet` (and the demo) show.
    @Sendable static func isNotableServerLine(_ line: String) -> Bool {
        line.contains("event=epoch") || line.contains("event=job-") || line.contains("level=error")
            || line.contains("level=warning") || line.hasPrefix("Error:")
    }

    /// `given`, created, or a new temporary directory.
    static func makeDirectory(_ given: String?, prefix: String) throws -> String {
        let directory = given ?? NSTemporaryDirectory() + "\(prefix)-\(Host.processID())"
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw CtlError("cannot create the directory \(directory): \(error.localizedDescription)")
        }
        return directory
    }

    /// How a job ended: every process's exit status (128 + n for signal n) and the server's last error line.
    struct Outcome {
        var serverCode: Int32
        var workerCodes: [Int32]
        var serverLastError: String?
        var port: UInt16
    }

    // MARK: Processes

    /// Every child started, so a signal handler can stop them all, and their exit statuses by label; broadcast
    /// when one of them exits.
    private struct Children {
        var processes: [Process] = []
        var exits: [String: Int32] = [:]
        /// A signal arrived: its handler stops everything and exits 130, whatever the job's outcome.
        var interrupted = false
    }

    private static let children = LockedValue(Children())

    /// Starts psserver, waits for it to listen, starts the workers and waits for the job to end, every wait
    /// bounded; stops every process it started on every path out. Throws `CtlError` when the server does not
    /// listen, or the job overruns `timeout`, or the server outlives every worker by `exitGrace`.
    static func launchJob(
        serverFlags: [String], workers: Int, workerFlags: [String], workerEnvironment: [String: String] = [:],
        directory: String, timeout: Double, echoServer: @escaping @Sendable (String) -> Bool,
        echoWorker: @escaping @Sendable (Int, String) -> Bool,
        onListening: (UInt16) -> Void = { _ in }
    ) throws -> Outcome {
        let binDirectory = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
            .deletingLastPathComponent()
        for binary in ["psserver", "psworker"] {
            guard FileManager.default.isExecutableFile(atPath: binDirectory.appendingPathComponent(binary).path) else {
                throw CtlError("\(binary) is not next to psctl in \(binDirectory.path); build the package first")
            }
        }
        Signals.handleTermination { signal in
            children.withLock { $0.interrupted = true }
            stopAll()
            FileHandle.standardError.write(
                Data("\npsctl: interrupted (signal \(signal)); stopped every process it started\n".utf8))
            exit(130)
        }
        defer { stopAll() }
        let deadline = MonotonicClock.deadline(afterSeconds: timeout)

        let listening = LineWatcher(pattern: "event=listening")
        _ = try launch(
            binDirectory.appendingPathComponent("psserver"),
            ["--host", "127.0.0.1", "--port", "0", "--workers", "\(workers)"] + serverFlags, label: "server",
            directory: directory, watcher: listening, echo: echoServer)
        guard let line = listening.wait(seconds: min(listenTimeout, timeout)),
            let range = line.range(of: "address=127.0.0.1:"),
            let port = UInt16(line[range.upperBound...].prefix { $0.isNumber })
        else {
            // The watcher returns as soon as the server's output ends: a server that exits fails the run now.
            if listening.hasEnded {
                let reason = listening.lastError ?? "it printed no error line"
                throw CtlError("psserver exited before it listened: \(reason)")
            }
            if timeout < listenTimeout {
                throw CtlError("the job did not end within --timeout \(timeout) s (psserver was not listening yet)")
            }
            throw CtlError("psserver did not start listening within \(Int(listenTimeout)) s")
        }
        onListening(port)
        for rank in 0..<workers {
            _ = try launch(
                binDirectory.appendingPathComponent("psworker"),
                ["--server", "127.0.0.1:\(port)", "--name", "worker\(rank)"] + workerFlags, label: "worker\(rank)",
                environment: workerEnvironment, directory: directory, watcher: nil, echo: { echoWorker(rank, $0) })
        }
        let workerLabels = (0..<workers).map { "worker\($0)" }

        // Until the server exits: bounded by the job's timeout, and by `exitGrace` once every worker is gone.
        var everyWorkerGoneSince: UInt64? = nil
        while true {
            let now = MonotonicClock.nanoseconds()
            let slice = min(deadline, now + 500_000_000)
            let (serverDone, workersDone) = children.wait(
                until: slice, while: { $0.exits["server"] == nil }
            ) { state, _ in
                (state.exits["server"] != nil, workerLabels.allSatisfy { state.exits[$0] != nil })
            }
            if serverDone { break }
            if MonotonicClock.nanoseconds() >= deadline {
                throw CtlError("the job did not end within --timeout \(timeout) s; stopped every process")
            }
            if workersDone {
                let since = everyWorkerGoneSince ?? MonotonicClock.nanoseconds()
                everyWorkerGoneSince = since
                if MonotonicClock.nanoseconds() - since > UInt64(exitGrace * 1e9) {
                    throw CtlError(
                        "every worker exited but psserver did not end within \(Int(exitGrace)) s; stopped it "
                            + "(last error: \(listening.lastError ?? "none"))")
                }
            }
        }
        if children.withLock({ $0.interrupted }) {
            // The signal handler owns the exit (130) once it has stopped every child; this outcome is not reported.
            Thread.sleep(forTimeInterval: 60)
        }
        // The server is gone: workers leave at once after a finished job; a failed one leaves them retrying.
        let serverCode = children.withLock { $0.exits["server"] ?? 1 }
        let workerGrace = serverCode == 0 ? exitGrace : 0
        children.wait(
            until: MonotonicClock.deadline(afterSeconds: workerGrace),
            while: { state in workerLabels.contains { state.exits[$0] == nil } })
        stopAll()
        let codes = children.withLock { state in workerLabels.map { state.exits[$0] ?? 1 } }
        return Outcome(serverCode: serverCode, workerCodes: codes, serverLastError: listening.lastError, port: port)
    }

    /// Starts one child with its stdout and stderr on one pipe, read line by line on its own thread: each line goes
    /// to `<directory>/<label>.log`, to the watcher, and (when `echo` says so) to stdout as `[label] line`.
    static func launch(
        _ executable: URL, _ arguments: [String], label: String, environment extra: [String: String] = [:],
        directory: String, watcher: LineWatcher?, echo: @escaping @Sendable (String) -> Bool
    ) throws -> Process {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        var environment = ProcessInfo.processInfo.environment.merging(extra) { $1 }
        environment["OPENBLAS_NUM_THREADS"] = environment["OPENBLAS_NUM_THREADS"] ?? "1"
        process.environment = environment
        let pipe = Pipe()
        process.standardError = pipe
        process.standardOutput = pipe
        process.terminationHandler = { process in
            let code =
                process.terminationReason == .uncaughtSignal
                ? 128 + process.terminationStatus : process.terminationStatus
            children.withLockAndBroadcast { $0.exits[label] = code }
        }
        // Spawned with SIGTERM and SIGINT unblocked, so that stopping a child (and Ctrl-C) works on it.
        try Signals.withTerminationSignalsUnblocked { try process.run() }
        children.withLock { $0.processes.append(process) }
        let logPath = directory + "/\(label).log"
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = FileHandle(forWritingAtPath: logPath)
        let handle = pipe.fileHandleForReading
        let thread = Thread {
            var pending = Data()
            while true {
                let chunk = handle.availableData
                if chunk.isEmpty { break }
                log?.write(chunk)
                pending.append(chunk)
                while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                    let line = String(decoding: pending[pending.startIndex..<newline], as: UTF8.self)
                    pending.removeSubrange(pending.startIndex...newline)
                    watcher?.offer(line)
                    if echo(line) { say("[\(label)] \(line)") }
                }
            }
            try? log?.close()
            watcher?.finish()
        }
        thread.name = "psctl-\(label)-output"
        thread.start()
        return process
    }

    /// Writes one line to standard output at once (unbuffered, one write: lines of different children do not
    /// interleave, and a reader of a pipe sees each line as it happens).
    static func say(_ line: String) {
        FileHandle.standardOutput.write(Data((line + "\n").utf8))
    }

    /// SIGTERM to every child still running, SIGKILL to those still running 3 s later; returns once every child
    /// has exited (bounded: a killed process ends at once, and 5 s more are allowed for it to be reaped).
    static func stopAll() {
        let all = children.withLock { $0.processes }
        for process in all where process.isRunning { process.terminate() }
        // Polled: nothing signals a child's exit to a condition here.
        waitWhileRunning(all, seconds: 3)
        for process in all where process.isRunning {
            try? Signals.send(Signals.kill, toProcess: process.processIdentifier)
        }
        waitWhileRunning(all, seconds: 5)
    }

    private static func waitWhileRunning(_ processes: [Process], seconds: Double) {
        let deadline = MonotonicClock.deadline(afterSeconds: seconds)
        while processes.contains(where: \.isRunning), MonotonicClock.nanoseconds() < deadline {
            Thread.sleep(forTimeInterval: 0.02)
        }
    }
}

/// Waits for the first output line containing a pattern, or for the output to end; remembers the last error line.
final class LineWatcher: Sendable {
    private struct State {
        var found: String? = nil
        var ended = false
        var lastError: String? = nil
    }

    let pattern: String
    private let state = LockedValue(State())

    init(pattern: String) {
        self.pattern = pattern
    }

    func offer(_ line: String) {
        let isError = line.hasPrefix("Error:") || line.contains("level=error")
        guard isError || line.contains(pattern) else { return }
        state.withLockAndBroadcast { state in
            if isError { state.lastError = line }
            if line.contains(pattern), state.found == nil { state.found = line }
        }
    }

    /// The output ended (the process exited): a waiter stops waiting.
    func finish() {
        state.withLockAndBroadcast { $0.ended = true }
    }

    /// Whether the output ended.
    var hasEnded: Bool { state.withLock { $0.ended } }

    /// The last `Error:` or `level=error` line seen.
    var lastError: String? { state.withLock { $0.lastError } }

    /// The matching line, or nil when the output ended or `seconds` passed first.
    func wait(seconds: Double) -> String? {
        state.wait(
            until: MonotonicClock.deadline(afterSeconds: seconds), while: { $0.found == nil && !$0.ended }
        ) { state, _ in state.found }
    }
}
