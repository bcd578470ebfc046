import PSMath
import XCTest

final class RowOptimizerTests: XCTestCase {
    /// A deterministic pseudo-random vector in [-1, 1).
    private func values(_ count: Int, seed: UInt64) -> [Float] {
        var generator = SplitMix64(seed: seed)
        return (0..<count).map { _ in Float(generator.nextUnitDouble() * 2 - 1) }
    }

    /// Runs `steps` updates of the dense optimizer on the whole table, with zero gradient rows outside `touched`.
    private func dense(
        _ config: OptimizerConfig, weights: [Float], width: Int, touched: [Int], gradients: [[Float]]
    ) -> [Float] {
        var w = weights
        var state = OptimizerState(config: config, count: w.count)
        for rowGradient in gradients {
            var g = [Float](repeating: 0, count: w.count)
            for (slot, row) in touched.enumerated() {
                for column in 0..<width { g[row * width + column] = rowGradient[slot * width + column] }
            }
            w.withUnsafeMutableBufferPointer { wp in
                g.withUnsafeMutableBufferPointer { gp in state.apply(weights: wp, gradient: gp) }
            }
        }
        return w
    }

    private func lazy(
        _ config: RowOptimizerConfig, weights: [Float], width: Int, touched: [Int], gradients: [[Float]]
    ) -> (weights: [Float], state: RowOptimizerState) {
        var w = weights
        var state = RowOptimizerState(config: config, rows: weights.count / width, width: width)
        for g in gradients {
            g.withUnsafeBufferPointer { state.apply(rows: touched, gradient: $0, weights: &w) }
        }
        return (w, state)
    }

    func test_sgdAndAdagrad_equalTheDenseRulesOnTouchedRowsAndLeaveOthers() {
        let width = 3
        let weights = values(10 * width, seed: 1)
        let touched = [1, 4, 9]
        let gradients = (0..<5).map { values(touched.count * width, seed: 10 + UInt64($0)) }
        for kind in [OptimizerKind.sgd, .adagrad] {
            let denseConfig = OptimizerConfig(kind: kind, learningRate: 0.1)
            let expected = dense(denseConfig, weights: weights, width: width, touched: touched, gradients: gradients)
            let (got, state) = lazy(
                RowOptimizerConfig(dense: denseConfig)!, weights: weights, width: width, touched: touched,
                gradients: gradients)
            XCTAssertEqual(state.step, 5)
            for index in 0..<weights.count {
                // Dense SGD goes through BLAS saxpy (which may fuse a multiply-add): equal to rounding there.
                XCTAssertEqual(got[index], expected[index], accuracy: kind == .sgd ? 1e-6 : 0, "\(kind) \(index)")
            }
            XCTAssertEqual(got[0..<3], weights[0..<3], "an untouched row does not move")
        }
    }

    func test_lazyAdam_equalsDenseAdamOnTheTouchedRowsAlone() {
        let width = 2
        let weights = values(8 * width, seed: 2)
        let touched = [0, 5, 6]
        let gradients = (0..<4).map { values(touched.count * width, seed: 20 + UInt64($0)) }
        let config = OptimizerConfig(kind: .adam, learningRate: 0.01)
        let (got, state) = lazy(
            RowOptimizerConfig(dense: config)!, weights: weights, width: width, touched: touched, gradients: gradients)
        // Dense Adam over a tensor holding only the touched rows, with the same gradients, step for step.
        let compact = touched.flatMap { weights[($0 * width)..<(($0 + 1) * width)] }
        let expected = dense(config, weights: compact, width: width, touched: [0, 1, 2], gradients: gradients)
        for (slot, row) in touched.enumerated() {
            XCTAssertEqual(got[(row * width)..<((row + 1) * width)], expected[(slot * width)..<((slot + 1) * width)])
        }
        XCTAssertEqual(got[(1 * width)..<(5 * width)], weights[(1 * width)..<(5 * width)], "untouched rows stay")
        XCTAssertEqual(state.slots[0][2..<10], [Float](repeating: 0, count: 8)[...], "untouched moments stay zero")
        XCTAssertNil(RowOptimizerConfig(dense: OptimizerConfig(kind: .momentum, learningRate: 0.1)))
    }

    func test_ftrl_matchesTheFormulaAndL1LeavesSmallCoordinatesExactlyZero() {
        let config = RowOptimizerConfig(kind: .ftrl, learningRate: 0.5, ftrlBeta: 1, l1: 0.3, l2: 0.1)
        // By hand: n = 0.16, sigma = 0.4 / 0.5 = 0.8, z = 0.4 - 0.8 * 0 = 0.4 > l1,
        // w = -(0.4 - 0.3) / ((1 + 0.4) / 0.5 + 0.1) = -0.1 / 2.9.
        let (w, z, n) = RowOptimizerState.ftrl(weight: 0, z: 0, n: 0, gradient: 0.4, config: config)
        XCTAssertEqual(n, 0.16, accuracy: 1e-7)
        XCTAssertEqual(z, 0.4, accuracy: 1e-7)
        XCTAssertEqual(w, -0.1 / 2.9, accuracy: 1e-7)
        let small = RowOptimizerState.ftrl(weight: 0, z: 0, n: 0, gradient: 0.2, config: config)
        XCTAssertEqual(small.weight, 0, "|z| <= l1: exactly zero")
        XCTAssertEqual(small.weight.sign, .plus)

        var state = RowOptimizerState(config: config, rows: 4, width: 1)
        var weights: [Float] = [0, 0, 0, 0]
        [0.4, 0.2].withUnsafeBufferPointer { state.apply(rows: [1, 3], gradient: $0, weights: &weights) }
        XCTAssertEqual(weights, [0, w, 0, 0])
        XCTAssertEqual(state.slots[0], [0, z, 0, 0.2])
        XCTAssertEqual(state.slotNamesForTest, ["ftrl_z", "ftrl_n"])
    }

    func test_restore_checksSlotShapes() {
        let config = RowOptimizerConfig(kind: .adam, learningRate: 0.1)
        XCTAssertThrowsError(try RowOptimizerState(config: config, rows: 2, width: 2, step: 3, slots: [[0]]))
        XCTAssertThrowsError(
            try RowOptimizerState(config: config, rows: 2, width: 2, step: 3, slots: [[0, 0, 0, 0], [0]]))
        let state = try? RowOptimizerState(
            config: config, rows: 2, width: 2, step: 3, slots: [[0, 0, 0, 1], [0, 0, 0, 2]])
        XCTAssertEqual(state?.step, 3)
        var bad = RowOptimizerConfig(kind: .ftrl, learningRate: 0.1, l1: -1)
        XCTAssertThrowsError(try bad.validate()) { error in
            XCTAssertEqual((error as? OptimizerError)?.field, "--l1")
        }
        bad.l1 = 0
        XCTAssertNoThrow(try bad.validate())
    }
}

extension RowOptimizerState {
    fileprivate var slotNamesForTest: [String] { config.stateSlotNames }
}
