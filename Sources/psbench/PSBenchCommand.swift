import Foundation
import PSCLI
import PSMath
import PSPosix
import PSWire

/// `psbench`: throughput and latency benchmarks, each reported as a ratio to a baseline measured in the same run.
@main
struct PSBenchCommand {
    static let quick = Option("quick", help: "Fewer iterations and sizes (a smoke run, not for publishing).")
    static let command = Command(
        name: "psbench",
        abstract: "Measure SwiftPS against baselines measured in the same run.",
        discussion: """
            Every figure is printed next to its baseline (raw TCP send/recv loops, memcpy, sgemm peak) and their \
            ratio, as a Markdown table. Run on a quiet machine with a release build.
            """,
        subcommands: [
            Command(name: "wire", abstract: "Framed PSWire traffic vs raw sockets.", options: [quick]),
            Command(
                name: "server", abstract: "Push, pull and push-pull goodput vs raw TCP echo; apply rate vs memcpy.",
                options: [
                    quick,
                    Option(
                        "small-messages",
                        help:
                            "Only the 4 KiB round-trip rows, with as many samples as the whole run (run it "
                            + "pinned to one CPU: taskset -c 0)."),
                ]),
            Command(
                name: "train",
                abstract:
                    "Seconds per epoch with 2 workers and 1 process, per step vs a raw BSP loop (also with the "
                    + "server's check and SGD apply), each job's CPU per step while it trains; worker GFLOPS vs sgemm.",
                options: [
                    quick, Option("data", value: "data", help: "Data set (default fashion-mnist if installed)."),
                    Option("compute-only", help: "Only the forward+backward GFLOPS rows (no training runs)."),
                    Option(
                        "repeat", value: "n",
                        help:
                            "Rounds of the two jobs and the raw loops, run alternately; each row is the median.",
                        default: "3"),
                    Option(
                        "compression", value: "list",
                        help: "Compare these compressions (e.g. fp16,topk:0.01,fp16+pulls) against none instead."),
                    Option("epochs", value: "e", help: "Epochs per compression job.", default: "1"),
                ]),
            Command(
                name: "modes",
                abstract: "bsp, ssp S=1,2,4 and async with one slowed worker: waits, samples/s, accuracy.",
                options: [
                    quick, Option("data", value: "data", help: "Data set (default fashion-mnist if installed)."),
                    Option(
                        "delay-ms", value: "ms", help: "How long the slowed worker sleeps every step.", default: "5"),
                ]),
            Command(
                name: "checkpoint",
                abstract: "Checkpoint write/restore time vs a plain write + fsync; the training pause vs memcpy.",
                options: [
                    quick, Option("dir", value: "dir", help: "Where to write (default: the temporary directory)."),
                ]),
            Command(
                name: "scale",
                abstract: "Samples/s and speedup for 1, 2, 4, 8 workers (bsp, async); Amdahl fit; an SVG plot.",
                options: [
                    quick, Option("data", value: "data", help: "Data set (default fashion-mnist if installed)."),
                    Option("workers", value: "list", help: "Worker counts, comma-separated.", default: "1,2,4,8"),
                    Option(
                        "output", short: "o", value: "file.svg", help: "Where to draw the plot.", default: "scale.svg"),
                    Option("repeat", value: "n", help: "Runs per configuration; the fastest counts.", default: "1"),
                ]),
            Command(
                name: "scaleout",
                abstract:
                    "Push-pull goodput of 4 workers against 1, 2, 4 servers on rate-limited links (root, netns), "
                    + "and 2 vs 1 server on loopback.",
                options: [
                    Option("rate", value: "rate", help: "tc rate of every host's link, both ways.", default: "2gbit"),
                    Option("servers", value: "list", help: "Server counts, comma-separated.", default: "1,2,4"),
                    Option("workers", value: "k", help: "Workers, one host each.", default: "4"),
                    Option("model-mib", value: "mib", help: "Model size in MiB of float32.", default: "64"),
                    Option("steps", value: "n", help: "Measured BSP steps (after one warm-up step).", default: "4"),
                    Option("shards", value: "n", help: "--shards of every server.", default: "2"),
                    Option("loopback-only", help: "Only the loopback rows (no root needed)."),
                    Option("shaped-only", help: "Only the rate-limited rows."),
                    Option("timeout", value: "seconds", help: "Bound on each run.", default: "600"),
                    Option(
                        "repeat", value: "n", help: "Rounds over every configuration; the best counts.", default: "1"),
                    Option("netns-script", value: "path", help: "cluster/netns.sh (default: found above the binary)."),
                ]),
            Command(
                name: "sparse",
                abstract: "Row-sparse steps (2^24 x 1, 2^20 x 16; batch 512 x 39 ids): bytes and steps/s vs dense.",
                options: [quick]),
            Command(name: "all", abstract: "wire, server and train.", options: [quick]),
        ])

    static func main() {
        Signals.ignoreSIGPIPE()
        CommandLineTool.main(command) { arguments in
            let isQuick = arguments.has("quick")
            let which = arguments.commandPath.last ?? "all"
            print("psbench \(which) on \(ProcessInfo.processInfo.activeProcessorCount) CPUs, OpenBLAS \(BLAS.coreName)")
            if which == "wire" || which == "all" {
                printTable("psbench wire", try WireBench.run(quick: isQuick))
            }
            if which == "server" || which == "all" {
                if which == "server", arguments.has("small-messages") {
                    let rounds = ServerBench.smallMessageRounds(quick: isQuick)
                    printTable("psbench server (small messages)", try ServerBench.smallMessageRows(rounds: rounds))
                } else {
                    printTable("psbench server", try ServerBench.run(quick: isQuick))
                }
            }
            if which == "train" || which == "all" {
                if which == "train", let list = arguments.string("compression") {
                    let compressions = list.split(separator: ",").map(String.init)
                    let valid = compressions.allSatisfy { spelling in
                        let pulls = spelling.hasSuffix("+pulls")
                        let setting = CompressionSetting(parsing: pulls ? String(spelling.dropLast(6)) : spelling)
                        return setting != nil && (!pulls || setting == .fp16 || setting == .bf16)
                    }
                    guard !compressions.isEmpty, valid else {
                        throw UsageError(
                            "Invalid value for '--compression <list>': expected a comma-separated list of fp16, bf16, "
                                + "none, topk:FRACTION, fp16+pulls or bf16+pulls, got \(list)")
                    }
                    let epochs = try arguments.required("epochs", as: Int.self, in: 1...1000)
                    printTable(
                        "psbench train --compression",
                        try TrainBench.compressionRows(
                            data: arguments.string("data"), compressions: compressions, epochs: epochs))
                } else {
                    printTable(
                        "psbench train",
                        try TrainBench.run(
                            quick: isQuick, data: arguments.string("data"), computeOnly: arguments.has("compute-only"),
                            rounds: which == "train" ? try arguments.required("repeat", as: Int.self, in: 1...20) : 3))
                }
            }
            if which == "modes" {
                let delay = try arguments.required("delay-ms", as: Int.self, in: 0...3_600_000)
                let results = try ModesBench.run(quick: isQuick, data: arguments.string("data"), delayMillis: delay)
                ModesBench.printResults(results, delayMillis: delay)
            }
            if which == "scale" {
                let counts = (arguments.string("workers") ?? "1,2,4,8").split(separator: ",").compactMap { Int($0) }
                guard !counts.isEmpty, counts.allSatisfy({ $0 >= 1 && $0 <= 64 }) else {
                    throw UsageError("--workers must be a comma-separated list of counts between 1 and 64")
                }
                _ = try ScaleBench.run(
                    quick: isQuick, data: arguments.string("data"), workerCounts: counts,
                    repeats: max(1, try arguments.required("repeat", as: Int.self)),
                    output: arguments.string("output") ?? "scale.svg")
            }
            if which == "scaleout" {
                var settings = ScaleOutBench.Settings()
                settings.rate = arguments.string("rate") ?? "2gbit"
                _ = try ScaleOutBench.bitsPerSecond(settings.rate)
                settings.servers = (arguments.string("servers") ?? "1,2,4").split(separator: ",").compactMap { Int($0) }
                guard !settings.servers.isEmpty, settings.servers.allSatisfy({ $0 >= 1 && $0 <= 16 }) else {
                    throw UsageError("--servers must be a comma-separated list of counts between 1 and 16")
                }
                settings.workers = try arguments.required("workers", as: Int.self, in: 1...64)
                settings.modelMiB = try arguments.required("model-mib", as: Int.self, in: 1...1024)
                settings.steps = try arguments.required("steps", as: Int.self, in: 1...1000)
                settings.shardsPerServer = try arguments.required("shards", as: Int.self, in: 1...64)
                settings.timeoutSeconds = try arguments.required("timeout", as: Int.self, in: 10...86_400)
                settings.script = arguments.string("netns-script")
                settings.repeats = try arguments.required("repeat", as: Int.self, in: 1...20)
                settings.loopback = !arguments.has("shaped-only")
                settings.shaped = !arguments.has("loopback-only")
                try ScaleOutBench.run(settings)
            }
            if which == "sparse" {
                SparseBench.printRows(try SparseBench.run(quick: isQuick))
            }
            if which == "checkpoint" {
                printTable(
                    "psbench checkpoint", try CheckpointBench.run(quick: isQuick, directory: arguments.string("dir")))
            }
            return 0
        }
    }
}
