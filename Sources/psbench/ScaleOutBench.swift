import Foundation
import PSPosix

/// `psbench scaleout`: aggregate push-pull goodput of a BSP job with several workers against 1, 2, 4… servers, each
/// server and worker on its own host (a network namespace made by `cluster/netns.sh`) whose link is rate-limited
/// with tbf in both directions, so that links, not the CPU, bound the traffic as on a real cluster; and the same
/// job on loopback without shaping, 2 servers against 1.
///
/// The model is an MLP on synthetic data, `mlp:H` over 61 features and 2 classes, i.e. `64 H + 2` floats (H =
/// 262144: 64 MiB), trained for one epoch of `steps + 1` BSP steps. Goodput counts what the workers move: every
/// step each worker pushes the whole gradient and pulls the whole model, `2 × workers × model bytes`; it is taken
/// from the coordinator's metrics file between the record of step 0 (start-up and the first pull excluded) and
/// the record of the last step.
///
/// Network safety: everything on the shaped path runs inside namespaces that `netns.sh` creates under its own
/// prefix and subnet and deletes on every exit path (its `TIMEOUT` bounds each run; `STOP_WITH_PARENT=1` ends it
/// if psbench dies); psbench also runs `netns.sh down` for the prefix after each run. The loopback rows use
/// 127.0.0.1 only.
enum ScaleOutBench {
    struct Settings {
        var rate = "2gbit"
        var servers = [1, 2, 4]
        var workers = 4
        var modelMiB = 64
        var steps = 4
        var batch = 8
        var shardsPerServer = 2
        var loopback = true
        var shaped = true
        var timeoutSeconds = 600
        /// Rounds over every configuration (alternated, so all see the same background load); the best counts.
        var repeats = 1
        var script: String? = nil

        /// H of `mlp:H` over 61 features and 2 classes: `64 H + 2` floats.
        var hidden: Int { max(1, modelMiB << 20 / 4 / 64) }
        var modelBytes: Int { (64 * hidden + 2) * 4 }
        var model: String { "mlp:\(hidden)" }
        /// One epoch of exactly `steps + 1` BSP steps.
        var data: String { "synthetic:\(workers * batch * (steps + 1)),61,2" }
    }

    struct Measurement {
        let servers: Int
        /// Bytes pushed plus pulled by all workers per second.
        let goodput: Double
        let steps: Int
        let seconds: Double
    }

    static func run(_ settings: Settings) throws {
        let binDirectory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for name in ["psserver", "psworker", "psctl"]
        where !FileManager.default.isExecutableFile(atPath: binDirectory.appendingPathComponent(name).path) {
            throw BenchError("\(name) is not built next to psbench (\(binDirectory.path))")
        }
        let describe =
            "\(settings.workers) workers, BSP, \(settings.model) on \(settings.data) "
            + "(\(String(format: "%.1f", Double(settings.modelBytes) / 1_048_576)) MiB of float32), "
            + "\(settings.shardsPerServer) shards per server, \(settings.steps) measured steps, "
            + "best of \(settings.repeats) round\(settings.repeats == 1 ? "" : "s")"
        if settings.shaped {
            guard Host.effectiveUserID() == 0 else {
                throw BenchError("the shaped rows need root (network namespaces, tc); use --loopback-only otherwise")
            }
            let script = try findScript(settings.script)
            let linkRate = try bitsPerSecond(settings.rate) / 8
            let results = try best(of: settings.repeats, settings.servers) { servers in
                progress("shaped \(settings.rate): \(servers) server(s), \(settings.workers) workers")
                return try measureInNamespaces(servers: servers, settings, script: script, bin: binDirectory)
            }
            print("\n### psbench scaleout: one host per process, every link \(settings.rate) (tbf, both directions)\n")
            print("\(describe).\n")
            print(
                "| servers | goodput | ratio to 1 server | ratio to link rate | link-bound ideal | seconds per step |")
            print("|---|---|---|---|---|---|")
            let base = results.first { $0.servers == 1 }?.goodput ?? results.first?.goodput ?? .nan
            for result in results {
                print(
                    String(
                        format: "| %d | %.3f GB/s | %.2fx | %.2fx | %dx | %.2f |", result.servers,
                        result.goodput / 1e9, result.goodput / base, result.goodput / linkRate,
                        min(result.servers, settings.workers), result.seconds / Double(result.steps)))
            }
            print(
                "\nLink rate: \(settings.rate) = \(String(format: "%.3f", linkRate / 1e9)) GB/s per direction and host. "
                    + "In BSP a step's pushes all arrive before its pulls leave, so M servers move at most M times the "
                    + "link rate (each server's link in, then out) and \(settings.workers) workers at most "
                    + "\(settings.workers) times: the link-bound ideal is min(M, workers) times the link rate.")
            if let one = results.first(where: { $0.servers == 1 }), one.goodput < 0.75 * linkRate {
                print(
                    String(
                        format: "Note: 1 server moved only %.2fx the link rate: the CPU (%d cores for every process), "
                            + "not the link, is likely a bottleneck here; a lower --rate makes the link the bottleneck.",
                        one.goodput / linkRate, ProcessInfo.processInfo.activeProcessorCount))
            }
        }
        if settings.loopback {
            let results = try best(of: settings.repeats, [1, 2]) { servers in
                progress("loopback: \(servers) server(s), \(settings.workers) workers")
                return try measureOnLoopback(servers: servers, settings, bin: binDirectory)
            }
            print("\n### psbench scaleout: loopback, no shaping, every process on this machine\n")
            print("\(describe).\n")
            print("| servers | goodput | ratio to 1 server | seconds per step |")
            print("|---|---|---|---|")
            for result in results {
                print(
                    String(
                        format: "| %d | %.3f GB/s | %.2fx | %.2f |", result.servers, result.goodput / 1e9,
                        result.goodput / results[0].goodput, result.seconds / Double(result.steps)))
            }
        }
    }

    /// `rounds` rounds of `measure` over every server count; the highest goodput of each, in `counts`' order.
    static func best(of rounds: Int, _ counts: [Int], _ measure: (Int) throws -> Measurement) throws -> [Measurement] {
        var best: [Int: Measurement] = [:]
        for _ in 0..<max(1, rounds) {
            for servers in counts {
                let result = try measure(servers)
                progress(String(format: "  %.3f GB/s over %.2f s", result.goodput / 1e9, result.seconds))
                if result.goodput > best[servers]?.goodput ?? 0 { best[servers] = result }
            }
        }
        return counts.compactMap { best[$0] }
    }

    static func progress(_ line: String) {
        FileHandle.standardError.write(Data((line + "\n").utf8))
    }

    /// `500mbit`, `2gbit`, `100kbit`, `1000bit` → bits per second.
    static func bitsPerSecond(_ rate: String) throws -> Double {
        let units: [(String, Double)] = [("gbit", 1e9), ("mbit", 1e6), ("kbit", 1e3), ("bit", 1)]
        for (suffix, scale) in units where rate.hasSuffix(suffix) {
            if let value = Double(rate.dropLast(suffix.count)), value > 0 { return value * scale }
        }
        throw BenchError("--rate must be a tc rate such as 500mbit or 2gbit, got '\(rate)'")
    }

    /// `--netns-script`, else `cluster/netns.sh` above the binary's directory or the working directory.
    static func findScript(_ given: String?) throws -> String {
        if let given {
            guard FileManager.default.isReadableFile(atPath: given) else { throw BenchError("no script at \(given)") }
            return given
        }
        let starts = [
            URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().standardizedFileURL,
            URL(fileURLWithPath: FileManager.default.currentDirectoryPath),
        ]
        for start in starts {
            var directory = start
            for _ in 0..<6 {
                let candidate = directory.appendingPathComponent("cluster/netns.sh").path
                if FileManager.default.isReadableFile(atPath: candidate) { return candidate }
                directory = directory.deletingLastPathComponent()
            }
        }
        throw BenchError("cluster/netns.sh not found above the binary or the working directory; pass --netns-script")
    }

    static let searchPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

    /// One `netns.sh run` with `servers` server hosts and `settings.workers` worker hosts, all links shaped.
    static func measureInNamespaces(servers: Int, _ settings: Settings, script: String, bin: URL) throws
        -> Measurement
    {
        let prefix = "psbso\(Host.processID() % 100_000)m\(servers)"
        let out = NSTemporaryDirectory() + "psbench-scaleout-\(Host.processID())-\(servers)"
        try? FileManager.default.removeItem(atPath: out)
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: out) }
        let environment = [
            "PATH": searchPath, "PREFIX": prefix, "SUBNET": "10.231.9", "BIN_DIR": bin.path, "OUT": out,
            "TIMEOUT": "\(settings.timeoutSeconds)", "READY_TIMEOUT": "120", "PORT": "7000",
            "WORKERS": "\(settings.workers)", "SERVERS": "\(servers)", "SHARDS": "\(settings.shardsPerServer)",
            "JOINED_SHARDS": "\(settings.shardsPerServer)", "DATA": settings.data, "MODEL": settings.model,
            "EPOCHS": "1", "CHECKPOINT_DIR": "", "SHAPE_RATE": settings.rate, "SHAPE_BURST": "256kb",
            "SHAPE_LATENCY": "50ms", "OPENBLAS_NUM_THREADS": "1", "STOP_WITH_PARENT": "1", "PS_TOKEN": "",
            "PS_DATA_DIR": "",
            "EXTRA_SERVER_FLAGS":
                "--batch \(settings.batch) --mode bsp --seed 0 --lr 0.001 --server-timeout 60 --worker-timeout 60 "
                + "--metrics-out \(out)/metrics.jsonl",
            "EXTRA_JOINED_FLAGS": "--server-timeout 60", "EXTRA_WORKER_FLAGS": "--quiet",
        ]
        defer { netnsDown(script: script, prefix: prefix) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = [script, "run"]
        process.environment = environment
        _ = FileManager.default.createFile(atPath: out + "/netns.out", contents: nil)
        process.standardOutput = FileHandle(forWritingAtPath: out + "/netns.out")
        process.standardError = process.standardOutput
        try process.run()
        let finished = waitForExit(process, seconds: Double(settings.timeoutSeconds) + 30)
        guard finished, process.terminationStatus == 0 else {
            let text = ["netns.out", "server.log", "server2.log", "worker1.log"].map { name in
                "--- \(name)\n"
                    + String(((try? String(contentsOfFile: out + "/" + name, encoding: .utf8)) ?? "").suffix(3000))
            }
            throw BenchError(
                "netns.sh run with \(servers) server(s) "
                    + (finished ? "exited \(process.terminationStatus)" : "did not end in time") + ":\n"
                    + text.joined(separator: "\n"))
        }
        return try measurement(servers: servers, metrics: out + "/metrics.jsonl", settings)
    }

    /// Waits for `process` at most `seconds`; past that sends SIGTERM (netns.sh cleans up on it), waits 20 s more,
    /// then SIGKILL. Returns whether it ended by itself.
    static func waitForExit(_ process: Process, seconds: Double) -> Bool {
        let deadline = MonotonicClock.deadline(afterSeconds: seconds)
        while process.isRunning, MonotonicClock.nanoseconds() < deadline { Thread.sleep(forTimeInterval: 0.1) }
        guard process.isRunning else { return true }
        process.terminate()
        let grace = MonotonicClock.deadline(afterSeconds: 20)
        while process.isRunning, MonotonicClock.nanoseconds() < grace { Thread.sleep(forTimeInterval: 0.1) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        return false
    }

    /// `netns.sh down` for `prefix`: kills what is left in its namespaces and deletes them (idempotent; bounded).
    static func netnsDown(script: String, prefix: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = [script, "down"]
        process.environment = ["PATH": searchPath, "PREFIX": prefix]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        guard (try? process.run()) != nil else { return }
        _ = waitForExit(process, seconds: 60)
    }

    /// The same job on 127.0.0.1: a coordinator, `servers - 1` joined servers and the workers, no shaping.
    static func measureOnLoopback(servers: Int, _ settings: Settings, bin: URL) throws -> Measurement {
        let directory = NSTemporaryDirectory() + "psbench-scaleout-lo-\(Host.processID())-\(servers)"
        try? FileManager.default.removeItem(atPath: directory)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var environment = ProcessInfo.processInfo.environment
        environment["OPENBLAS_NUM_THREADS"] = "1"
        environment["PS_TOKEN"] = nil
        let metrics = directory + "/metrics.jsonl"
        let (coordinator, port) = try startLocalServer(
            binDirectory: bin,
            arguments: [
                "--servers", "\(servers)", "--shards", "\(settings.shardsPerServer)", "--workers",
                "\(settings.workers)",
                "--model", settings.model, "--data", settings.data, "--epochs", "1", "--batch", "\(settings.batch)",
                "--mode", "bsp", "--seed", "0", "--lr", "0.001", "--server-timeout", "60", "--worker-timeout", "60",
                "--metrics-out", metrics, "--checkpoint-dir", directory + "/checkpoints", "--log-level", "info",
            ], logPath: directory + "/server.log", environment: environment)
        var processes = [coordinator]
        defer {
            for process in processes where process.isRunning { process.terminate() }
            for process in processes { _ = waitForExit(process, seconds: 10) }
        }
        func launch(_ name: String, _ arguments: [String], log: String) throws {
            let process = Process()
            process.executableURL = bin.appendingPathComponent(name)
            process.arguments = arguments
            process.environment = environment
            _ = FileManager.default.createFile(atPath: log, contents: nil)
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle(forWritingAtPath: log)
            try process.run()
            processes.append(process)
        }
        for index in 1..<servers {
            try launch(
                "psserver",
                [
                    "--host", "127.0.0.1", "--port", "0", "--join", "127.0.0.1:\(port)", "--shards",
                    "\(settings.shardsPerServer)", "--server-timeout", "60",
                ], log: directory + "/server\(index + 1).log")
        }
        for rank in 0..<settings.workers {
            try launch(
                "psworker", ["--server", "127.0.0.1:\(port)", "--name", "lo\(rank)", "--quiet"],
                log: directory + "/worker\(rank).log")
        }
        let deadline = MonotonicClock.deadline(afterSeconds: Double(settings.timeoutSeconds))
        while processes.contains(where: \.isRunning) {
            guard MonotonicClock.nanoseconds() < deadline else {
                throw BenchError(
                    "the loopback job with \(servers) server(s) did not end in \(settings.timeoutSeconds) s")
            }
            Thread.sleep(forTimeInterval: 0.1)
        }
        for process in processes where process.terminationStatus != 0 {
            let log = (try? String(contentsOfFile: directory + "/server.log", encoding: .utf8)) ?? ""
            throw BenchError(
                "\(process.executableURL?.lastPathComponent ?? "?") exited \(process.terminationStatus):\n"
                    + String(log.suffix(3000)))
        }
        return try measurement(servers: servers, metrics: metrics, settings)
    }

    /// Goodput between the first and the last `step` record of a metrics file.
    static func measurement(servers: Int, metrics: String, _ settings: Settings) throws -> Measurement {
        let text = try String(contentsOfFile: metrics, encoding: .utf8)
        var elapsed: [Int: Double] = [:]
        for line in text.split(separator: "\n") {
            guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                object["type"] as? String == "step", let step = object["step"] as? Int,
                let seconds = object["elapsed_s"] as? Double
            else { continue }
            elapsed[step] = seconds
        }
        guard let first = elapsed.keys.min(), let last = elapsed.keys.max(), last > first,
            let start = elapsed[first], let end = elapsed[last], end > start
        else { throw BenchError("too few step records in \(metrics)") }
        let steps = last - first
        let bytes = Double(2 * settings.workers * settings.modelBytes * steps)
        return Measurement(servers: servers, goodput: bytes / (end - start), steps: steps, seconds: end - start)
    }
}
