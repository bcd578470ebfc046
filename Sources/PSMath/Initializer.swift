import Foundation

/// How a tensor's initial values are produced; every random kind draws from `SplitMix64(seed:)` alone.
///
/// Values are computed in `Double` and rounded once to `Float`, so a tensor is bit-for-bit reproducible from its
/// initializer and shape (see shared/reference/README.md, "Initialisation").
///
/// ```swift
/// let weights = Initializer.glorotUniform(seed: 1001).values(shape: [784, 128])
/// let bias = Initializer.zeros.values(shape: [128])
/// ```
public enum Initializer: Sendable, Equatable, Codable {
    /// All zeros.
    case zeros
    /// Every element equal to the value.
    case constant(Float)
    /// `low + (high - low) * u` with `u` uniform in [0, 1).
    case uniform(low: Float, high: Float, seed: UInt64)
    /// `mean + std * z` with `z` standard normal by the Box-Muller transform.
    case normal(mean: Float, std: Float, seed: UInt64)
    /// Glorot (Xavier) uniform: `(2u - 1) * sqrt(6 / (fanIn + fanOut))`.
    case glorotUniform(seed: UInt64)

    /// Fills a whole tensor of the given shape (row-major); `out.count` must equal the product of `shape`.
    ///
    /// - zeros, constant: every element.
    /// - uniform: `u[i] = Double(next() >> 11) * 2^-53`, `w[i] = Float(low + (high - low) * u[i])`.
    /// - normal: pairs `(u1, u2)` of such draws give `r = sqrt(-2 ln(1 - u1))`, `z0 = r cos(2 pi u2)`,
    ///   `z1 = r sin(2 pi u2)`; elements take `z0, z1, z0', z1', ...` in order, `w = Float(mean + std * z)`.
    /// - glorotUniform: `fanIn = shape[0]`, `fanOut` = the product of the other dimensions (a 1-D tensor:
    ///   `fanIn = fanOut = shape[0]`; a scalar: 1 and 1), `w[i] = Float((2 u[i] - 1) * sqrt(6 / (fanIn + fanOut)))`.
    public func fill(_ out: UnsafeMutableBufferPointer<Float>, shape: [Int]) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in shape \(shape)")
        let count = shape.reduce(1, *)
        precondition(out.count == count, "buffer of \(out.count) elements for a tensor of shape \(shape)")
        switch self {
        case .zeros:
            out.update(repeating: 0)
        case .constant(let value):
            out.update(repeating: value)
        case .uniform(let low, let high, let seed):
            var generator = SplitMix64(seed: seed)
            let width = Double(high) - Double(low)
            for i in out.indices {
                out[i] = Float(Double(low) + width * generator.nextUnitDouble())
            }
        case .normal(let mean, let std, let seed):
            var generator = SplitMix64(seed: seed)
            var i = 0
            while i < count {
                let radius = (-2 * log(1 - generator.nextUnitDouble())).squareRoot()
                let angle = 2 * Double.pi * generator.nextUnitDouble()
                out[i] = Float(Double(mean) + Double(std) * radius * cos(angle))
                if i + 1 < count {
                    out[i + 1] = Float(Double(mean) + Double(std) * radius * sin(angle))
                }
                i += 2
            }
        case .glorotUniform(let seed):
            let (fanIn, fanOut) = Self.fans(of: shape)
            let limit = (6 / Double(fanIn + fanOut)).squareRoot()
            var generator = SplitMix64(seed: seed)
            for i in out.indices {
                out[i] = Float((2 * generator.nextUnitDouble() - 1) * limit)
            }
        }
    }

    /// A new array holding a tensor of the given shape filled by this initializer.
    public func values(shape: [Int]) -> [Float] {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in shape \(shape)")
        return [Float](unsafeUninitializedCapacity: shape.reduce(1, *)) { buffer, initializedCount in
            initializedCount = buffer.count
            fill(buffer, shape: shape)
        }
    }

    /// Glorot's fan-in and fan-out of a row-major `[fanIn][rest...]` tensor (1-D: both `shape[0]`).
    static func fans(of shape: [Int]) -> (fanIn: Int, fanOut: Int) {
        switch shape.count {
        case 0: return (1, 1)
        case 1: return (shape[0], shape[0])
        default: return (shape[0], shape.dropFirst().reduce(1, *))
        }
    }
}
