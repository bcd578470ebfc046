import Foundation
import PSClient
import PSCoordinator
import PSData
import PSLog
import PSMath
import PSModel
import PSPosix
import PSServer
import PSTraining
import PSWire
import XCTest

/// Compressed training end to end (in-process server on 127.0.0.1:0, library workers on threads): a BSP run with a
/// given compression is bitwise reproducible, and compressed runs reach about the uncompressed accuracy. The
/// Fashion-MNIST MLP-128 comparison runs only with PS_SOAK=1.
final class CompressionTrainingTests: XCTestCase {
    struct Run {
        var weights: [Float]
        var accuracy: Double
        var traffic: [WorkerTraffic]
        var totalSteps: Int
    }

    /// Trains `model` on `data` in BSP with two workers and returns the final weights and their test accuracy.
    private func train(
        compression: CompressionSetting, compressPulls: Bool = false, data: String = "digits", model: String = "mlp:32",
        batch: Int = 32,
        epochs: Int = 8, learningRate: Float = 0.1, mode: ConsistencyMode = .bsp,
        staleness: UInt64 = 0
    ) throws -> Run {
        Signals.ignoreSIGPIPE()
        var request = JobRequest()
        request.model = model
        request.data = data
        request.workers = 2
        request.batchPerWorker = batch
        request.epochs = epochs
        request.mode = mode.rawValue
        request.staleness = staleness
        request.compression = compression
        request.compressPulls = compressPulls
        let planned = try JobPlanner.plan(request)
        var config = ServerConfig()
        config.host = "127.0.0.1"
        config.port = 0
        config.shardCount = 3
        config.mode = mode
        config.staleness = staleness
        config.optimizer = OptimizerConfig(kind: .sgd, learningRate: learningRate)
        config.job = planned.job
        config.jobTensors = planned.tensors
        config.keepRunning = true
        let server = try ParameterServer(config: config, log: Logger(component: "test-server", minimumLevel: .error))
        server.start()
        defer { server.stop(reason: "test finished") }

        let outcomes = LockedValue<[Int: (error: String?, traffic: WorkerTraffic)]>([:])
        let group = DispatchGroup()
        for rank in 0..<2 {
            var options = WorkerOptions(name: "w\(rank)")
            options.host = "127.0.0.1"
            options.port = server.port
            options.progress = .quiet
            options.reconnectTimeoutSeconds = 5
            group.enter()
            Thread { [options] in
                let worker = Worker(options: options, log: Logger(component: "test-worker", minimumLevel: .error))
                var error: String? = nil
                do { try worker.run() } catch let failure { error = "\(failure)" }
                let traffic = worker.traffic
                outcomes.withLock { $0[rank] = (error, traffic) }
                group.leave()
            }.start()
        }
        XCTAssertEqual(group.wait(timeout: .now() + 300), .success, "workers did not finish")
        let results = outcomes.withLock { $0 }
        XCTAssertEqual(results.values.compactMap(\.error), [])
        let weights = try XCTUnwrap(server.store.snapshot()).weights

        let source = try DataSource(parsing: data)
        let test = try XCTUnwrap(try source.loadTest())
        let job = planned.job
        let trained = try ModelKind(parsing: model).makeModel(
            context: ModelContext(
                model: model, featureCount: job.featureCount, classCount: job.classCount, batchPerWorker: batch,
                seed: job.seed))
        let evaluation = weights.withUnsafeBufferPointer { p in
            test.features.withUnsafeBufferPointer { f in
                test.labels.withUnsafeBufferPointer { l in
                    trained.evaluate(
                        parameters: ParameterValues(flat: p, layout: TensorLayout(trained.parameters)),
                        batch: Batch(features: f, labels: l, rows: test.rowCount, featureCount: test.featureCount))
                }
            }
        }
        return Run(
            weights: weights, accuracy: try XCTUnwrap(evaluation?.accuracy),
            traffic: (0..<2).map { results[$0]?.traffic ?? WorkerTraffic() }, totalSteps: job.totalSteps)
    }

    func test_bsp_fp16AndTopK_areBitwiseReproducibleRunToRun() throws {
        let plain = try train(compression: .none, epochs: 1)
        for setting in [CompressionSetting.fp16, .topK(fraction: 0.05)] {
            let first = try train(compression: setting, epochs: 1)
            let second = try train(compression: setting, epochs: 1)
            XCTAssertEqual(first.weights.map(\.bitPattern), second.weights.map(\.bitPattern), "\(setting)")
            XCTAssertNotEqual(first.weights, plain.weights, "\(setting) changes what is applied")
        }
        let first = try train(compression: .bf16, compressPulls: true, epochs: 1)
        let second = try train(compression: .bf16, compressPulls: true, epochs: 1)
        XCTAssertEqual(first.weights.map(\.bitPattern), second.weights.map(\.bitPattern), "bf16 with compressed pulls")
    }

    /// Digits (1797 rows), MLP-32, two workers, eight epochs: fp16 and top-k 5 % stay near the uncompressed accuracy,
    /// and move half and about a tenth of the gradient bytes.
    func test_shortMLP_compressedAccuracy_isCloseToUncompressed() throws {
        let plain = try train(compression: .none)
        let fp16 = try train(compression: .fp16)
        let topK = try train(compression: .topK(fraction: 0.05))
        let fp16Pulls = try train(compression: .fp16, compressPulls: true)
        print(
            "digits mlp:32 8 epochs test accuracy: none \(plain.accuracy), fp16 \(fp16.accuracy), "
                + "topk:0.05 \(topK.accuracy), fp16 with compressed pulls \(fp16Pulls.accuracy)")
        XCTAssertEqual(fp16Pulls.accuracy, plain.accuracy, accuracy: 0.02)
        // Half the weight bytes, but for each worker's first pull (float32).
        let plainWeightBytes = Double(plain.traffic.map(\.weightBytes).reduce(0, +))
        let pullWeightBytes = Double(fp16Pulls.traffic.map(\.weightBytes).reduce(0, +))
        XCTAssertGreaterThan(pullWeightBytes, 0.5 * plainWeightBytes)
        XCTAssertLessThan(pullWeightBytes, 0.51 * plainWeightBytes)
        XCTAssertGreaterThan(plain.accuracy, 0.8)
        XCTAssertEqual(fp16.accuracy, plain.accuracy, accuracy: 0.02)
        XCTAssertEqual(topK.accuracy, plain.accuracy, accuracy: 0.05)
        let plainBytes = plain.traffic.map(\.gradientBytes).reduce(0, +)
        XCTAssertEqual(fp16.traffic.map(\.gradientBytes).reduce(0, +) * 2, plainBytes)
        XCTAssertLessThan(Double(topK.traffic.map(\.gradientBytes).reduce(0, +)), 0.11 * Double(plainBytes))
        XCTAssertEqual(fp16.traffic.map(\.weightBytes), plain.traffic.map(\.weightBytes), "pulls stay float32")
    }

    /// SSP and async jobs train compressed too (async steps through exchanges when compressed: its pushes carry
    /// no encoding).
    func test_sspAndAsync_compressed_trainThroughExchanges() throws {
        let ssp = try train(compression: .fp16, compressPulls: true, mode: .ssp, staleness: 1)
        XCTAssertGreaterThan(ssp.accuracy, 0.8)
        let async = try train(compression: .topK(fraction: 0.05), mode: .async)
        XCTAssertGreaterThan(async.accuracy, 0.8)
        for run in [ssp, async] {
            XCTAssertEqual(run.traffic.map(\.steps), [UInt64(run.totalSteps), UInt64(run.totalSteps)])
        }
    }

    /// Fashion-MNIST MLP-128, two workers x 64, two epochs: fp16 within 0.5 points and top-k 1 % within 1.5 points
    /// of the uncompressed test accuracy (PS_SOAK=1; minutes in a debug build).
    func test_soak_fashionMNIST_compressedAccuracy_isCloseToUncompressed() throws {
        guard ProcessInfo.processInfo.environment["PS_SOAK"] == "1" else {
            throw XCTSkip("set PS_SOAK=1 to run the Fashion-MNIST compression comparison")
        }
        guard FileManager.default.fileExists(atPath: DataSource.defaultFashionMNISTDirectory) else {
            throw XCTSkip("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
        }
        let run = { (setting: CompressionSetting) in
            try self.train(compression: setting, data: "fashion-mnist", model: "mlp:128", batch: 64, epochs: 2)
        }
        let plain = try run(.none)
        let fp16 = try run(.fp16)
        let topK = try run(.topK(fraction: 0.01))
        print(
            "fashion-mnist mlp:128 2 epochs test accuracy: none \(plain.accuracy), fp16 \(fp16.accuracy), "
                + "topk:0.01 \(topK.accuracy)")
        XCTAssertEqual(fp16.accuracy, plain.accuracy, accuracy: 0.005)
        XCTAssertEqual(topK.accuracy, plain.accuracy, accuracy: 0.015)
    }
}
