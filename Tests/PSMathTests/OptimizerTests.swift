import Foundation
import PSMath
import XCTest

/// A scalar float64 textbook implementation of the four rules (PyTorch's conventions), one element at a time.
private struct TextbookOptimizer {
    let config: OptimizerConfig
    var weights: [Double]
    var velocity: [Double]
    var firstMoment: [Double]
    var secondMoment: [Double]
    var squareSum: [Double]
    var t = 0

    init(config: OptimizerConfig, weights: [Float]) {
        self.config = config
        self.weights = weights.map(Double.init)
        let zeros = [Double](repeating: 0, count: weights.count)
        (velocity, firstMoment, secondMoment, squareSum) = (zeros, zeros, zeros, zeros)
    }

    mutating func step(gradient: [Float], lrScale: Double) {
        t += 1
        let lr = Double(config.learningRate) * lrScale
        let mu = Double(config.momentum)
        let (beta1, beta2, eps) = (Double(config.beta1), Double(config.beta2), Double(config.epsilon))
        for i in weights.indices {
            var g = Double(gradient[i])
            if let clip = config.clipValue.map(Double.init) {
                g = min(max(g, -clip), clip)
            }
            g += Double(config.weightDecay) * weights[i]
            switch config.kind {
            case .sgd:
                weights[i] -= lr * g
            case .momentum:
                velocity[i] = mu * velocity[i] + g
                weights[i] -= lr * (config.nesterov ? g + mu * velocity[i] : velocity[i])
            case .adam:
                firstMoment[i] = beta1 * firstMoment[i] + (1 - beta1) * g
                secondMoment[i] = beta2 * secondMoment[i] + (1 - beta2) * g * g
                let mHat = firstMoment[i] / (1 - pow(beta1, Double(t)))
                let vHat = secondMoment[i] / (1 - pow(beta2, Double(t)))
                weights[i] -= lr * mHat / (vHat.squareRoot() + eps)
            case .adagrad:
                squareSum[i] += g * g
                weights[i] -= lr * g / (squareSum[i].squareRoot() + eps)
            }
        }
    }
}

final class OptimizerTests: XCTestCase {
    private func randomFloats(_ count: Int, seed: UInt64, scale: Double) -> [Float] {
        var generator = SplitMix64(seed: seed)
        return (0..<count).map { _ in Float((2 * generator.nextUnitDouble() - 1) * scale) }
    }

    /// Runs `steps` updates of the real optimizer and the textbook one on the same gradients and compares weights.
    private func assertMatchesTextbook(
        _ config: OptimizerConfig, steps: Int = 6, lrScale: Float = 1, file: StaticString = #filePath,
        line: UInt = #line
    ) {
        let count = 37
        var weights = randomFloats(count, seed: 100, scale: 1)
        var state = OptimizerState(config: config, count: count)
        var textbook = TextbookOptimizer(config: config, weights: weights)
        for step in 0..<steps {
            let gradient = randomFloats(count, seed: UInt64(200 + step), scale: 2)
            var scratch = gradient
            weights.withUnsafeMutableBufferPointer { w in
                scratch.withUnsafeMutableBufferPointer { g in
                    state.apply(weights: w, gradient: g, lrScale: lrScale)
                }
            }
            textbook.step(gradient: gradient, lrScale: Double(lrScale))
            for i in 0..<count {
                XCTAssertEqual(
                    Double(weights[i]), textbook.weights[i], accuracy: 2e-5 * max(1, abs(textbook.weights[i])),
                    "\(config.kind) step \(step + 1) element \(i)", file: file, line: line)
            }
        }
        XCTAssertEqual(state.step, UInt64(steps), file: file, line: line)
    }

    func test_sgd_matchesTextbook() {
        assertMatchesTextbook(OptimizerConfig(kind: .sgd, learningRate: 0.1))
    }

    func test_sgd_withWeightDecayAndClipping_matchesTextbook() {
        assertMatchesTextbook(OptimizerConfig(kind: .sgd, learningRate: 0.1, weightDecay: 0.01, clipValue: 0.5))
    }

    func test_momentum_matchesTextbook() {
        assertMatchesTextbook(OptimizerConfig(kind: .momentum, learningRate: 0.05, momentum: 0.9))
    }

    func test_momentum_nesterovWithWeightDecayAndClipping_matchesTextbook() {
        assertMatchesTextbook(
            OptimizerConfig(
                kind: .momentum, learningRate: 0.05, momentum: 0.8, nesterov: true, weightDecay: 0.001, clipValue: 1))
    }

    func test_adam_matchesTextbook() {
        assertMatchesTextbook(OptimizerConfig(kind: .adam, learningRate: 0.01))
    }

    func test_adam_withWeightDecayClippingAndOtherBetas_matchesTextbook() {
        assertMatchesTextbook(
            OptimizerConfig(
                kind: .adam, learningRate: 0.01, beta1: 0.5, beta2: 0.9, epsilon: 1e-6, weightDecay: 0.1, clipValue: 0.7
            )
        )
    }

    func test_adagrad_matchesTextbook() {
        assertMatchesTextbook(OptimizerConfig(kind: .adagrad, learningRate: 0.1))
    }

    func test_adagrad_withWeightDecayAndClipping_matchesTextbook() {
        assertMatchesTextbook(OptimizerConfig(kind: .adagrad, learningRate: 0.1, weightDecay: 0.05, clipValue: 0.3))
    }

    func test_lrScale_scalesTheLearningRateOfEveryRule() {
        for kind in OptimizerKind.allCases {
            assertMatchesTextbook(OptimizerConfig(kind: kind, learningRate: 0.05), lrScale: 0.25)
        }
    }

    func test_sgd_lrScaleHalf_equalsHalfTheLearningRate() {
        var scaled = [Float](repeating: 1, count: 4)
        var halved = scaled
        var gradient: [Float] = [1, -2, 3, -4]
        var scratch = gradient
        var stateA = OptimizerState(config: OptimizerConfig(kind: .sgd, learningRate: 0.2), count: 4)
        var stateB = OptimizerState(config: OptimizerConfig(kind: .sgd, learningRate: 0.1), count: 4)
        scaled.withUnsafeMutableBufferPointer { w in
            gradient.withUnsafeMutableBufferPointer { stateA.apply(weights: w, gradient: $0, lrScale: 0.5) }
        }
        halved.withUnsafeMutableBufferPointer { w in
            scratch.withUnsafeMutableBufferPointer { stateB.apply(weights: w, gradient: $0) }
        }
        XCTAssertEqual(scaled, halved)
        for (value, expected) in zip(scaled, [0.9, 1.2, 0.7, 1.4] as [Float]) {
            XCTAssertEqual(value, expected, accuracy: 1e-6)
        }
    }

    func test_apply_emptySlice_onlyCountsTheStep() {
        var state = OptimizerState(config: OptimizerConfig(kind: .adam, learningRate: 0.1), count: 0)
        var weights: [Float] = []
        var gradient: [Float] = []
        weights.withUnsafeMutableBufferPointer { w in
            gradient.withUnsafeMutableBufferPointer { state.apply(weights: w, gradient: $0) }
        }
        XCTAssertEqual(state.step, 1)
    }

    func test_stateSlotNames_perKind() {
        XCTAssertEqual(OptimizerConfig(kind: .sgd, learningRate: 1).stateSlotNames, [])
        XCTAssertEqual(OptimizerConfig(kind: .momentum, learningRate: 1).stateSlotNames, ["momentum"])
        XCTAssertEqual(OptimizerConfig(kind: .adam, learningRate: 1).stateSlotNames, ["adam_m", "adam_v"])
        XCTAssertEqual(OptimizerConfig(kind: .adagrad, learningRate: 1).stateSlotNames, ["adagrad_sum"])
        XCTAssertEqual(
            OptimizerState(config: OptimizerConfig(kind: .adam, learningRate: 1), count: 3).slots,
            [
                [0, 0, 0], [0, 0, 0],
            ])
    }

    func test_epsilon_defaultsFollowPyTorch() {
        XCTAssertEqual(OptimizerConfig(kind: .adam, learningRate: 1).epsilon, 1e-8)
        XCTAssertEqual(OptimizerConfig(kind: .adagrad, learningRate: 1).epsilon, 1e-10)
        XCTAssertEqual(OptimizerConfig(kind: .adagrad, learningRate: 1, epsilon: 1e-3).epsilon, 1e-3)
    }

    private func validationMessage(_ config: OptimizerConfig) -> String? {
        do {
            try config.validate()
            return nil
        } catch {
            return error.message
        }
    }

    func test_validate_badValues_nameTheFlagAndTheValue() {
        let base = OptimizerConfig(kind: .sgd, learningRate: 0.1)
        var config = base
        config.learningRate = -1
        XCTAssertEqual(validationMessage(config), "--lr must be a positive finite number, got -1")
        config.learningRate = .nan
        XCTAssertEqual(validationMessage(config), "--lr must be a positive finite number, got nan")
        config.learningRate = 0
        XCTAssertEqual(validationMessage(config), "--lr must be a positive finite number, got 0")
        config = base
        config.momentum = 1
        XCTAssertEqual(validationMessage(config), "--momentum must be in [0, 1), got 1")
        config = base
        config.beta1 = -0.5
        XCTAssertEqual(validationMessage(config), "--beta1 must be in [0, 1), got -0.5")
        config = base
        config.beta2 = 1
        XCTAssertEqual(validationMessage(config), "--beta2 must be in [0, 1), got 1")
        config = base
        config.epsilon = 0
        XCTAssertEqual(validationMessage(config), "--epsilon must be a positive finite number, got 0")
        config = base
        config.weightDecay = -0.25
        XCTAssertEqual(validationMessage(config), "--weight-decay must be a non-negative finite number, got -0.25")
        config = base
        config.clipValue = .infinity
        XCTAssertEqual(validationMessage(config), "--clip-value must be a positive finite number, got inf")
        config = base
        config.nesterov = true
        XCTAssertEqual(validationMessage(config), "--nesterov requires --optimizer momentum, got --optimizer sgd")
        config = OptimizerConfig(kind: .momentum, learningRate: 0.1, momentum: 0, nesterov: true)
        XCTAssertEqual(validationMessage(config), "--nesterov requires --momentum > 0, got 0")
    }

    func test_validate_defaultsOfEveryKind_pass() {
        for kind in OptimizerKind.allCases {
            XCTAssertNil(validationMessage(OptimizerConfig(kind: kind, learningRate: 0.01)), "\(kind)")
        }
        XCTAssertNil(validationMessage(OptimizerConfig(kind: .momentum, learningRate: 0.01, nesterov: true)))
    }

    func test_validate_errorCarriesTheField() {
        XCTAssertThrowsError(try OptimizerConfig(kind: .adam, learningRate: 0.1, beta2: 2).validate()) { error in
            XCTAssertEqual((error as? OptimizerError)?.field, "--beta2")
        }
    }

    func test_hyperParameters_roundTripEveryKind() throws {
        let configs = [
            OptimizerConfig(kind: .sgd, learningRate: 0.1),
            OptimizerConfig(kind: .sgd, learningRate: 0.3, weightDecay: 0.001, clipValue: 5),
            OptimizerConfig(kind: .momentum, learningRate: 0.05, momentum: 0.85, nesterov: true),
            OptimizerConfig(kind: .adam, learningRate: 0.001, beta1: 0.8, beta2: 0.99, epsilon: 1e-7),
            OptimizerConfig(kind: .adagrad, learningRate: 0.1),
        ]
        for config in configs {
            let rebuilt = try OptimizerConfig(kind: config.kind.rawValue, hyperParameters: config.hyperParameters)
            XCTAssertEqual(rebuilt, config)
        }
        XCTAssertEqual(
            OptimizerConfig(kind: .momentum, learningRate: 0.5, momentum: 0.5).hyperParameters,
            ["learning_rate": 0.5, "weight_decay": 0, "momentum": 0.5, "nesterov": 0])
    }

    func test_initFromHyperParameters_unknownKindOrMissingRate_throws() {
        XCTAssertThrowsError(try OptimizerConfig(kind: "rmsprop", hyperParameters: ["learning_rate": 1])) { error in
            XCTAssertEqual(
                "\(error)", "unknown optimizer 'rmsprop' (expected one of sgd, momentum, adam, adagrad)")
        }
        XCTAssertThrowsError(try OptimizerConfig(kind: "sgd", hyperParameters: [:])) { error in
            XCTAssertEqual((error as? OptimizerError)?.field, "learning_rate")
        }
        XCTAssertThrowsError(try OptimizerConfig(kind: "sgd", hyperParameters: ["learning_rate": -2])) { error in
            XCTAssertEqual((error as? OptimizerError)?.field, "--lr")
        }
    }

    func test_codable_missingOptionalFields_takeDefaults() throws {
        let json = Data(#"{"kind": "adagrad", "learningRate": 0.5}"#.utf8)
        let decoded = try JSONDecoder().decode(OptimizerConfig.self, from: json)
        XCTAssertEqual(decoded, OptimizerConfig(kind: .adagrad, learningRate: 0.5))
        let full = OptimizerConfig(kind: .momentum, learningRate: 0.1, nesterov: true, weightDecay: 0.2, clipValue: 3)
        XCTAssertEqual(try JSONDecoder().decode(OptimizerConfig.self, from: JSONEncoder().encode(full)), full)
    }

    func test_restore_fromSavedSlots_continuesExactlyAsTheOriginal() throws {
        let config = OptimizerConfig(kind: .adam, learningRate: 0.01)
        var original = OptimizerState(config: config, count: 5)
        var weights = randomFloats(5, seed: 1, scale: 1)
        for step in 0..<3 {
            var gradient = randomFloats(5, seed: UInt64(10 + step), scale: 1)
            weights.withUnsafeMutableBufferPointer { w in
                gradient.withUnsafeMutableBufferPointer { original.apply(weights: w, gradient: $0) }
            }
        }
        let restored = try OptimizerState(config: config, step: original.step, slots: original.slots, count: 5)
        XCTAssertEqual(restored, original)
    }

    func test_restore_wrongSlotCountOrLength_throwsNamingTheSlot() {
        let adam = OptimizerConfig(kind: .adam, learningRate: 0.01)
        XCTAssertThrowsError(try OptimizerState(config: adam, step: 1, slots: [[0, 0]])) { error in
            XCTAssertEqual("\(error)", #"optimizer adam needs 2 state tensors ["adam_m", "adam_v"], got 1"#)
        }
        XCTAssertThrowsError(try OptimizerState(config: adam, step: 1, slots: [[0, 0], [0]])) { error in
            XCTAssertEqual("\(error)", "optimizer state 'adam_v' has 1 elements, expected 2")
        }
        let momentum = OptimizerConfig(kind: .momentum, learningRate: 0.01)
        XCTAssertThrowsError(try OptimizerState(config: momentum, step: 1, slots: [[0, 0]], count: 3)) { error in
            XCTAssertEqual("\(error)", "optimizer state 'momentum' has 2 elements, expected 3")
        }
        XCTAssertNoThrow(try OptimizerState(config: OptimizerConfig(kind: .sgd, learningRate: 1), step: 4, slots: []))
    }
}
