import PSMath
import XCTest

final class GradientMeanTests: XCTestCase {
    /// The BSP mean as the server computed it before `GradientMean`: copy the first gradient, add every other
    /// with saxpy (alpha 1), scale by 1/N with sscal.
    private func blasMean(_ sources: [[Float]]) -> [Float] {
        var sum = sources[0]
        let count = sum.count
        sum.withUnsafeMutableBufferPointer { y in
            for source in sources.dropFirst() {
                source.withUnsafeBufferPointer {
                    BLAS.saxpy(count: count, alpha: 1, x: $0.baseAddress!, y: y.baseAddress!)
                }
            }
            if sources.count > 1 { BLAS.sscal(count: count, alpha: 1 / Float(sources.count), x: y.baseAddress!) }
        }
        return sum
    }

    /// Values over many magnitudes, with signed zeros, subnormals and values whose sums round.
    private func gradient(count: Int, seed: UInt64) -> [Float] {
        var random = SplitMix64(seed: seed)
        let specials: [Float] = [0, -0.0, .leastNonzeroMagnitude, -.leastNormalMagnitude, 1e30, -3e38, 1 / 3]
        return (0..<count).map { index in
            if index % 17 == 0 { return specials[index / 17 % specials.count] }
            let unit = Float(random.next() >> 40) / Float(1 << 24) - 0.5
            return unit * Float(sign: .plus, exponent: Int(random.next() % 40) - 20, significand: 1)
        }
    }

    func test_average_bitwiseTheBLASMean_forOneToFiveSources_atOddLengthsAndOffsets() {
        for sourceCount in 1...5 {
            for count in [0, 1, 7, 33, 1001] {
                let sources = (0..<sourceCount).map { gradient(count: count + 3, seed: UInt64(10 * sourceCount + $0)) }
                // Offsets 1 and 3 leave the vector loops unaligned and with a tail.
                let slices = sources.map { Array($0[1..<(count + 1)]) }
                let expected = blasMean(slices)
                var mean = [Float](repeating: .nan, count: count + 3)
                let buffers = sources.map { source -> UnsafeMutableBufferPointer<Float> in
                    let copy = UnsafeMutableBufferPointer<Float>.allocate(capacity: count + 3)
                    _ = copy.initialize(from: source)
                    return copy
                }
                defer { buffers.forEach { $0.deallocate() } }
                mean.withUnsafeMutableBufferPointer { out in
                    GradientMean.average(
                        buffers.map { UnsafeBufferPointer(rebasing: $0[1..<(count + 1)]) },
                        into: UnsafeMutableBufferPointer(rebasing: out[3..<(count + 3)]))
                }
                XCTAssertEqual(
                    mean[3...].map(\.bitPattern), expected.map(\.bitPattern),
                    "\(sourceCount) sources of \(count) values")
                XCTAssertTrue(mean[..<3].allSatisfy(\.isNaN), "wrote outside the mean")
            }
        }
    }

    /// The one-pass BSP mean and SGD step (`FusedMeanSGD`, `OptimizerState.applyMean`) against the two passes it
    /// replaces (the mean into a buffer, then `apply`), bit for bit, over 40 steps of evolving weights: 2 to 5
    /// sources, lengths with every vector tail, unaligned slices, a learning-rate scale, and the step counter.
    func test_applyMean_bitwiseTheMeanThenSGD_overManySteps() throws {
        try XCTSkipUnless(
            FusedMeanSGD.isExact, "no FMA here, or the linked BLAS saxpy rounds twice: the two-pass path is used")
        for sourceCount in 2...5 {
            for count in [1, 7, 15, 33, 1001] {
                let config = OptimizerConfig(kind: .sgd, learningRate: 0.0173)
                var onePass = OptimizerState(config: config, count: count)
                var twoPass = onePass
                XCTAssertTrue(onePass.appliesMeanInOnePass)
                var fused = gradient(count: count + 1, seed: 99)
                var plain = fused
                for step in 0..<40 {
                    let sources = (0..<sourceCount).map {
                        Array(gradient(count: count + 1, seed: UInt64(1000 * step + 10 * sourceCount + $0))[1...])
                    }
                    let lrScale: Float = step % 3 == 0 ? 0.5 : 1
                    sources.withUnsafeBufferPointers { pointers in
                        fused.withUnsafeMutableBufferPointer { w in
                            onePass.applyMean(
                                weights: UnsafeMutableBufferPointer(rebasing: w[1...]), sources: pointers,
                                lrScale: lrScale)
                        }
                        var mean = [Float](repeating: 0, count: count)
                        mean.withUnsafeMutableBufferPointer { m in
                            GradientMean.average(pointers, into: m)
                            plain.withUnsafeMutableBufferPointer { w in
                                twoPass.apply(
                                    weights: UnsafeMutableBufferPointer(rebasing: w[1...]), gradient: m,
                                    lrScale: lrScale)
                            }
                        }
                    }
                    XCTAssertEqual(
                        fused.map(\.bitPattern), plain.map(\.bitPattern),
                        "\(sourceCount) sources of \(count), step \(step)")
                }
                XCTAssertEqual(onePass, twoPass, "the step counters")
            }
        }
    }

    /// Anything but plain SGD keeps the two passes: clipping and weight decay change the gradient first, and the
    /// other optimizers have fused passes of their own.
    func test_appliesMeanInOnePass_onlyPlainSGD() {
        let others = [
            OptimizerConfig(kind: .sgd, learningRate: 0.1, clipValue: 1),
            OptimizerConfig(kind: .sgd, learningRate: 0.1, weightDecay: 0.01),
            OptimizerConfig(kind: .momentum, learningRate: 0.1, momentum: 0.9),
            OptimizerConfig(kind: .adam, learningRate: 0.1),
            OptimizerConfig(kind: .adagrad, learningRate: 0.1),
        ]
        for config in others {
            XCTAssertFalse(OptimizerState(config: config, count: 4).appliesMeanInOnePass, "\(config)")
        }
        XCTAssertEqual(
            OptimizerState(config: OptimizerConfig(kind: .sgd, learningRate: 0.1), count: 4).appliesMeanInOnePass,
            FusedMeanSGD.isExact)
    }
}
