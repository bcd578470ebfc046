import Foundation
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

/// `--model sparse-lr` through the worker library against an in-process server: BSP with two workers is bitwise
/// reproducible, equals one process applying the rank-order mean of the same gradients with the same lazy
/// optimizer, and reaches the accuracy of full-batch logistic regression on the same data.
final class SparseWorkerTests: XCTestCase {
    static let data = "synthetic-sparse:4000,1000,10,5"
    static let learningRate: Float = 0.3

    private func run(
        workers: Int, batch: Int, epochs: Int, maxSteps: Int? = nil, mode: ConsistencyMode = .bsp,
        model modelName: String = "sparse-lr",
        configure: (inout ServerConfig) -> Void = { _ in }
    ) throws -> (table: [Float], dense: [Float]) {
        Signals.ignoreSIGPIPE()
        var request = JobRequest()
        request.model = modelName
        request.data = Self.data
        request.workers = workers
        request.batchPerWorker = batch
        request.epochs = epochs
        request.mode = mode.rawValue
        let planned = try JobPlanner.plan(request)
        let model = try XCTUnwrap(SparseModels.model(for: planned.job))
        return try runSparseJob(
            planned, model: model, optimizer: OptimizerConfig(kind: .adagrad, learningRate: Self.learningRate),
            mode: mode, maxSteps: maxSteps, configure: configure)
    }

    /// One process: each rank's gradient on its slice, summed in rank order, times 1/K, then the lazy row form of
    /// `optimizer` on the table and `optimizer` on the bias: what a BSP run through the server must equal.
    private func oneProcess(
        workers: Int, batch: Int, epochs: Int, optimizer: OptimizerConfig
    ) throws -> (table: [Float], bias: [Float]) {
        let (train, _) = try SparseDataSource(parsing: Self.data).loadSplits()
        let model = SparseLogisticRegression(featureCount: train.featureCount, classCount: 2)
        let order = DataOrder(rowCount: train.rowCount, workerCount: workers, batchPerWorker: batch, seed: 0)
        var table = [Float](repeating: 0, count: train.featureCount)
        var tableState = RowOptimizerState(
            config: try XCTUnwrap(RowOptimizerConfig(dense: optimizer)), rows: train.featureCount, width: 1)
        var bias: [Float] = [0]
        var biasState = OptimizerState(config: optimizer, count: 1)
        for step in 0..<(order.stepsPerEpoch * epochs) {
            var sums: [UInt64: Float] = [:]
            var biasSum: Float = 0
            for rank in 0..<workers {
                let rows = train.batch(rows: order.rows(step: step, rank: rank))
                let examples = SparseExamples(
                    rowStarts: rows.rowStarts, featureIds: rows.featureIds, values: rows.values, labels: rows.labels)
                let touched = examples.touchedRows
                var g: [Float] = []
                var gb: [Float] = []
                _ = model.lossAndGradient(
                    examples, touched: touched, rows: touched.map { table[Int($0)] }, bias: bias, rowGradient: &g,
                    biasGradient: &gb)
                for (slot, id) in touched.enumerated() { sums[id] = (sums[id] ?? 0) + g[slot] }
                biasSum = rank == 0 ? gb[0] : biasSum + gb[0]
            }
            let ids = sums.keys.sorted()
            let mean = ids.map { sums[$0]! * (1 / Float(workers)) }
            mean.withUnsafeBufferPointer { tableState.apply(rows: ids.map { Int($0) }, gradient: $0, weights: &table) }
            var biasMean = [biasSum * (1 / Float(workers))]
            bias.withUnsafeMutableBufferPointer { w in
                biasMean.withUnsafeMutableBufferPointer { g in biasState.apply(weights: w, gradient: g) }
            }
        }
        return (table, bias)
    }

    func test_bspTwoWorkers_adam_isLazyAdamOnTheTable_equalsOneProcess() throws {
        let adam = OptimizerConfig(kind: .adam, learningRate: 0.05)
        let served = try run(workers: 2, batch: 50, epochs: 1) { $0.optimizer = adam }
        let (table, bias) = try oneProcess(workers: 2, batch: 50, epochs: 1, optimizer: adam)
        XCTAssertEqual(served.table, table, "lazy Adam through the server equals the one-process computation")
        XCTAssertEqual(served.dense, bias)
        let (train, test) = try SparseDataSource(parsing: Self.data).loadSplits()
        let testSet = try XCTUnwrap(test)
        let trained = SparseLogisticRegression(featureCount: train.featureCount, classCount: 2).evaluate(
            SparseExamples(
                rowStarts: testSet.rowStarts, featureIds: testSet.featureIds, values: testSet.values,
                labels: testSet.labels),
            touched: (0..<UInt64(train.featureCount)).map { $0 }, rows: served.table, bias: served.dense)
        print("sparse-lr BSP 2 workers, lazy Adam, one epoch: test accuracy \(trained.accuracy!)")
        XCTAssertGreaterThan(trained.accuracy!, 0.7, "the table trained")
    }

    func test_bspTwoWorkers_isBitwiseReproducible_equalsOneProcess_andReachesFullBatchAccuracy() throws {
        let (workers, batch, epochs) = (2, 50, 3)
        let first = try run(workers: workers, batch: batch, epochs: epochs)
        let second = try run(workers: workers, batch: batch, epochs: epochs)
        XCTAssertEqual(first.table, second.table, "bitwise reproducible")
        XCTAssertEqual(first.dense, second.dense)

        let (train, test) = try SparseDataSource(parsing: Self.data).loadSplits()
        let model = SparseLogisticRegression(featureCount: train.featureCount, classCount: 2)
        let (table, bias) = try oneProcess(
            workers: workers, batch: batch, epochs: epochs,
            optimizer: OptimizerConfig(kind: .adagrad, learningRate: Self.learningRate))
        XCTAssertEqual(first.table, table, "equals the one-process computation")
        XCTAssertEqual(first.dense, bias)

        // Accuracy within a point of full-batch logistic regression on the same data. That baseline is
        // single-threaded arithmetic, which ThreadSanitizer only slows down (`make tsan` sets PS_TSAN=1).
        if ProcessInfo.processInfo.environment["PS_TSAN"] == "1" { return }
        let testSet = try XCTUnwrap(test)
        let testExamples = SparseExamples(
            rowStarts: testSet.rowStarts, featureIds: testSet.featureIds, values: testSet.values,
            labels: testSet.labels)
        let all = (0..<UInt64(train.featureCount)).map { $0 }
        let trained = model.evaluate(testExamples, touched: all, rows: first.table, bias: first.dense)
        var fullTable = [Float](repeating: 0, count: train.featureCount)
        var fullBias: [Float] = [0]
        var fullState = RowOptimizerState(
            config: RowOptimizerConfig(kind: .adagrad, learningRate: 2), rows: train.featureCount, width: 1)
        var fullBiasState = RowOptimizerState(
            config: RowOptimizerConfig(kind: .adagrad, learningRate: 2), rows: 1, width: 1)
        let everything = SparseExamples(
            rowStarts: train.rowStarts, featureIds: train.featureIds, values: train.values, labels: train.labels)
        let touched = everything.touchedRows
        for _ in 0..<80 {
            var g: [Float] = []
            var gb: [Float] = []
            _ = model.lossAndGradient(
                everything, touched: touched, rows: touched.map { fullTable[Int($0)] }, bias: fullBias,
                rowGradient: &g, biasGradient: &gb)
            g.withUnsafeBufferPointer {
                fullState.apply(rows: touched.map { Int($0) }, gradient: $0, weights: &fullTable)
            }
            gb.withUnsafeBufferPointer { fullBiasState.apply(rows: [0], gradient: $0, weights: &fullBias) }
        }
        let reference = model.evaluate(testExamples, touched: all, rows: fullTable, bias: fullBias)
        print("sparse-lr BSP 2 workers: test accuracy \(trained.accuracy!), full-batch LR \(reference.accuracy!)")
        XCTAssertGreaterThan(reference.accuracy!, 0.75)
        XCTAssertGreaterThanOrEqual(trained.accuracy!, reference.accuracy! - 0.01)
    }

    func test_checkpointStopAndRestore_resumesBitwiseWithTheTableAndFTRLState() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("sparse-ckpt-\(UUID().uuidString)")
            .path
        defer { try? FileManager.default.removeItem(atPath: root) }
        let ftrl = RowOptimizerConfig(kind: .ftrl, learningRate: 1, l1: 0.5, l2: 0.1)
        let uninterrupted = try run(workers: 2, batch: 50, epochs: 1) { $0.sparseOptimizer = ftrl }
        // The same job checkpointed every 20 steps; its workers leave after 30 steps and the server is dropped.
        _ = try run(workers: 2, batch: 50, epochs: 1, maxSteps: 30) { config in
            config.sparseOptimizer = ftrl
            config.checkpointDirectory = root
            config.checkpointEverySteps = 20
        }
        let checkpoint = root + "/step-0000000020"
        XCTAssertTrue(FileManager.default.fileExists(atPath: checkpoint + "/weight.ftrl_z.npy"))
        // The checkpoint's table is a plain .npy of rows x width float32.
        let npy = try Data(contentsOf: URL(fileURLWithPath: checkpoint + "/weight.npy"))
        let header = String(decoding: npy.prefix(128), as: UTF8.self)
        XCTAssertTrue(header.contains("'descr': '<f4'") && header.contains("'shape': (1000, 1)"), header)
        // A new server restores step 20 and the workers finish the job from there.
        let resumed = try run(workers: 2, batch: 50, epochs: 1) { config in
            config.sparseOptimizer = ftrl
            config.checkpointDirectory = root
            config.restore = checkpoint
        }
        XCTAssertEqual(resumed.table, uninterrupted.table, "bitwise resume")
        XCTAssertEqual(resumed.dense, uninterrupted.dense)
        XCTAssertGreaterThan(uninterrupted.table.filter { $0 == 0 }.count, 500, "FTRL with L1: mostly exact zeros")
    }

    func test_asyncTwoWorkers_applyRowsAsTheyArrive_andTrainTheTable() throws {
        let trained = try run(workers: 2, batch: 50, epochs: 2, mode: .async)
        let (_, test) = try SparseDataSource(parsing: Self.data).loadSplits()
        let testSet = try XCTUnwrap(test)
        let model = SparseLogisticRegression(featureCount: 1000, classCount: 2)
        let examples = SparseExamples(
            rowStarts: testSet.rowStarts, featureIds: testSet.featureIds, values: testSet.values,
            labels: testSet.labels)
        let evaluation = model.evaluate(
            examples, touched: (0..<UInt64(1000)).map { $0 }, rows: trained.table, bias: trained.dense)
        XCTAssertGreaterThan(evaluation.accuracy!, 0.8)
    }

    func test_sparseMLP_bspTwoWorkers_isBitwiseReproducibleAndLearns() throws {
        let first = try run(workers: 2, batch: 50, epochs: 1, model: "sparse-mlp:4,8")
        let second = try run(workers: 2, batch: 50, epochs: 1, model: "sparse-mlp:4,8")
        XCTAssertEqual(first.table.count, 1000 * 4)
        XCTAssertEqual(first.table, second.table, "bitwise reproducible")
        XCTAssertEqual(first.dense, second.dense, "the dense layers too")
        let (_, test) = try SparseDataSource(parsing: Self.data).loadSplits()
        let testSet = try XCTUnwrap(test)
        let model = SparseMLP(featureCount: 1000, classCount: 2, embedding: 4, hidden: 8, seed: 0)
        let examples = SparseExamples(
            rowStarts: testSet.rowStarts, featureIds: testSet.featureIds, values: testSet.values,
            labels: testSet.labels)
        let evaluation = model.evaluate(
            examples, touched: (0..<UInt64(1000)).map { $0 }, rows: first.table, dense: first.dense)
        XCTAssertGreaterThan(evaluation.accuracy!, 0.75)
    }
}
