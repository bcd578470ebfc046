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
