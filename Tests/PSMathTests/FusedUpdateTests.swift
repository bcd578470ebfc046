import Foundation
import PSMath
import XCTest

/// The scalar float32 formulas `FusedUpdate` must reproduce bit for bit, one element and one step at a time.
private struct ScalarFloatOptimizer {
    let config: OptimizerConfig
    var weights: [Float]
    var first: [Float]
    var second: [Float]
    var t = 0

    init(config: OptimizerConfig, weights: [Float]) {
        self.config = config
        self.weights = weights
        first = [Float](repeating: 0, count: weights.count)
        second = first
    }

    /// The prelude: clip, then coupled weight decay.
    private func prepared(_ raw: Float, weight: Float) -> Float {
        var g = raw
        if let clip = config.clipValue { g = min(max(g, -clip), clip) }
        if config.weightDecay != 0 { g = g + config.weightDecay * weight }
        return g
    }

    mutating func step(gradient: [Float], lrScale: Float) {
        t += 1
        let lr = config.learningRate * lrScale
        let stepSize = Float(Double(lr) / (1 - pow(Double(config.beta1), Double(t))))
        let inverseRootCorrection2 = Float(1 / (1 - pow(Double(config.beta2), Double(t))).squareRoot())
        for i in weights.indices {
            let w = weights[i]
            let g = prepared(gradient[i], weight: w)
            switch config.kind {
            case .sgd:
                preconditionFailure("sgd is BLAS saxpy, not a fused rule")
            case .momentum:
                let v = config.momentum * first[i] + g
                first[i] = v
                weights[i] = w - lr * (config.nesterov ? g + config.momentum * v : v)
            case .adam:
                let m = config.beta1 * first[i] + (1 - config.beta1) * g
                let v = config.beta2 * second[i] + (1 - config.beta2) * (g * g)
                first[i] = m
                second[i] = v
                weights[i] = w - stepSize * m / (v.squareRoot() * inverseRootCorrection2 + config.epsilon)
            case .adagrad:
                let s = first[i] + g * g
                first[i] = s
                weights[i] = w - lr * g / (s.squareRoot() + config.epsilon)
            }
        }
    }
}

final class FusedUpdateTests: XCTestCase {
    private func randomFloats(_ count: Int, seed: UInt64, scale: Double) -> [Float] {
        var generator = SplitMix64(seed: seed)
        return (0..<count).map { _ in Float((2 * generator.nextUnitDouble() - 1) * scale) }
    }

    /// Runs `steps` updates through `OptimizerState.apply` on a slice that starts `offset` floats into its array
    /// (so vector loads are misaligned and the scalar tail is exercised) and compares every bit with the scalar
    /// float32 formulas.
    private func assertBitwiseScalar(
        _ config: OptimizerConfig, steps: Int = 200, count: Int = 1003, offset: Int = 1, lrScale: Float = 1,
        file: StaticString = #filePath, line: UInt = #line
    ) {
        var padded = [Float](repeating: 7, count: count + offset)
        let initial = randomFloats(count, seed: 5, scale: 1)
        padded.replaceSubrange(offset..<(offset + count), with: initial)
        var state = OptimizerState(config: config, count: count)
        var scalar = ScalarFloatOptimizer(config: config, weights: initial)
        for step in 0..<steps {
            let gradient = randomFloats(count, seed: UInt64(1000 + step), scale: step % 7 == 0 ? 20 : 1)
            var scratch = [Float](repeating: 0, count: offset) + gradient
            padded.withUnsafeMutableBufferPointer { all in
                scratch.withUnsafeMutableBufferPointer { allG in
                    state.apply(
                        weights: UnsafeMutableBufferPointer(rebasing: all[offset...]),
                        gradient: UnsafeMutableBufferPointer(rebasing: allG[offset...]), lrScale: lrScale)
                }
            }
            scalar.step(gradient: gradient, lrScale: lrScale)
        }
        let fused = Array(padded[offset...])
        let mismatches = zip(fused, scalar.weights).filter { $0.bitPattern != $1.bitPattern }.count
        XCTAssertEqual(mismatches, 0, "\(config.kind): elements unlike the scalar formula", file: file, line: line)
        XCTAssertTrue(padded[0..<offset].allSatisfy { $0 == 7 }, "wrote before the slice", file: file, line: line)
        XCTAssertEqual(state.slots[0].map(\.bitPattern), scalar.first.map(\.bitPattern), file: file, line: line)
        if config.kind == .adam {
            XCTAssertEqual(state.slots[1].map(\.bitPattern), scalar.second.map(\.bitPattern), file: file, line: line)
        }
    }

    func test_momentum_200Steps_bitwiseTheScalarFormula() {
        assertBitwiseScalar(OptimizerConfig(kind: .momentum, learningRate: 0.05, momentum: 0.9))
    }

    func test_momentumNesterovDecayClip_200Steps_bitwiseTheScalarFormula() {
        assertBitwiseScalar(
            OptimizerConfig(
                kind: .momentum, learningRate: 0.05, momentum: 0.8, nesterov: true, weightDecay: 0.001, clipValue: 1),
            lrScale: 0.5)
    }

    /// The update of an element does not depend on how the vector is cut into shards (issue 11): the same steps
    /// applied to the whole vector and to its pieces under the shared layout for 1, 4, 5 and 7 shards agree bitwise.
    func test_everyRule_sameBitsForEveryShardSplit() {
        let count = 1000
        for kind in [OptimizerKind.sgd, .momentum, .adam, .adagrad] {
            var results: [[UInt32]] = []
            for shardCount in [1, 4, 5, 7] {
                // The shared layout's split (PSWire.ShardLayout): shard s owns [s*N/S, (s+1)*N/S).
                let range = { (s: Int) in (s * count / shardCount)..<((s + 1) * count / shardCount) }
                var weights = randomFloats(count, seed: 3, scale: 1)
                var states = (0..<shardCount).map {
                    OptimizerState(
                        config: OptimizerConfig(kind: kind, learningRate: 0.01), count: range($0).count)
                }
                for step in 0..<20 {
                    var gradient = randomFloats(count, seed: UInt64(100 + step), scale: 1)
                    for shard in 0..<shardCount {
                        let slice = range(shard)
                        weights.withUnsafeMutableBufferPointer { w in
                            gradient.withUnsafeMutableBufferPointer { g in
                                states[shard].apply(
                                    weights: UnsafeMutableBufferPointer(rebasing: w[slice]),
                                    gradient: UnsafeMutableBufferPointer(rebasing: g[slice]))
                            }
                        }
                    }
                }
                results.append(weights.map(\.bitPattern))
            }
            XCTAssertTrue(results.allSatisfy { $0 == results[0] }, "\(kind) depends on the shard split")
        }
    }

    func test_adam_200Steps_bitwiseTheScalarFormula() {
        assertBitwiseScalar(OptimizerConfig(kind: .adam, learningRate: 0.01))
    }

    func test_adamDecayClipOtherBetas_200Steps_bitwiseTheScalarFormula() {
        assertBitwiseScalar(
            OptimizerConfig(
                kind: .adam, learningRate: 0.01, beta1: 0.5, beta2: 0.9, epsilon: 1e-6, weightDecay: 0.1,
                clipValue: 0.7), offset: 3)
    }

    func test_adagrad_200Steps_bitwiseTheScalarFormula() {
        assertBitwiseScalar(OptimizerConfig(kind: .adagrad, learningRate: 0.1))
    }

    func test_adagradDecayClip_200Steps_bitwiseTheScalarFormula() {
        assertBitwiseScalar(
            OptimizerConfig(kind: .adagrad, learningRate: 0.1, weightDecay: 0.05, clipValue: 0.3), count: 17, offset: 2
        )
    }

    func test_fusedRules_sameBitsAtEveryAlignment() {
        for kind in [OptimizerKind.momentum, .adam, .adagrad] {
            var results: [[UInt32]] = []
            for offset in 0..<4 {
                let count = 101
                var weights = [Float](repeating: 0, count: offset) + randomFloats(count, seed: 9, scale: 1)
                var state = OptimizerState(config: OptimizerConfig(kind: kind, learningRate: 0.01), count: count)
                for step in 0..<20 {
                    var gradient =
                        [Float](repeating: 0, count: offset) + randomFloats(count, seed: UInt64(step), scale: 1)
                    weights.withUnsafeMutableBufferPointer { w in
                        gradient.withUnsafeMutableBufferPointer { g in
                            state.apply(
                                weights: UnsafeMutableBufferPointer(rebasing: w[offset...]),
                                gradient: UnsafeMutableBufferPointer(rebasing: g[offset...]))
                        }
                    }
                }
                results.append(weights[offset...].map(\.bitPattern))
            }
            XCTAssertTrue(results.allSatisfy { $0 == results[0] }, "\(kind) depends on alignment")
        }
    }
    /// Runs `steps` updates of one rule through both builds of the loops (the Swift loop and, where the CPU has
    /// AVX2, `CFusedUpdate`'s) on misaligned slices of an odd length, and returns whether every bit agrees.
    private func assertPathsAgree(
        _ kind: OptimizerKind, clip: Float?, weightDecay: Float, nesterov: Bool = false, steps: Int = 300,
        file: StaticString = #filePath, line: UInt = #line
    ) throws {
        guard FusedUpdate.VectorPath.avx2Available else { throw XCTSkip("this CPU has no AVX2") }
        let count = 1037
        var config = OptimizerConfig(kind: kind, learningRate: 0.01)
        config.clipValue = clip
        config.weightDecay = weightDecay
        config.nesterov = nesterov
        let prelude = FusedUpdate.Prelude(config: config)
        let initial = randomFloats(count + 3, seed: 11, scale: 1)
        var results: [[UInt32]] = []
        for path in [FusedUpdate.VectorPath.portable, .avx2] {
            var w = initial
            var first = [Float](repeating: 0, count: count + 3)
            var second = first
            for step in 1...steps {
                let g = randomFloats(count + 3, seed: UInt64(500 + step), scale: step % 5 == 0 ? 30 : 1)
                let t = Double(step)
                let stepSize = Float(0.01 / (1 - pow(Double(config.beta1), t)))
                let correction = Float(1 / (1 - pow(Double(config.beta2), t)).squareRoot())
                w.withUnsafeMutableBufferPointer { w in
                    g.withUnsafeBufferPointer { g in
                        first.withUnsafeMutableBufferPointer { a in
                            second.withUnsafeMutableBufferPointer { b in
                                // Start 3 floats in: misaligned for 32-byte vectors, and a scalar tail of 1037 % 8.
                                let (w, g, a, b) = (
                                    w.baseAddress! + 3, g.baseAddress! + 3, a.baseAddress! + 3, b.baseAddress! + 3
                                )
                                switch kind {
                                case .momentum:
                                    FusedUpdate.momentum(
                                        w: w, g: g, v: a, count: count, prelude: prelude, lr: 0.01, mu: 0.9,
                                        nesterov: nesterov, path: path)
                                case .adam:
                                    FusedUpdate.adam(
                                        w: w, g: g, m: a, v: b, count: count, prelude: prelude, beta1: config.beta1,
                                        beta2: config.beta2, stepSize: stepSize, inverseRootCorrection2: correction,
                                        epsilon: config.epsilon, path: path)
                                case .adagrad:
                                    FusedUpdate.adagrad(
                                        w: w, g: g, s: a, count: count, prelude: prelude, lr: 0.01,
                                        epsilon: config.epsilon, path: path)
                                case .sgd:
                                    XCTFail("sgd has no fused loop", file: file, line: line)
                                }
                            }
                        }
                    }
                }
            }
            results.append((w + first + second).map(\.bitPattern))
        }
        let mismatches = zip(results[0], results[1]).filter { $0 != $1 }.count
        XCTAssertEqual(mismatches, 0, "\(kind): AVX2 loop unlike the Swift loop", file: file, line: line)
        XCTAssertEqual(Array(results[1][0..<3]), initial[0..<3].map(\.bitPattern), "wrote before the slice")
    }

    func test_avx2Loops_bitwiseTheSwiftLoops_300Steps() throws {
        try assertPathsAgree(.momentum, clip: nil, weightDecay: 0)
        try assertPathsAgree(.momentum, clip: 2, weightDecay: 1e-3, nesterov: true)
        try assertPathsAgree(.adam, clip: nil, weightDecay: 0)
        try assertPathsAgree(.adam, clip: 0.5, weightDecay: 1e-2)
        try assertPathsAgree(.adagrad, clip: nil, weightDecay: 0)
        try assertPathsAgree(.adagrad, clip: 3, weightDecay: 1e-4)
    }
}
