import Foundation
import PSCLI
import PSPosix

/// `psctl demo`: a whole local cluster as child processes on free loopback ports, cleaned up on every exit path.
enum Demo {
    static let fashionDirectory = "/usr/share/datasets/fashion-mnist"
    /// Every child started, so a signal handler can stop them all; broadcast when one of them exits.
    static let children = LockedValue<[Process]>([])

    static func run(_ arguments: ParsedArguments) throws -> Int32 {
        let binDirectory = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
            .deletingLastPathComponent()
        for binary in ["psserver", "psworker"] {
            guard FileManager.default.isExecutableFile(atPath: binDirectory.appendingPathComponent(binary).path) else {
                throw CtlError("\(binary) is not next to psctl in \(binDirectory.path); build the package first")
            }
        }
        let workers = try arguments.required("workers", as: Int.self)
        guard (1...16).contains(workers) else { throw UsageError("--workers must be between 1 and 16") }
        let data: String
        if let given = arguments.string("data") {
            data = given
        } else if FileManager.default.fileExists(atPath: fashionDirectory + "/train-images-idx3-ubyte.gz") {
            data = "fashion-mnist"
        } else {
            data = "digits"
            print(
                "Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist); "
                    + "training on the bundled digits data set instead.")
        }
        let epochs =
            try arguments.value("epochs", as: Int.self, in: 1...Int(UInt32.max)) ?? (data == "fashion-mnist" ? 10 : 20)
        let directory =
            arguments.string("directory")
            ?? NSTemporaryDirectory() + "swiftps-demo-\(Host.processID())"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let metricsPath = directory + "/metrics.jsonl"

        Signals.handleTermination { _ in
            stopAll()
            FileHandle.standardError.write(Data("\ndemo interrupted; stopped every process it started\n".utf8))
            exit(130)
        }
        defer { stopAll() }

        print(
            "Starting psserver (\(data), \(arguments.string("model") ?? "mlp:128"), \(workers) workers, \(epochs) epochs)"
        )
        let listening = LineWatcher(pattern: "event=listening")
        let server = try launch(
            binDirectory.appendingPathComponent("psserver"),
            [
                "--host", "127.0.0.1", "--port", "0", "--shards", "4", "--workers", "\(workers)", "--model",
                arguments.string("model") ?? "mlp:128", "--data", data, "--epochs", "\(epochs)", "--batch", "64",
                "--mode", arguments.string("mode") ?? "bsp", "--lr", "0.1", "--checkpoint-dir", directory + "/ckpt",
                "--metrics-out", metricsPath,
            ], label: "server", watcher: listening,
            echo: { line in
                line.contains("event=epoch") || line.contains("event=job-finished") || line.contains("level=error")
                    || line.contains("level=warning")
            })
        guard let line = listening.wait(seconds: 120), let port = line.split(separator: ":").last.map(String.init),
            let portNumber = UInt16(port.prefix { $0.isNumber })
        else {
            // The watcher returns as soon as the server's output ends: a server that exits fails the demo now.
            if listening.hasEnded {
                let reason = listening.lastError ?? "it printed no error line"
                throw CtlError("psserver exited before it listened: \(reason)")
            }
            throw CtlError("psserver did not start listening within 120 s")
        }
        print("psserver listening on 127.0.0.1:\(portNumber); starting \(workers) workers")
        var workerProcesses: [Process] = []
        for rank in 0..<workers {
            workerProcesses.append(
                try launch(
                    binDirectory.appendingPathComponent("psworker"),
                    ["--server", "127.0.0.1:\(portNumber)", "--name", "demo-worker-\(rank)"],
                    label: "worker\(rank)", watcher: nil, echo: { _ in rank == 0 }))
        }
        for process in workerProcesses { process.waitUntilExit() }
        server.waitUntilExit()
        let failed = workerProcesses.filter { $0.terminationStatus != 0 }
        guard failed.isEmpty, server.terminationStatus == 0 else {
            throw CtlError("the demo failed (server exit \(server.terminationStatus)); logs in \(directory)")
        }
        let accuracy = finalAccuracy(metricsPath: metricsPath)
        print(
            "Done: final test accuracy \(accuracy.map { String(format: "%.4f", $0) } ?? "unknown"); "
                + "weights in \(directory)/ckpt/final, metrics in \(metricsPath)")
        return 0
    }

    static func launch(
        _ executable: URL, _ arguments: [String], label: String, watcher: LineWatcher?,
        echo: @escaping @Sendable (String) -> Bool
    ) throws -> Process {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        var environment = ProcessInfo.processInfo.environment
        environment["OPENBLAS_NUM_THREADS"] = "1"
        process.environment = environment
        let pipe = Pipe()
        process.standardError = pipe
        process.standardOutput = pipe
        process.terminationHandler = { _ in children.broadcast() }
        try process.run()
        children.withLock { $0.append(process) }
        let handle = pipe.fileHandleForReading
        let thread = Thread {
            var pending = Data()
            while true {
                let chunk = handle.availableData
                if chunk.isEmpty { break }
                pending.append(chunk)
                while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                    let line = String(decoding: pending[pending.startIndex..<newline], as: UTF8.self)
                    pending.removeSubrange(pending.startIndex...newline)
                    watcher?.offer(line)
                    if echo(line) { print("[\(label)] \(line)") }
                }
            }
            watcher?.finish()
        }
        thread.start()
        return process
    }

    static func stopAll() {
        let all = children.withLock { $0 }
        for process in all where process.isRunning { process.terminate() }
        children.wait(until: MonotonicClock.deadline(afterSeconds: 3), while: { _ in all.contains(where: \.isRunning) })
        for process in all where process.isRunning {
            try? Signals.send(Signals.kill, toProcess: process.processIdentifier)
        }
    }

    static func finalAccuracy(metricsPath: String) -> Double? {
        guard let text = try? String(contentsOfFile: metricsPath, encoding: .utf8) else { return nil }
        var accuracy: Double? = nil
        for line in text.split(separator: "\n") {
            guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                object["type"] as? String == "epoch"
            else { continue }
            accuracy = object["test_accuracy"] as? Double
        }
        return accuracy
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
