import Foundation
import PSData
import PSMath
import PSModel
import XCTest

final class SparseLogisticRegressionTests: XCTestCase {
    private func examples(_ data: SparseDataset, rows: some Collection<Int>) -> SparseExamples {
        let batch = data.batch(rows: rows)
        return SparseExamples(
            rowStarts: batch.rowStarts, featureIds: batch.featureIds, values: batch.values, labels: batch.labels)
    }

    /// Trains with mini-batches of `batch` rows for `epochs`, pulling and pushing only touched rows through a
    /// lazy optimizer, as a worker and the server do; returns the table, the bias and the test evaluation.
    private func train(
        _ model: SparseLogisticRegression, data: SparseDataset, test: SparseDataset, optimizer: RowOptimizerConfig,
        batch: Int, epochs: Int
    ) -> (table: [Float], evaluation: Evaluation) {
        var table = [Float](repeating: 0, count: model.featureCount * model.width)
        var state = RowOptimizerState(config: optimizer, rows: model.featureCount, width: model.width)
        var bias = [Float](repeating: 0, count: model.width)
        var biasState = RowOptimizerState(config: optimizer, rows: 1, width: model.width)
        var rowGradient: [Float] = []
        var biasGradient: [Float] = []
        for _ in 0..<epochs {
            for start in stride(from: 0, to: data.rowCount - batch + 1, by: batch) {
                let examples = examples(data, rows: start..<(start + batch))
                let touched = examples.touchedRows
                let rows = touched.flatMap { id in table[(Int(id) * model.width)..<((Int(id) + 1) * model.width)] }
                _ = model.lossAndGradient(
                    examples, touched: touched, rows: rows, bias: bias, rowGradient: &rowGradient,
                    biasGradient: &biasGradient)
                rowGradient.withUnsafeBufferPointer {
                    state.apply(rows: touched.map { Int($0) }, gradient: $0, weights: &table)
                }
                biasGradient.withUnsafeBufferPointer { biasState.apply(rows: [0], gradient: $0, weights: &bias) }
            }
        }
        let testExamples = examples(test, rows: 0..<test.rowCount)
        let touched = testExamples.touchedRows
        let rows = touched.flatMap { id in table[(Int(id) * model.width)..<((Int(id) + 1) * model.width)] }
        return (table, model.evaluate(testExamples, touched: touched, rows: rows, bias: bias))
    }

    func test_gradient_equalsTheDenseLogisticRegressionGradient() throws {
        let data = try SparseDataSource(parsing: "synthetic-sparse:40,30,5,4").loadTrain()
        for classes in [2, 3] {
            let model = SparseLogisticRegression(featureCount: 30, classCount: classes)
            var labels = data.labels
            if classes == 3 { labels = labels.indices.map { Float($0 % 3) } }
            let examples = SparseExamples(
                rowStarts: data.rowStarts, featureIds: data.featureIds, values: data.values, labels: labels)
            let touched = examples.touchedRows
            var generator = SplitMix64(seed: 3)
            let full = (0..<(30 * model.width)).map { _ in Float(generator.nextUnitDouble() - 0.5) }
            let rows = touched.flatMap { full[(Int($0) * model.width)..<((Int($0) + 1) * model.width)] }
            let bias = (0..<model.width).map { Float($0) * 0.1 }
            var rowGradient: [Float] = []
            var biasGradient: [Float] = []
            let loss = model.lossAndGradient(
                examples, touched: touched, rows: rows, bias: bias, rowGradient: &rowGradient,
                biasGradient: &biasGradient)
            // Finite differences on the dense loss for a few touched coordinates.
            func denseLoss(_ weights: [Float]) -> Double {
                let all = (0..<30).map { UInt64($0) }
                var g: [Float] = []
                var gb: [Float] = []
                return model.lossAndGradient(
                    examples, touched: all, rows: weights, bias: bias, rowGradient: &g, biasGradient: &gb)
            }
            XCTAssertEqual(loss, denseLoss(full), accuracy: 1e-9)
            for (slot, id) in touched.enumerated().prefix(6) {
                for column in 0..<model.width {
                    var plus = full
                    var minus = full
                    plus[Int(id) * model.width + column] += 1e-2
                    minus[Int(id) * model.width + column] -= 1e-2
                    let numeric = (denseLoss(plus) - denseLoss(minus)) / 2e-2
                    XCTAssertEqual(Double(rowGradient[slot * model.width + column]), numeric, accuracy: 2e-3)
                }
            }
        }
    }

    func test_sparseLR_andFTRL_reachTheFullBatchAccuracy_FTRLLeavesMostWeightsZero() throws {
        try XCTSkipIf(
            ProcessInfo.processInfo.environment["PS_TSAN"] == "1",
            "single-threaded arithmetic: ThreadSanitizer (make tsan, PS_TSAN=1) only slows it down")
        let (data, test) = try SparseDataSource(parsing: "synthetic-sparse:2000,1000,10,5").loadSplits()
        let test1 = try XCTUnwrap(test)
        let model = SparseLogisticRegression(featureCount: 1000, classCount: 2)
        // Full-batch (dense) logistic regression: one batch of every row per step.
        let full = train(
            model, data: data, test: test1, optimizer: RowOptimizerConfig(kind: .adagrad, learningRate: 2),
            batch: data.rowCount, epochs: 80)
        let sparse = train(
            model, data: data, test: test1, optimizer: RowOptimizerConfig(kind: .adagrad, learningRate: 0.1),
            batch: 50, epochs: 5)
        let ftrl = train(
            model, data: data, test: test1,
            optimizer: RowOptimizerConfig(kind: .ftrl, learningRate: 2, ftrlBeta: 1, l1: 1, l2: 0.1),
            batch: 50, epochs: 5)
        // Only features that occur in the training data count: the others are zero under any optimizer.
        let seen = Set(data.featureIds.map { Int($0) })
        let zeros = seen.filter { ftrl.table[$0] == 0 }.count
        let adagradZeros = seen.filter { sparse.table[$0] == 0 }.count
        print(
            "sparse-lr test accuracy: full-batch \(full.evaluation.accuracy!), mini-batch lazy AdaGrad "
                + "\(sparse.evaluation.accuracy!), FTRL \(ftrl.evaluation.accuracy!) with \(zeros) of \(seen.count) "
                + "seen weights exactly zero (AdaGrad: \(adagradZeros))")
        XCTAssertGreaterThan(full.evaluation.accuracy!, 0.75)
        XCTAssertGreaterThanOrEqual(sparse.evaluation.accuracy!, full.evaluation.accuracy! - 0.01)
        XCTAssertGreaterThanOrEqual(ftrl.evaluation.accuracy!, full.evaluation.accuracy! - 0.01)
        XCTAssertGreaterThan(zeros, seen.count / 2, "L1 leaves most weights exactly zero")
        XCTAssertLessThan(adagradZeros, seen.count / 10)
    }
}
