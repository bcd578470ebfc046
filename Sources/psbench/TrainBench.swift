import Foundation
import PSData
import PSMath
import PSModel
import PSPosix

/// `psbench train`: one epoch of MLP-128 with two worker processes (batch 64 each) and with one process
/// (batch 128), and the worker's forward+backward GFLOPS (mlp:128, and cnn:32,64,128 on 28x28 images) against
/// single-thread sgemm peak. The compute rows time the calling thread's CPU time (BLAS runs on it with one thread), so
/// a busy machine slows them less than wall time would.
enum TrainBench {
    static func run(quick: Bool, data: String?, computeOnly: Bool = false) throws -> [BenchRow] {
        var rows: [BenchRow] = []
        if !computeOnly { rows += try epochRows(data: data) }
        BLAS.setThreadCount(1)
        let peak = sgemmPeak()
        for batch in [64, 128] {
            rows.append(
                BenchRow(
                    name: "mlp:128 forward+backward GFLOPS, batch \(batch)", value: modelGFLOPS(batch: batch),
                    unit: "GFLOPS", baseline: peak, baselineName: "sgemm 1024^3, 1 thread"))
        }
        rows.append(
            BenchRow(
                name: "cnn:32,64,128 forward+backward GFLOPS, batch 64", value: try cnnGFLOPS(batch: 64),
                unit: "GFLOPS", baseline: peak, baselineName: "sgemm 1024^3, 1 thread"))
        return rows
    }

    /// One epoch of mlp:128 with two workers of batch 64 against one worker of batch 128.
    static func epochRows(data: String?) throws -> [BenchRow] {
        let dataSet =
            data
            ?? (FileManager.default.fileExists(atPath: "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")
                ? "fashion-mnist" : "digits")
        let single = try epochSeconds(data: dataSet, workers: 1, batch: 128)
        let double = try epochSeconds(data: dataSet, workers: 2, batch: 64)
        return [
            BenchRow(
                name: "\(dataSet) mlp:128 epoch, 2 workers x 64 (s)", value: double.seconds, unit: "s",
                baseline: single.seconds, baselineName: "1 worker x 128", lowerIsBetter: true),
            BenchRow(
                name: "\(dataSet) samples/s, 2 workers x 64", value: double.samplesPerSecond, unit: "samples/s",
                baseline: single.samplesPerSecond, baselineName: "1 worker x 128"),
        ]
    }

    /// Runs psserver + workers for one epoch and returns the training time per epoch from the metrics.
    static func epochSeconds(data: String, workers: Int, batch: Int) throws -> (
        seconds: Double, samplesPerSecond: Double
    ) {
        let records = try runLocalJob(
            name: "train", workers: workers,
            serverArguments: [
                "--workers", "\(workers)", "--model", "mlp:128", "--data", data, "--batch", "\(batch)", "--epochs", "1",
            ])
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
        return (seconds, steps * Double(workers * batch) / seconds)
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

    static func modelGFLOPS(batch: Int) -> Double {
        let spec = ModelSpec(kind: .mlp(hidden: [128]), inputCount: 784, outputCount: 10, seed: 0)
        let computer = ModelComputer(spec: spec, maxBatch: batch)
        let parameters = spec.initialParameters()
        var gradient = [Float](repeating: 0, count: spec.parameterCount)
        let features = (0..<(batch * 784)).map { Float($0 % 255) / 255 }
        let labels = (0..<batch).map { Float($0 % 10) }
        var best = Double.infinity
        for _ in 0..<20 {
            let start = ThreadCPUClock.nanoseconds()
            parameters.withUnsafeBufferPointer { p in
                features.withUnsafeBufferPointer { f in
                    labels.withUnsafeBufferPointer { l in
                        gradient.withUnsafeMutableBufferPointer { g in
                            _ = computer.lossAndGradient(
                                parameters: p, features: f, labels: l, rows: batch, gradient: g)
                        }
                    }
                }
            }
            best = min(best, Double(ThreadCPUClock.nanoseconds() - start))
        }
        return computer.flopsPerRow * Double(batch) / best
    }
}
