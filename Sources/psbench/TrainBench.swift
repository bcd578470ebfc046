import Foundation
import PSData
import PSMath
import PSModel
import PSPosix

/// `psbench train`: rounds (`--repeat`, medians reported) of one epoch of MLP-128 with two worker processes (batch 64
/// each) and with one process (batch 128), each job's seconds per step against a raw BSP loop of the same shape
/// (`RawBSPLoop`) and its CPU time per step while it trains (`JobCPUSampler`); then the worker's forward+backward
/// GFLOPS (mlp:128, and cnn:32,64,128 on 28x28 images) against single-thread sgemm peak. The compute rows time the
/// calling thread's CPU time (BLAS runs on it with one thread), so a busy machine slows them less than wall time would.
enum TrainBench {
    static func run(quick: Bool, data: String?, computeOnly: Bool = false, rounds: Int = 3) throws -> [BenchRow] {
        // The raw loops' and the compute rows' passes run on one BLAS thread each, as a worker's do.
        BLAS.setThreadCount(1)
        let dataSet = data ?? defaultData
        let epochs = computeOnly ? nil : try epochRounds(data: dataSet, rounds: rounds, rawSteps: quick ? 100 : 300)
        var rows = epochs.map { epochRows($0, dataSet: dataSet) } ?? []
        let peak = sgemmPeak()
        let flopsPerRow = ModelComputer(spec: mlpSpec, maxBatch: 1).flopsPerRow
        let (pass64, pass128) = (modelPassSeconds(batch: 64), modelPassSeconds(batch: 128))
        for (batch, seconds) in [(64, pass64), (128, pass128)] {
            rows.append(
                BenchRow(
                    name: "mlp:128 forward+backward GFLOPS, batch \(batch)",
                    value: flopsPerRow * Double(batch) / seconds / 1e9, unit: "GFLOPS", baseline: peak,
                    baselineName: "sgemm 1024^3, 1 thread"))
        }
        if let epochs {
            rows += rawLoopRows(epochs)
        }
        rows.append(
            BenchRow(
                name: "cnn:32,64,128 forward+backward GFLOPS, batch 64", value: try cnnGFLOPS(batch: 64),
                unit: "GFLOPS", baseline: peak, baselineName: "sgemm 1024^3, 1 thread"))
        return rows
    }

    /// `psbench train --compression fp16,topk:0.01,bf16+pulls`: the two-worker MLP-128 job (batch 64 each)
    /// uncompressed and with each compression in the same run (`+pulls`: with `--compress-pulls`): gradient and
    /// weight bytes per worker step, seconds per epoch and the final test accuracy, each against the uncompressed
    /// job.
    static func compressionRows(data: String?, compressions: [String], epochs: Int) throws -> [BenchRow] {
        let dataSet = data ?? defaultData
        let plain = try compressedJob(data: dataSet, compression: "none", epochs: epochs)
        var rows: [BenchRow] = []
        for compression in compressions {
            let run = try compressedJob(data: dataSet, compression: compression, epochs: epochs)
            rows.append(
                BenchRow(
                    name: "\(dataSet) mlp:128 gradient bytes per worker step, \(compression)",
                    value: run.gradientBytesPerStep, unit: "B", baseline: plain.gradientBytesPerStep,
                    baselineName: "uncompressed", lowerIsBetter: true))
            rows.append(
                BenchRow(
                    name: "\(dataSet) mlp:128 weight bytes per worker step, \(compression)",
                    value: run.weightBytesPerStep, unit: "B", baseline: plain.weightBytesPerStep,
                    baselineName: "uncompressed", lowerIsBetter: true))
            rows.append(
                BenchRow(
                    name: "\(dataSet) mlp:128 epoch, 2 workers x 64, \(compression) (s)", value: run.epochSeconds,
                    unit: "s", baseline: plain.epochSeconds, baselineName: "uncompressed", lowerIsBetter: true))
            rows.append(
                BenchRow(
                    name: "\(dataSet) mlp:128 test accuracy after \(epochs) epoch(s), \(compression)",
                    value: run.accuracy, unit: "", baseline: plain.accuracy, baselineName: "uncompressed"))
        }
        return rows
    }

    static var defaultData: String {
        FileManager.default.fileExists(atPath: "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")
            ? "fashion-mnist" : "digits"
    }

    /// One two-worker job with `--compression`; bytes per step from the workers' `finished` lines.
    static func compressedJob(data: String, compression: String, epochs: Int) throws -> (
        gradientBytesPerStep: Double, weightBytesPerStep: Double, epochSeconds: Double, accuracy: Double
    ) {
        let pulls = compression.hasSuffix("+pulls")
        let (records, logs, _) = try runLocalJobWithWorkerLogs(
            name: "compress", workers: 2,
            serverArguments: [
                "--workers", "2", "--model", "mlp:128", "--data", data, "--batch", "64", "--epochs", "\(epochs)",
                "--compression", pulls ? String(compression.dropLast("+pulls".count)) : compression,
            ] + (pulls ? ["--compress-pulls"] : []))
        var bytes = 0.0
        var weightBytes = 0.0
        var steps = 0.0
        for log in logs {
            guard let line = log.split(separator: "\n").last(where: { $0.contains("event=finished") }),
                let sent = field("gradient_bytes", in: line), let received = field("weight_bytes", in: line),
                let done = field("steps", in: line)
            else { throw BenchError("a worker of the \(compression) job logged no finished line") }
            bytes += sent
            weightBytes += received
            steps += done
        }
        let accuracy = records.last { $0["type"] as? String == "epoch" }?["test_accuracy"] as? Double ?? .nan
        return (
            bytes / max(steps, 1), weightBytes / max(steps, 1),
            try epochSeconds(records: records, workers: 2, batch: 64).seconds, accuracy
        )
    }

    /// The number after ` key=` in a log line.
    static func field(_ key: String, in line: Substring) -> Double? {
        guard let range = line.range(of: " \(key)=") else { return nil }
        return Double(line[range.upperBound...].prefix { $0.isNumber || $0 == "." })
    }

    /// One job's measurements (`epochSeconds(data:workers:batch:)`).
    struct JobRun {
        let seconds: Double
        let samplesPerSecond: Double
        let stepSeconds: Double
        let cpu: JobCPUSampler.SteadyState?
    }

    /// One round of the epoch comparison: both jobs, then the raw BSP loop in both shapes, back to back, so that the
    /// ratios taken within a round saw the same machine. This machine kind is shared and its speed drifts by tens of
    /// percent from minute to minute: one round's ratio can land anywhere in that drift, the median of several
    /// alternating rounds much less so.
    struct EpochRound {
        let double: JobRun
        let single: JobRun
        let raw64: RawBSPLoop.Measurement
        let raw128: RawBSPLoop.Measurement
        /// The raw loop with the server's check and SGD apply (`RawBSPLoop.measure(serverWork: true)`).
        let working64: RawBSPLoop.Measurement
        let working128: RawBSPLoop.Measurement

        /// 2 workers x 64 over 1 worker x 128, seconds per step (both jobs take the same steps per epoch).
        var ratio: Double { double.stepSeconds / single.stepSeconds }
        /// The raw BSP loop's same ratio: the least any parameter server over TCP could reach in this round.
        var rawRatio: Double { raw64.stepSeconds / raw128.stepSeconds }
        /// The same with the arithmetic every SGD parameter server does per step: the least one could reach.
        var workingRatio: Double { working64.stepSeconds / working128.stepSeconds }
    }

    /// `rounds` rounds of one epoch of mlp:128 with two workers of batch 64 and with one worker of batch 128, each
    /// followed by the raw BSP loop in both shapes for `rawSteps` timed steps (300; 100 with `--quick`), without and
    /// with the server's arithmetic.
    static func epochRounds(data dataSet: String, rounds: Int, rawSteps: Int) throws -> [EpochRound] {
        try (0..<max(rounds, 1)).map { _ in
            let single = try epochSeconds(data: dataSet, workers: 1, batch: 128)
            let double = try epochSeconds(data: dataSet, workers: 2, batch: 64)
            let raw128 = try RawBSPLoop.measure(clients: 1, batch: 128, steps: rawSteps)
            let raw64 = try RawBSPLoop.measure(clients: 2, batch: 64, steps: rawSteps)
            let working128 = try RawBSPLoop.measure(clients: 1, batch: 128, steps: rawSteps, serverWork: true)
            let working64 = try RawBSPLoop.measure(clients: 2, batch: 64, steps: rawSteps, serverWork: true)
            return EpochRound(
                double: double, single: single, raw64: raw64, raw128: raw128, working64: working64,
                working128: working128)
        }
    }

    /// "a, b, c": each round's ratio in round order, two decimals, for a row's baseline name.
    static func roundList(_ ratios: [Double]) -> String {
        ratios.map { String(format: "%.2fx", $0) }.joined(separator: ", ")
    }

    /// The epoch rows, each the median over the rounds: seconds per epoch and samples per second of 2 workers x 64
    /// against 1 worker x 128, and each job's CPU time per step while it trained (server and workers, against what
    /// the cores offered; and the server's share).
    static func epochRows(_ rounds: [EpochRound], dataSet: String) -> [BenchRow] {
        var rows = [
            BenchRow(
                name: "\(dataSet) mlp:128 epoch, 2 workers x 64 (s)", value: median(rounds.map(\.double.seconds)),
                unit: "s", baseline: median(rounds.map(\.single.seconds)),
                baselineName: "1 worker x 128; medians of \(rounds.count) round(s)", lowerIsBetter: true
            ),
            BenchRow(
                name: "\(dataSet) samples/s, 2 workers x 64", value: median(rounds.map(\.double.samplesPerSecond)),
                unit: "samples/s", baseline: median(rounds.map(\.single.samplesPerSecond)),
                baselineName: "1 worker x 128"),
        ]
        let cores = ProcessInfo.processInfo.activeProcessorCount
        for (name, jobs) in [("2 workers x 64", rounds.map(\.double)), ("1 worker x 128", rounds.map(\.single))] {
            let sampled = jobs.compactMap(\.cpu)
            guard !sampled.isEmpty else { continue }
            let steps = sampled.map(\.steps).reduce(0, +)
            rows += [
                BenchRow(
                    name: "mlp:128 job, \(name): CPU time per step (ms)",
                    value: median(sampled.map(\.totalSecondsPerStep)) * 1e3, unit: "ms",
                    baseline: median(sampled.map(\.coreSecondsPerStep)) * 1e3,
                    baselineName: "\(cores) cores x its wall time per step (\(steps) steps sampled)"),
                BenchRow(
                    name: "mlp:128 job, \(name): server CPU time per step (ms)",
                    value: median(sampled.map(\.serverSecondsPerStep)) * 1e3, unit: "ms",
                    baseline: median(sampled.map(\.totalSecondsPerStep)) * 1e3, baselineName: "the whole job's"),
            ]
        }
        return rows
    }

    /// Runs psserver + workers for one epoch and returns the training time per epoch from the metrics, and the
    /// CPU time per step while it trained (nil where `/proc` cannot be read or the epoch was too short to sample).
    static func epochSeconds(data: String, workers: Int, batch: Int) throws -> JobRun {
        let job = try runLocalJobWithWorkerLogs(
            name: "train", workers: workers,
            serverArguments: [
                "--workers", "\(workers)", "--model", "mlp:128", "--data", data, "--batch", "\(batch)", "--epochs", "1",
            ])
        let epoch = try epochSeconds(records: job.records, workers: workers, batch: batch)
        let lastStep = job.records.compactMap { $0["type"] as? String == "step" ? $0["step"] as? Int : nil }.max() ?? 0
        return JobRun(
            seconds: epoch.seconds, samplesPerSecond: epoch.samplesPerSecond, stepSeconds: epoch.stepSeconds,
            cpu: job.cpu.steadyState(warmupSteps: 20, lastStep: lastStep))
    }

    /// The training time per epoch (and samples per second) a job's step records show.
    static func epochSeconds(records: [[String: Any]], workers: Int, batch: Int) throws -> (
        seconds: Double, samplesPerSecond: Double, stepSeconds: Double
    ) {
        var first: (Int, Double)? = nil
        var last: (Int, Double)? = nil
        for object in records {
            guard object["type"] as? String == "step", let step = object["step"] as? Int,
                let elapsed = object["elapsed_s"] as? Double
            else { continue }
            if first == nil { first = (step, elapsed) }
            last = (step, elapsed)
        }
        guard let first, let last, last.0 > first.0 else { throw BenchError("no step records (\(workers) workers)") }
        let perStep = (last.1 - first.1) / Double(last.0 - first.0)
        let steps = Double(last.0 + 1)
        let seconds = perStep * steps
        return (seconds, steps * Double(workers * batch) / seconds, perStep)
    }

    static func sgemmPeak() -> Double {
        let n = 1024
        let a = [Float](repeating: 0.5, count: n * n)
        var c = [Float](repeating: 0, count: n * n)
        var best = Double.infinity
        for _ in 0..<6 {
            let start = ThreadCPUClock.nanoseconds()
            a.withUnsafeBufferPointer { p in
                c.withUnsafeMutableBufferPointer { out in
                    BLAS.sgemm(
                        transposeA: false, transposeB: false, m: n, n: n, k: n, alpha: 1, a: p.baseAddress!, lda: n,
                        b: p.baseAddress!, ldb: n, beta: 0, c: out.baseAddress!, ldc: n)
                }
            }
            best = min(best, Double(ThreadCPUClock.nanoseconds() - start))
        }
        return 2 * Double(n * n * n) / best
    }

    /// The best of 20 forward+backward passes of cnn:32,64,128 on 28x28x1 inputs, in GFLOPS
    /// (`ConvNet.Geometry.flopsPerRow`: the convolution and dense products only).
    static func cnnGFLOPS(batch: Int) throws -> Double {
        let geometry = try ConvNet.Geometry(
            kind: .cnn(channels1: 32, channels2: 64, hidden: 128), inputCount: 784, classCount: 10)
        let model = ConvNet(geometry: geometry, seed: 0, maxBatch: batch)
        let layout = TensorLayout(model.parameters)
        let parameters = model.parameters.flatMap { $0.initializer.values(shape: $0.shape) }
        var gradient = [Float](repeating: 0, count: layout.totalCount)
        let features = (0..<(batch * 784)).map { Float($0 % 255) / 255 }
        let labels = (0..<batch).map { Float($0 % 10) }
        var best = Double.infinity
        for _ in 0..<20 {
            let start = ThreadCPUClock.nanoseconds()
            parameters.withUnsafeBufferPointer { p in
                features.withUnsafeBufferPointer { f in
                    labels.withUnsafeBufferPointer { l in
                        gradient.withUnsafeMutableBufferPointer { g in
                            _ = model.lossAndGradient(
                                parameters: ParameterValues(flat: p, layout: layout),
                                batch: Batch(features: f, labels: l, rows: batch, featureCount: 784),
                                gradient: GradientValues(flat: g, layout: layout))
                        }
                    }
                }
            }
            best = min(best, Double(ThreadCPUClock.nanoseconds() - start))
        }
        return geometry.flopsPerRow * Double(batch) / best
    }

    /// The model of the epoch rows: mlp:128 on 784 inputs and 10 classes.
    static let mlpSpec = ModelSpec(kind: .mlp(hidden: [128]), inputCount: 784, outputCount: 10, seed: 0)

    /// The jobs' seconds per step against the raw BSP loop's (`RawBSPLoop`: real passes and the same bytes over raw
    /// sockets with a barrier, nothing else), and the epoch ratio (2 workers x 64 over 1 worker x 128; both jobs take
    /// the same number of steps per worker) against the raw loop's ratio: the least a step costs on this machine,
    /// so the best ratio any parameter server over TCP could reach here. The next row adds to the raw loop the
    /// arithmetic every SGD parameter server must also do (the check and the mean's apply, in parallel slices). Two
    /// more give the raw loop's CPU time per step against the cores' capacity over its step: how close that least
    /// work alone comes to filling the machine. Each row is the median over the rounds; a ratio row's is the median
    /// of the rounds' own ratios.
    static func rawLoopRows(_ rounds: [EpochRound]) -> [BenchRow] {
        let cores = ProcessInfo.processInfo.activeProcessorCount
        let (raw64, raw128) = (median(rounds.map(\.raw64.stepSeconds)), median(rounds.map(\.raw128.stepSeconds)))
        var rows = [
            BenchRow(
                name: "mlp:128 step, 2 workers x 64 (ms)", value: median(rounds.map(\.double.stepSeconds)) * 1e3,
                unit: "ms", baseline: raw64 * 1e3, baselineName: "raw BSP loop, 2 clients x 64", lowerIsBetter: true),
            BenchRow(
                name: "mlp:128 step, 1 worker x 128 (ms)", value: median(rounds.map(\.single.stepSeconds)) * 1e3,
                unit: "ms", baseline: raw128 * 1e3, baselineName: "raw BSP loop, 1 client x 128", lowerIsBetter: true),
            BenchRow(
                name: "mlp:128 epoch ratio 2 workers x 64 / 1 worker x 128 (x)", value: median(rounds.map(\.ratio)),
                unit: "x", baseline: median(rounds.map(\.rawRatio)),
                baselineName: String(
                    format: "bound: raw BSP loop ratio (%.0f us / %.0f us per step); ", raw64 * 1e6, raw128 * 1e6)
                    + "median of \(rounds.count) round(s): ours \(roundList(rounds.map(\.ratio))); "
                    + "raw \(roundList(rounds.map(\.rawRatio)))",
                lowerIsBetter: true),
            BenchRow(
                name: "mlp:128 epoch ratio, raw BSP loop with the server's check and SGD apply (x)",
                value: median(rounds.map(\.workingRatio)), unit: "x", baseline: median(rounds.map(\.rawRatio)),
                baselineName: String(
                    format: "the raw loop without them; %.0f us / %.0f us per step; ",
                    median(rounds.map(\.working64.stepSeconds)) * 1e6,
                    median(rounds.map(\.working128.stepSeconds)) * 1e6)
                    + "rounds: \(roundList(rounds.map(\.workingRatio)))",
                lowerIsBetter: true),
        ]
        for (name, raw) in [("2 clients x 64", rounds.map(\.raw64)), ("1 client x 128", rounds.map(\.raw128))] {
            rows.append(
                BenchRow(
                    name: "raw BSP loop, \(name): CPU time per step (ms)",
                    value: median(raw.map(\.cpuSecondsPerStep)) * 1e3, unit: "ms",
                    baseline: median(raw.map(\.coreSecondsPerStep)) * 1e3,
                    baselineName: "\(cores) cores x its wall time per step"))
        }
        return rows
    }

    /// The best of 20 forward+backward passes of mlp:128 at `batch`, in seconds of the calling thread's CPU time.
    static func modelPassSeconds(batch: Int) -> Double {
        var pass = MLPPass(batch: batch)
        var best = Double.infinity
        for _ in 0..<20 {
            let start = ThreadCPUClock.nanoseconds()
            pass.run()
            best = min(best, Double(ThreadCPUClock.nanoseconds() - start))
        }
        return best / 1e9
    }
}

/// One forward+backward pass of mlp:128 (`TrainBench.mlpSpec`) on a fixed synthetic batch, with its own model,
/// parameters and gradient: what one worker computes per step in the train rows.
struct MLPPass {
    let batch: Int
    private let computer: ModelComputer
    var parameters: [Float]
    var gradient: [Float]
    private let features: [Float]
    private let labels: [Float]

    init(batch: Int) {
        let spec = TrainBench.mlpSpec
        self.batch = batch
        computer = ModelComputer(spec: spec, maxBatch: batch)
        parameters = spec.initialParameters()
        gradient = [Float](repeating: 0, count: spec.parameterCount)
        features = (0..<(batch * spec.inputCount)).map { Float($0 % 255) / 255 }
        labels = (0..<batch).map { Float($0 % spec.outputCount) }
    }

    /// Computes the gradient of the batch at `parameters` into `gradient`.
    mutating func run() {
        parameters.withUnsafeBufferPointer { p in
            features.withUnsafeBufferPointer { f in
                labels.withUnsafeBufferPointer { l in
                    gradient.withUnsafeMutableBufferPointer { g in
                        _ = computer.lossAndGradient(parameters: p, features: f, labels: l, rows: batch, gradient: g)
                    }
                }
            }
        }
    }
}
