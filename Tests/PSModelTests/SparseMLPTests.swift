import PSData
import PSMath
import PSModel
import XCTest

final class SparseMLPTests: XCTestCase {
    func test_parse_spellings() {
        XCTAssertEqual(SparseModelKind(parsing: "sparse-lr"), .logisticRegression)
        XCTAssertEqual(SparseModelKind(parsing: "sparse-mlp:16,64"), .mlp(embedding: 16, hidden: 64))
        XCTAssertNil(SparseModelKind(parsing: "sparse-mlp:16"))
        XCTAssertNil(SparseModelKind(parsing: "sparse-mlp:0,8"))
        XCTAssertNil(SparseModelKind(parsing: "mlp:16,64"))
    }

    func test_gradient_matchesFiniteDifferences() throws {
        let data = try SparseDataSource(parsing: "synthetic-sparse:12,20,4,2").loadTrain()
        let model = SparseMLP(featureCount: 20, classCount: 3, embedding: 3, hidden: 4, seed: 1)
        let labels = data.labels.indices.map { Float($0 % 3) }
        let examples = SparseExamples(
            rowStarts: data.rowStarts, featureIds: data.featureIds, values: data.values, labels: labels)
        let touched = examples.touchedRows
        var generator = SplitMix64(seed: 5)
        let rows = (0..<(touched.count * 3)).map { _ in Float(generator.nextUnitDouble() - 0.5) }
        let dense = model.denseParameters.flatMap { $0.initializer.values(shape: $0.shape) }.map { $0 + 0.05 }
        var rowGradient: [Float] = []
        var denseGradient: [Float] = []
        _ = model.lossAndGradient(
            examples, touched: touched, rows: rows, dense: dense, rowGradient: &rowGradient,
            denseGradient: &denseGradient)
        func loss(_ rows: [Float], _ dense: [Float]) -> Double {
            var g: [Float] = []
            var d: [Float] = []
            return model.lossAndGradient(
                examples, touched: touched, rows: rows, dense: dense, rowGradient: &g, denseGradient: &d)
        }
        // Small enough that no example's hidden pre-activation crosses the ReLU's kink (1e-3 does for one).
        let h: Float = 1e-4
        for index in stride(from: 0, to: rows.count, by: 5) {
            var plus = rows
            var minus = rows
            plus[index] += h
            minus[index] -= h
            let numeric = (loss(plus, dense) - loss(minus, dense)) / Double(2 * h)
            XCTAssertEqual(Double(rowGradient[index]), numeric, accuracy: 3e-3, "embedding element \(index)")
        }
        for index in stride(from: 0, to: dense.count, by: 3) {
            var plus = dense
            var minus = dense
            plus[index] += h
            minus[index] -= h
            let numeric = (loss(rows, plus) - loss(rows, minus)) / Double(2 * h)
            XCTAssertEqual(Double(denseGradient[index]), numeric, accuracy: 3e-3, "dense element \(index)")
        }
    }
}
