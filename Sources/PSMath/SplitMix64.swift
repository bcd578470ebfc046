/// The splitmix64 generator (Steele, Lea & Flood 2014): every random choice in SwiftPS comes from it,
/// so that a run is reproducible from its seed alone (see shared/reference/README.md).
///
/// ```swift
/// var generator = SplitMix64(seed: 1)
/// let u = generator.nextUnitDouble()   // 0.56656158..., as in shared/reference/README.md
/// ```
public struct SplitMix64: Sendable, Equatable {
    /// The generator's state; the next output depends on nothing else.
    public var state: UInt64

    /// Creates a generator whose state starts at `seed`.
    public init(seed: UInt64) {
        state = seed
    }

    /// Advances the state and returns the next 64-bit output (all arithmetic mod 2^64).
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A uniform double in [0, 1) from the top 53 bits of the next output.
    public mutating func nextUnitDouble() -> Double {
        Double(next() >> 11) * 0x1p-53
    }
}

/// The Fisher-Yates permutation of `0..<count` driven by splitmix64 from `seed`, exactly as the reference
/// implementation: for i from count-1 down to 1, j = next() % (i + 1), swap.
public func splitmixPermutation(count: Int, seed: UInt64) -> [Int] {
    var indices = Array(0..<count)
    guard count > 1 else { return indices }
    var generator = SplitMix64(seed: seed)
    var i = count - 1
    while i >= 1 {
        let j = Int(generator.next() % UInt64(i + 1))
        indices.swapAt(i, j)
        i -= 1
    }
    return indices
}
