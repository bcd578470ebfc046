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
}
