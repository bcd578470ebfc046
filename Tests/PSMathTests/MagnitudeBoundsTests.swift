import PSMath
import XCTest

/// The O(1) proof that an update keeps every weight finite (issue 15 item 5), checked against real updates.
final class MagnitudeBoundsTests: XCTestCase {
    func test_maxMagnitude_largestAbsoluteValue_orInfinityForNaNOrInf() {
        XCTAssertEqual([Float]([1, -7.5, 3]).withUnsafeBufferPointer { MagnitudeBounds.maxMagnitude($0) }, 7.5)
        XCTAssertEqual([Float]([]).withUnsafeBufferPointer { MagnitudeBounds.maxMagnitude($0) }, 0)
        XCTAssertEqual([Float]([1, .nan, 3]).withUnsafeBufferPointer { MagnitudeBounds.maxMagnitude($0) }, .infinity)
        XCTAssertEqual([Float]([-.infinity]).withUnsafeBufferPointer { MagnitudeBounds.maxMagnitude($0) }, .infinity)
    }

    /// The AVX2 loop and the Swift loop against a scalar reference, over lengths around the vector widths and
    /// elements of every class (zeros of both signs, subnormals, the largest finite, infinities, NaNs).
    func test_maxMagnitude_everyPath_matchesTheScalarReference() {
        var generator = SplitMix64(seed: 11)
        let special: [Float] = [0, -0, .leastNonzeroMagnitude, -.greatestFiniteMagnitude, .infinity, -.nan, .nan]
        let paths: [FusedUpdate.VectorPath] = FusedUpdate.VectorPath.avx2Available ? [.portable, .avx2] : [.portable]
        for trial in 0..<400 {
            let count = trial < 200 ? trial % 100 : 1024 + Int(generator.next() % 100)
            var values = (0..<count).map { _ in Float(Int(generator.next() % 20_001) - 10_000) / 7 }
            if count > 0, trial % 3 == 0 {
                values[Int(generator.next() % UInt64(count))] = special[Int(generator.next() % UInt64(special.count))]
            }
            let reference = values.contains { !$0.isFinite } ? Double.infinity : Double(values.map(abs).max() ?? 0)
            for path in paths {
                let measured = values.withUnsafeBufferPointer { MagnitudeBounds.maxMagnitude($0, path: path) }
                XCTAssertEqual(measured, reference, "trial \(trial), \(count) elements, \(path)")
            }
        }
    }

    func test_afterUpdate_ordinaryTraining_isProvedForEveryOptimizer() {
        for kind in OptimizerKind.allCases {
            var config = OptimizerConfig(kind: kind, learningRate: 0.1, weightDecay: 1e-4, clipValue: 10)
            config.nesterov = kind == .momentum
            var bounds = MagnitudeBounds(weights: 5, state: 0, ratio: 0)  // as measured on fresh state
            for _ in 0..<10_000 {
                guard let next = bounds.afterUpdate(config: config, gradient: 100, lrScale: 1) else {
                    return XCTFail("\(kind): an ordinary update must be provably finite")
                }
                XCTAssertGreaterThanOrEqual(next.weights, bounds.weights)
                bounds = next
            }
        }
    }

    func test_afterUpdate_3e38Gradient_isNotProved() {
        let config = OptimizerConfig(kind: .sgd, learningRate: 1)
        XCTAssertNil(MagnitudeBounds(weights: 0, state: 0).afterUpdate(config: config, gradient: 3e38, lrScale: 1))
        XCTAssertNil(MagnitudeBounds(weights: .infinity, state: 0).afterUpdate(config: config, gradient: 1, lrScale: 1))
    }

    /// Whenever the proof succeeds, the real update's weights are finite and within the new bound.
    func test_afterUpdate_whenProved_realUpdateStaysWithinTheBound() {
        var generator = SplitMix64(seed: 7)
        for kind in OptimizerKind.allCases {
            for trial in 0..<200 {
                let scale = Float(pow(10.0, Double(generator.next() % 60) - 20))  // 1e-20 ... 1e39
                let lr = Float(pow(10.0, Double(generator.next() % 40) - 20))
                let config = OptimizerConfig(kind: kind, learningRate: lr)
                var state = OptimizerState(config: config, count: 8)
                var weights = (0..<8).map { _ in Float(Int(generator.next() % 2001) - 1000) / 1000 * scale }
                var gradient = (0..<8).map { _ in Float(Int(generator.next() % 2001) - 1000) / 1000 * scale }
                guard weights.allSatisfy(\.isFinite), gradient.allSatisfy(\.isFinite) else { continue }
                let before = weights.withUnsafeBufferPointer { MagnitudeBounds.measure(weights: $0, state: state) }
                let largest = gradient.withUnsafeBufferPointer { MagnitudeBounds.maxMagnitude($0) }
                let proved = before.afterUpdate(config: config, gradient: largest, lrScale: 1)
                weights.withUnsafeMutableBufferPointer { w in
                    gradient.withUnsafeMutableBufferPointer { g in state.apply(weights: w, gradient: g) }
                }
                guard let proved else { continue }
                let after = weights.withUnsafeBufferPointer { MagnitudeBounds.maxMagnitude($0) }
                XCTAssertTrue(after.isFinite, "\(kind) trial \(trial): proved finite but got \(weights)")
                XCTAssertLessThanOrEqual(after, proved.weights, "\(kind) trial \(trial)")
            }
        }
    }
}
