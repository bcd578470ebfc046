import CFusedUpdate
import Foundation

/// The BSP step's mean of the workers' gradients, in as few passes over memory as the arithmetic allows.
public enum GradientMean {
    /// Writes the mean of `sources` into `mean`: `s0 + s1 + … + s(N-1)`, summed left to right in the order
    /// given, then multiplied by `1 / N` (a single source is copied unscaled). Bitwise what copying `s0`, adding
    /// every other source with `BLAS.saxpy` (alpha 1) and scaling with `BLAS.sscal` give, the same operations in
    /// the same order, but two sources take one pass instead of three.
    public static func average(_ sources: [UnsafeBufferPointer<Float>], into mean: UnsafeMutableBufferPointer<Float>) {
        precondition(!sources.isEmpty && sources.allSatisfy { $0.count == mean.count }, "sources must match the mean")
        let count = mean.count
        guard count > 0, let out = mean.baseAddress else { return }
        let first = sources[0].baseAddress!
        guard sources.count > 1 else {
            out.update(from: first, count: count)
            return
        }
        let scale = 1 / Float(sources.count)
        let last = sources[sources.count - 1].baseAddress!
        if sources.count == 2 {
            for i in 0..<count { out[i] = (first[i] + last[i]) * scale }
            return
        }
        let second = sources[1].baseAddress!
        for i in 0..<count { out[i] = first[i] + second[i] }
        for source in sources[2..<(sources.count - 1)] {
            let next = source.baseAddress!
            for i in 0..<count { out[i] = out[i] + next[i] }
        }
        for i in 0..<count { out[i] = (out[i] + last[i]) * scale }
    }
}

/// The BSP step's mean and a plain SGD update in one pass: bitwise what `GradientMean.average` into a buffer and
/// then `BLAS.saxpy(alpha:x:y:)` of that mean into the weights give, but reading each source and weight once and
/// writing each weight once, with no mean written and read back (about a third less memory traffic per shard).
///
/// Exact only where the linked BLAS rounds saxpy's multiply-add once (OpenBLAS's AVX2 and AVX-512 kernels fuse it,
/// its generic C kernel need not): `isExact` runs both ways over many lengths on this machine, once per process,
/// and the fused pass is used only when every element agreed.
public enum FusedMeanSGD {
    /// Whether `apply` is available here and gives the two-pass result bit for bit (probed on first use).
    public static let isExact: Bool = probe()

    /// `weights[i] += alpha * mean[i]`, the mean of `sources` (two or more) summed in order and scaled by
    /// `1 / sources.count` as `GradientMean.average` does, the multiply-add rounded once. Call only when `isExact`.
    public static func apply(
        _ sources: [UnsafeBufferPointer<Float>], into weights: UnsafeMutableBufferPointer<Float>, alpha: Float
    ) {
        precondition(
            sources.count >= 2 && sources.allSatisfy { $0.count == weights.count }, "sources must match the weights")
        guard weights.count > 0, let w = weights.baseAddress else { return }
        let pointers: [UnsafePointer<Float>?] = sources.map { $0.baseAddress }  // a closure: no key path projection
        pointers.withUnsafeBufferPointer { list in
            cfused_mean_axpy_fma(w, list.baseAddress, sources.count, weights.count, 1 / Float(sources.count), alpha)
        }
    }

    /// Both ways on pseudo-random data (magnitudes over twelve binades, so that a second rounding would show), for
    /// every length up to 70 (every vector tail of the BLAS kernels and of `apply`) and two longer ones, with two and
    /// three sources: about 30,000 elements (49 ms in a debug build), once per process (`psserver` runs it at start
    /// in BSP).
    static func probe() -> Bool {
        guard cfused_fma_available() != 0 else { return false }
        var random = SplitMix64(seed: 0x5EED_F05E)
        func values(_ count: Int) -> [Float] {
            (0..<count).map { _ in
                let unit = Float(random.next() >> 40) / Float(1 << 24) - 0.5
                return unit * Float(sign: .plus, exponent: Int(random.next() % 12) - 6, significand: 1)
            }
        }
        for count in Array(1...70) + [1000, 4099] {
            for sourceCount in [2, 3] {
                let sources = (0..<sourceCount).map { _ in values(count) }
                let weights = values(count)
                let alpha = Float(-0.0137)
                var mean = [Float](repeating: 0, count: count)
                var twoPass = weights
                var onePass = weights
                sources.withUnsafeBufferPointers { pointers in
                    mean.withUnsafeMutableBufferPointer { GradientMean.average(pointers, into: $0) }
                    mean.withUnsafeBufferPointer { m in
                        twoPass.withUnsafeMutableBufferPointer { w in
                            BLAS.saxpy(count: count, alpha: alpha, x: m.baseAddress!, y: w.baseAddress!)
                        }
                    }
                    onePass.withUnsafeMutableBufferPointer { apply(pointers, into: $0, alpha: alpha) }
                }
                guard twoPass.map(\.bitPattern) == onePass.map(\.bitPattern) else { return false }
            }
        }
        return true
    }
}

extension Array where Element == [Float] {
    /// Calls `body` with a pointer to every array's storage, in order (the arrays are retained, not copied).
    public func withUnsafeBufferPointers<Result, Failure: Error>(
        _ body: ([UnsafeBufferPointer<Float>]) throws(Failure) -> Result
    ) throws(Failure) -> Result {
        var pointers: [UnsafeBufferPointer<Float>] = []
        pointers.reserveCapacity(count)
        func nest(_ index: Int) throws(Failure) -> Result {
            guard index < count else { return try body(pointers) }
            return try self[index].withUnsafeBufferPointer { (values) throws(Failure) -> Result in
                pointers.append(values)
                return try nest(index + 1)
            }
        }
        return try nest(0)
    }
}
