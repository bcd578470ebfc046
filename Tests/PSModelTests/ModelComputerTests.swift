import Foundation
import PSMath
import PSModel
import XCTest

/// A naive float64 forward pass, independent of BLAS: the mean loss of `spec` at `theta` over `rows` rows.
private func referenceLoss(
    spec: ModelSpec, theta: [Double], features: [Float], labels: [Float], rows: Int
) -> Double {
    let widths = spec.layerWidths
    var total = 0.0
    for row in 0..<rows {
        var activations = (0..<widths[0]).map { Double(features[row * widths[0] + $0]) }
        var offset = 0
        for layer in 1..<widths.count {
            let (inputWidth, outputWidth) = (widths[layer - 1], widths[layer])
            var outputs = (0..<outputWidth).map { theta[offset + inputWidth * outputWidth + $0] }
            for p in 0..<inputWidth {
                for q in 0..<outputWidth {
                    outputs[q] += activations[p] * theta[offset + p * outputWidth + q]
                }
            }
            offset += (inputWidth + 1) * outputWidth
            activations = layer < widths.count - 1 ? outputs.map { max($0, 0) } : outputs
        }
        if spec.kind == .linear {
            let error = activations[0] - Double(labels[row])
            total += 0.5 * error * error
        } else {
            let maximum = activations.max() ?? 0
            let logSumExp = log(activations.reduce(0) { $0 + exp($1 - maximum) }) + maximum
            total += logSumExp - activations[Int(labels[row])]
        }
    }
    return total / Double(rows)
}

private func randomFloats(_ count: Int, seed: UInt64, scale: Double = 1) -> [Float] {
    var generator = SplitMix64(seed: seed)
    return (0..<count).map { _ in Float((2 * generator.nextUnitDouble() - 1) * scale) }
}

private func randomLabels(_ count: Int, classes: Int, seed: UInt64) -> [Float] {
    var generator = SplitMix64(seed: seed)
    return (0..<count).map { _ in Float(generator.next() % UInt64(classes)) }
}

final class ModelComputerTests: XCTestCase {
    private func lossAndGradient(
        _ computer: ModelComputer, theta: [Float], features: [Float], labels: [Float], rows: Int
    ) -> (Double, [Float]) {
        var gradient = [Float](repeating: .nan, count: computer.parameterCount)
        let loss = theta.withUnsafeBufferPointer { p in
            features.withUnsafeBufferPointer { x in
                labels.withUnsafeBufferPointer { y in
                    gradient.withUnsafeMutableBufferPointer { g in
                        computer.lossAndGradient(parameters: p, features: x, labels: y, rows: rows, gradient: g)
                    }
                }
            }
        }
        return (loss, gradient)
    }

    private func evaluate(
        _ computer: ModelComputer, theta: [Float], features: [Float], labels: [Float], rows: Int
    ) -> (loss: Double, accuracy: Double) {
        theta.withUnsafeBufferPointer { p in
            features.withUnsafeBufferPointer { x in
                labels.withUnsafeBufferPointer { y in
                    computer.evaluate(parameters: p, features: x, labels: y, rows: rows)
                }
            }
        }
    }

    /// Compares the model's loss and gradient with the float64 reference loss and its central finite differences.
    private func assertGradientMatchesFiniteDifferences(
        _ kind: ModelKind, outputCount: Int, file: StaticString = #filePath, line: UInt = #line
    ) {
        let (inputCount, rows, maxBatch) = (5, 7, 8)
        let spec = ModelSpec(kind: kind, inputCount: inputCount, outputCount: outputCount, seed: 3)
        // Start from the spec's initial values plus noise, so that zero-initialised models and biases are non-trivial.
        let theta = zip(spec.initialParameters(), randomFloats(spec.parameterCount, seed: 11, scale: 0.3)).map(+)
        let features = randomFloats(rows * inputCount, seed: 12, scale: 1.5)
        let labels =
            kind == .linear
            ? randomFloats(rows, seed: 13, scale: 2) : randomLabels(rows, classes: outputCount, seed: 13)
        let computer = ModelComputer(spec: spec, maxBatch: maxBatch)
        // A first call on other rows fills the workspaces; the checked call must not depend on them.
        _ = lossAndGradient(
            computer, theta: theta, features: randomFloats(maxBatch * inputCount, seed: 14),
            labels: kind == .linear
                ? randomFloats(maxBatch, seed: 15) : randomLabels(maxBatch, classes: outputCount, seed: 15),
            rows: maxBatch)
        let (loss, gradient) = lossAndGradient(computer, theta: theta, features: features, labels: labels, rows: rows)

        var theta64 = theta.map(Double.init)
        let exact = referenceLoss(spec: spec, theta: theta64, features: features, labels: labels, rows: rows)
        XCTAssertEqual(loss, exact, accuracy: 1e-5 * max(1, abs(exact)), "\(kind) loss", file: file, line: line)
        let h = 1e-6
        for i in theta64.indices {
            let saved = theta64[i]
            theta64[i] = saved + h
            let plus = referenceLoss(spec: spec, theta: theta64, features: features, labels: labels, rows: rows)
            theta64[i] = saved - h
            let minus = referenceLoss(spec: spec, theta: theta64, features: features, labels: labels, rows: rows)
            theta64[i] = saved
            let finiteDifference = (plus - minus) / (2 * h)
            XCTAssertEqual(
                Double(gradient[i]), finiteDifference, accuracy: 1e-4 + 1e-3 * abs(finiteDifference),
                "\(kind) d loss / d theta[\(i)]", file: file, line: line)
        }
    }

    func test_gradient_softmax_matchesFiniteDifferences() {
        assertGradientMatchesFiniteDifferences(.softmax, outputCount: 4)
    }

    func test_gradient_linear_matchesFiniteDifferences() {
        assertGradientMatchesFiniteDifferences(.linear, outputCount: 1)
    }

    func test_gradient_mlpOneHiddenLayer_matchesFiniteDifferences() {
        assertGradientMatchesFiniteDifferences(.mlp(hidden: [5]), outputCount: 3)
    }

    func test_gradient_mlpTwoHiddenLayers_matchesFiniteDifferences() {
        assertGradientMatchesFiniteDifferences(.mlp(hidden: [6, 4]), outputCount: 3)
    }

    func test_mlpWithAdam_learnsTheSignOfTheProductOfTwoFeatures() {
        let rows = 200
        let features = randomFloats(rows * 2, seed: 31)
        let labels = (0..<rows).map { features[2 * $0] * features[2 * $0 + 1] > 0 ? Float(1) : 0 }
        let spec = ModelSpec(kind: .mlp(hidden: [16]), inputCount: 2, outputCount: 2, seed: 5)
        let computer = ModelComputer(spec: spec, maxBatch: rows)
        var optimizer = OptimizerState(
            config: OptimizerConfig(kind: .adam, learningRate: 0.05), count: spec.parameterCount)
        var theta = spec.initialParameters()
        let initial = evaluate(computer, theta: theta, features: features, labels: labels, rows: rows)
        for _ in 0..<300 {
            var (_, gradient) = lossAndGradient(computer, theta: theta, features: features, labels: labels, rows: rows)
            theta.withUnsafeMutableBufferPointer { w in
                gradient.withUnsafeMutableBufferPointer { optimizer.apply(weights: w, gradient: $0) }
            }
        }
        let trained = evaluate(computer, theta: theta, features: features, labels: labels, rows: rows)
        XCTAssertLessThan(trained.loss, initial.loss / 3, "initial \(initial), trained \(trained)")
        XCTAssertGreaterThan(trained.accuracy, 0.9, "initial \(initial), trained \(trained)")
    }

    func test_lossAndGradient_hugeLogits_stayFinite() {
        let spec = ModelSpec(kind: .softmax, inputCount: 1, outputCount: 3)
        let computer = ModelComputer(spec: spec, maxBatch: 2)
        let theta: [Float] = [1000, -1000, 0, 0, 0, 0]  // W [1][3] then b [3]
        let (loss, gradient) = lossAndGradient(computer, theta: theta, features: [1, 1], labels: [0, 1], rows: 2)
        XCTAssertEqual(loss, 1000, accuracy: 1e-3, "row 0 is right (loss 0), row 1 is 2000 below the maximum")
        XCTAssertTrue(gradient.allSatisfy(\.isFinite))
    }

    func test_evaluate_separableToyBatch_countsArgmaxAccuracy() {
        let spec = ModelSpec(kind: .softmax, inputCount: 2, outputCount: 2)
        let computer = ModelComputer(spec: spec, maxBatch: 4)
        let theta: [Float] = [10, 0, 0, 10, 0, 0]  // W = 10 I, b = 0
        let features: [Float] = [1, 0, 0, 1, 2, 0.5, 0.1, 3]
        let labels: [Float] = [0, 1, 0, 1]
        let result = evaluate(computer, theta: theta, features: features, labels: labels, rows: 4)
        XCTAssertEqual(result.accuracy, 1)
        let exact = referenceLoss(
            spec: spec, theta: theta.map(Double.init), features: features, labels: labels, rows: 4)
        XCTAssertEqual(result.loss, exact, accuracy: 1e-6)

        let oneWrong = evaluate(computer, theta: theta, features: features, labels: [0, 1, 1, 1], rows: 4)
        XCTAssertEqual(oneWrong.accuracy, 0.75)
    }

    func test_evaluate_moreRowsThanMaxBatch_equalsOneBigBatch() {
        let spec = ModelSpec(kind: .mlp(hidden: [6]), inputCount: 4, outputCount: 3, seed: 2)
        let theta = spec.initialParameters()
        let rows = 10
        let features = randomFloats(rows * 4, seed: 21)
        let labels = randomLabels(rows, classes: 3, seed: 22)
        let chunked = evaluate(
            ModelComputer(spec: spec, maxBatch: 3), theta: theta, features: features, labels: labels, rows: rows)
        let whole = evaluate(
            ModelComputer(spec: spec, maxBatch: 16), theta: theta, features: features, labels: labels, rows: rows)
        XCTAssertEqual(chunked.loss, whole.loss, accuracy: 1e-9)
        XCTAssertEqual(chunked.accuracy, whole.accuracy)
        let exact = referenceLoss(
            spec: spec, theta: theta.map(Double.init), features: features, labels: labels, rows: rows)
        XCTAssertEqual(chunked.loss, exact, accuracy: 1e-5)
    }

    func test_evaluate_linear_reportsHalfMeanSquaredErrorAndZeroAccuracy() {
        let computer = ModelComputer(spec: ModelSpec(kind: .linear, inputCount: 1, outputCount: 1), maxBatch: 2)
        let result = evaluate(computer, theta: [2, 1], features: [1, 2, 3], labels: [3, 5, 0], rows: 3)
        XCTAssertEqual(result.loss, (0 + 0 + 0.5 * 49) / 3, accuracy: 1e-6)
        XCTAssertEqual(result.accuracy, 0)
    }

    func test_evaluate_zeroRows_givesZeros() {
        let computer = ModelComputer(spec: ModelSpec(kind: .softmax, inputCount: 2, outputCount: 2), maxBatch: 2)
        let result = evaluate(computer, theta: [Float](repeating: 0, count: 6), features: [], labels: [], rows: 0)
        XCTAssertEqual(result.loss, 0)
        XCTAssertEqual(result.accuracy, 0)
    }

    func test_flopsPerRow_countsForwardWeightAndInputGradientProducts() {
        let softmax = ModelComputer(spec: ModelSpec(kind: .softmax, inputCount: 64, outputCount: 10), maxBatch: 1)
        XCTAssertEqual(softmax.flopsPerRow, 2 * 2 * 640)
        let mlp = ModelComputer(spec: ModelSpec(kind: .mlp(hidden: [5]), inputCount: 4, outputCount: 3), maxBatch: 1)
        XCTAssertEqual(mlp.flopsPerRow, 2 * 2 * 20 + 3 * 2 * 15)
    }

    func test_validateLabels_rejectsNonClassValuesAndNonFiniteTargets() {
        let softmax = ModelComputer(spec: ModelSpec(kind: .softmax, inputCount: 2, outputCount: 3), maxBatch: 1)
        let good: [Float] = [0, 2, 1]
        XCTAssertNoThrow(try good.withUnsafeBufferPointer { try softmax.validate(labels: $0) })
        for (bad, row) in [([0, 3] as [Float], 1), ([1.5], 0), ([-1], 0), ([0, 0, .nan], 2)] {
            XCTAssertThrowsError(try bad.withUnsafeBufferPointer { try softmax.validate(labels: $0) }) { error in
                XCTAssertTrue("\(error)".hasPrefix("row \(row): label"), "\(error)")
            }
        }
        let linear = ModelComputer(spec: ModelSpec(kind: .linear, inputCount: 2, outputCount: 1), maxBatch: 1)
        let targets: [Float] = [-3.5, 1e6]
        XCTAssertNoThrow(try targets.withUnsafeBufferPointer { try linear.validate(labels: $0) })
        let infinite: [Float] = [.infinity]
        XCTAssertThrowsError(try infinite.withUnsafeBufferPointer { try linear.validate(labels: $0) }) { error in
            XCTAssertEqual("\(error)", "row 0: regression target inf is not finite")
        }
    }
}
