import Foundation
import PSPosix

/// `psbench modes`: the consistency modes side by side with one slowed worker: an MLP on digits (or
/// Fashion-MNIST) with 2 and 4 worker processes in bsp, ssp S=1,2,4 and async. Reports the fraction of time the
/// workers spend in pulls (the server-side wait for the barrier or the SSP bound, plus the transfer), samples/s
/// and the final test accuracy.
enum ModesBench {
    struct Result {
        let workers: Int
        let mode: String
        let waitFraction: Double
        let fastWaitFraction: Double
        /// From the step records: a step counts once every live worker reported it (the slowest worker's pace).
        let samplesPerSecond: Double
        /// The sum of each worker's own samples/s (fast workers in ssp/async count their extra steps).
        let workerSamplesPerSecond: Double
        let accuracy: Double
    }

    static let modes: [(name: String, flags: [String])] = [
        ("bsp", ["--mode", "bsp"]),
        ("ssp S=1", ["--mode", "ssp", "--staleness", "1"]),
        ("ssp S=2", ["--mode", "ssp", "--staleness", "2"]),
        ("ssp S=4", ["--mode", "ssp", "--staleness", "4"]),
        ("async", ["--mode", "async"]),
    ]

    static func run(quick: Bool, data: String?, delayMillis: Int) throws -> [Result] {
        let dataSet =
            data
            ?? (FileManager.default.fileExists(atPath: "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")
                ? "fashion-mnist" : "digits")
        let epochs = quick ? 2 : (dataSet == "digits" ? 10 : 1)
        var results: [Result] = []
        for workers in [2, 4] {
            for mode in modes {
                results.append(
                    try runJob(
                        data: dataSet, workers: workers, epochs: epochs, modeName: mode.name, modeFlags: mode.flags,
                        delayMillis: delayMillis))
            }
        }
        // Async with many workers at lr 0.1: stale gradients hurt; staleness-aware scaling should recover.
        for (name, flags) in [
            ("async, 8 workers", ["--mode", "async"]),
            ("async + scale, 8 workers", ["--mode", "async", "--stale-policy", "scale"]),
        ] {
            results.append(
                try runJob(
                    data: dataSet, workers: 8, epochs: epochs, modeName: name, modeFlags: flags, delayMillis: 0))
        }
        return results
    }

    static func printResults(_ results: [Result], delayMillis: Int) {
        print("\n### psbench modes (the last worker sleeps \(delayMillis) ms every step)\n")
        print(
            "| workers | mode | pull/wait time, all workers | pull/wait time, fast workers | samples/s (complete steps) "
                + "| samples/s (sum over workers) | accuracy |")
        print("|---|---|---|---|---|---|---|")
        for r in results {
            print(
                String(
                    format: "| %d | %@ | %.1f %% | %.1f %% | %.0f | %.0f | %.4f |", r.workers, r.mode,
                    100 * r.waitFraction, 100 * r.fastWaitFraction, r.samplesPerSecond, r.workerSamplesPerSecond,
                    r.accuracy))
        }
    }

    static func runJob(
        data: String, workers: Int, epochs: Int, modeName: String, modeFlags: [String], delayMillis: Int
    ) throws -> Result {
        let binDirectory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        let directory = NSTemporaryDirectory() + "psbench-modes-\(Host.processID())-\(workers)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let metrics = directory + "/metrics.jsonl"
        let serverLog = directory + "/server.log"
        var environment = ProcessInfo.processInfo.environment
        environment["OPENBLAS_NUM_THREADS"] = "1"
        let (server, port) = try startLocalServer(
            binDirectory: binDirectory,
            arguments: [
                "--workers", "\(workers)", "--model", "mlp:32", "--data", data, "--batch", "\(64 / workers)",
                "--epochs", "\(epochs)", "--lr", "0.1", "--metrics-out", metrics,
            ] + modeFlags, logPath: serverLog, environment: environment)
        defer { if server.isRunning { server.terminate() } }
        var children: [(Process, String)] = []
        for rank in 0..<workers {
            let log = directory + "/worker\(rank).log"
            _ = FileManager.default.createFile(atPath: log, contents: nil)
            let worker = Process()
            worker.executableURL = binDirectory.appendingPathComponent("psworker")
            worker.arguments = ["--server", "127.0.0.1:\(port)", "--name", "bench\(rank)", "--quiet"]
            if rank == workers - 1 { worker.arguments! += ["--debug-step-delay-ms", "\(delayMillis)"] }
            worker.standardError = FileHandle(forWritingAtPath: log)
            worker.environment = environment
            try worker.run()
            children.append((worker, log))
        }
        var fractions: [Double] = []
        var workerRate = 0.0
        for (child, log) in children {
            child.waitUntilExit()
            let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            guard let range = text.range(of: "pull_wait_fraction=") else {
                throw BenchError("a worker did not finish (\(modeName), \(workers) workers): \(text)")
            }
            fractions.append(Double(String(text[range.upperBound...].prefix { $0 == "." || $0.isNumber })) ?? 0)
            if let rate = text.range(of: "samples_per_s=") {
                workerRate += Double(String(text[rate.upperBound...].prefix { $0.isNumber })) ?? 0
            }
        }
        server.waitUntilExit()
        var samples = 0
        var elapsed = 0.0
        var firstElapsed: Double? = nil
        var accuracy = 0.0
        let text = try String(contentsOfFile: metrics, encoding: .utf8)
        for line in text.split(separator: "\n") {
            guard let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
                continue
            }
            if object["type"] as? String == "step" {
                // Throughput from the first step record on (not counting start-up and data loading).
                let seconds = object["elapsed_s"] as? Double ?? 0
                if firstElapsed == nil {
                    firstElapsed = seconds
                } else {
                    samples += object["samples"] as? Int ?? 0
                }
                elapsed = max(elapsed, seconds)
            } else if object["type"] as? String == "epoch" {
                accuracy = object["test_accuracy"] as? Double ?? accuracy
            }
        }
        let fast = fractions.dropLast()
        return Result(
            workers: workers, mode: modeName, waitFraction: fractions.reduce(0, +) / Double(max(fractions.count, 1)),
            fastWaitFraction: fast.reduce(0, +) / Double(max(fast.count, 1)),
            samplesPerSecond: Double(samples) / max(elapsed - (firstElapsed ?? 0), 1e-9),
            workerSamplesPerSecond: workerRate, accuracy: accuracy)
    }
}
