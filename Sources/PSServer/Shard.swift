import PSMath
import PSPosix
import PSWire
import Synchronization  // Atomic

/// One shard: a contiguous slice of the flat parameter vector with its own lock, version and optimizer state.
///
/// Lock discipline: `state`'s lock is held only for arithmetic or a copy, never across a send or a receive.
/// Nothing takes two shard locks except `ShardStore.snapshot`, which takes all of them in shard order.
public final class Shard: Sendable {
    /// Position of the shard in the layout.
    public let index: Int
    /// The flat parameter range the shard owns.
    public let range: Range<Int>
    let state: LockedValue<ShardState>
    let pushCount = Atomic<UInt64>(0)
    let pullCount = Atomic<UInt64>(0)
    let droppedStaleCount = Atomic<UInt64>(0)
    let scaledStaleCount = Atomic<UInt64>(0)
    /// Updates refused because they would have made a weight NaN or infinite.
    let refusedNonFiniteCount = Atomic<UInt64>(0)

    init(index: Int, range: Range<Int>, weights: [Float], optimizer: OptimizerConfig, workerSlots: Int) {
        precondition(weights.count == range.count, "shard weights must match the shard's range")
        self.index = index
        self.range = range
        state = LockedValue(
            ShardState(
                weights: weights, optimizer: OptimizerState(config: optimizer, count: range.count), version: 0,
                slots: Array(repeating: GradientSlot(), count: workerSlots),
                scratch: []))
    }

    /// Number of float32 elements in the shard.
    public var elementCount: Int { range.count }

    /// The shard's version: the number of updates applied.
    public var version: UInt64 { state.withLock { $0.version } }
}

/// One worker's held gradient for the pending BSP step of a shard.
struct GradientSlot {
    var step: UInt64? = nil
    var values: [Float] = []
    /// At least the largest `|g|` of `values` (infinity when unknown).
    var bound: Double = .infinity
}

/// What a BSP `applyMean` did.
enum MeanOutcome: Equatable {
    case applied
    /// A listed rank holds no gradient for the step: nothing applied.
    case missingGradient
    /// The update would have made a weight NaN or infinite: nothing applied, the held gradients dropped.
    case refusedNonFinite
}

/// Everything a shard's lock protects.
struct ShardState: Sendable {
    var weights: [Float]
    var optimizer: OptimizerState
    var version: UInt64
    /// BSP: the gradients held for the pending step, one slot per rank.
    var slots: [GradientSlot]
    /// Work buffer for the BSP mean, allocated by the first BSP step: an async or SSP job never touches it, and a
    /// restore or registration does not fault in and zero a second copy of the weights for it.
    var scratch: [Float]
    /// Bounds on the weights' and optimizer state's magnitudes that prove the next update finite without a pass
    /// over the weights; nil until measured (lazily, by the first checked update) and after a restore.
    var bounds: MagnitudeBounds? = nil

    /// Applies one gradient update (async/SSP path); the gradient buffer may be overwritten.
    mutating func apply(gradient: UnsafeMutableBufferPointer<Float>, lrScale: Float) {
        weights.withUnsafeMutableBufferPointer { w in
            optimizer.apply(weights: w, gradient: gradient, lrScale: lrScale)
        }
        version += 1
    }

    /// Applies one update unless it would make a weight NaN or infinite; false means refused, with the weights,
    /// the optimizer state and the version exactly as before. `gradientBound` is at least the largest `|g|`; nil
    /// turns the check off (`--allow-nonfinite`).
    ///
    /// Usually `MagnitudeBounds.afterUpdate` proves the update finite in O(1) and it is applied in place as
    /// `apply` would. Otherwise the update is applied on a copy-on-write backup of the state (the weights and the
    /// optimizer slots are copied by the first write), the result measured, and the backup put back if a weight
    /// is not finite.
    mutating func applyChecked(
        gradient: UnsafeMutableBufferPointer<Float>, gradientBound: Double?, lrScale: Float
    ) -> Bool {
        applyChecked(gradientBound: gradientBound, lrScale: lrScale) { $0.apply(gradient: gradient, lrScale: lrScale) }
    }

    /// `applyChecked(gradient:gradientBound:lrScale:)` for any `update` that is one optimizer step with gradient
    /// elements bounded by `gradientBound` (the BSP mean applied in one pass, `applyMean`).
    private mutating func applyChecked(
        gradientBound: Double?, lrScale: Float, update: (inout ShardState) -> Void
    ) -> Bool {
        guard let gradientBound else {
            update(&self)
            return true
        }
        if let next = currentBounds().afterUpdate(config: optimizer.config, gradient: gradientBound, lrScale: lrScale) {
            update(&self)
            bounds = next
            return true
        }
        let backup = self
        update(&self)
        let measured = measureBounds()
        guard measured.weights.isFinite else {
            self = backup
            return false
        }
        bounds = measured
        return true
    }

    /// Whether `MagnitudeBounds` proves an update with gradient elements bounded by `gradientBound` finite.
    mutating func provesFinite(gradientBound: Double) -> Bool {
        currentBounds().afterUpdate(config: optimizer.config, gradient: gradientBound, lrScale: 1) != nil
    }

    private mutating func currentBounds() -> MagnitudeBounds {
        if let bounds { return bounds }
        let measured = measureBounds()
        bounds = measured
        return measured
    }

    private func measureBounds() -> MagnitudeBounds {
        weights.withUnsafeBufferPointer { MagnitudeBounds.measure(weights: $0, state: optimizer) }
    }

    /// Stores `rank`'s gradient for `step` (BSP), copying it out of the connection's receive buffer; `bound` is at
    /// least its largest `|g|`.
    mutating func hold(step: UInt64, rank: Int, gradient: UnsafeBufferPointer<Float>, bound: Double = .infinity) {
        if slots[rank].values.count != gradient.count {
            slots[rank].values = [Float](repeating: 0, count: gradient.count)
        }
        slots[rank].values.withUnsafeMutableBufferPointer { destination in
            _ = destination.initialize(fromContentsOf: gradient)
        }
        slots[rank].step = step
        slots[rank].bound = bound
    }

    /// Makes `gradient` `rank`'s held gradient for `step` by swapping it with the slot's array, which `gradient`
    /// takes over (the previous held gradient, already consumed, or empty): no copy. `bound` is at least its
    /// largest `|g|`.
    mutating func hold(step: UInt64, rank: Int, swapping gradient: inout [Float], bound: Double) {
        swap(&slots[rank].values, &gradient)
        slots[rank].step = step
        slots[rank].bound = bound
    }

    /// Applies the mean of the held gradients of `ranks` for `step`, summed in rank order (bitwise reproducible).
    /// Applies nothing if a listed rank holds no gradient for that step or, when `checksFinite`, if the update
    /// would make a weight NaN or infinite (`applyChecked`).
    mutating func applyMean(step: UInt64, ranks: [Int], checksFinite: Bool = false) -> MeanOutcome {
        guard !ranks.isEmpty, ranks.allSatisfy({ $0 < slots.count && slots[$0].step == step }) else {
            return .missingGradient
        }
        // The mean's elements are no larger than the largest held one (plus rounding, which the bounds allow for).
        let meanBound = checksFinite ? ranks.map { slots[$0].bound }.max() ?? .infinity : nil
        let applied: Bool
        if ranks.count == 1 {
            // One worker's gradient is the mean: the update reads it where it is held (and may overwrite it; it is
            // consumed). Taken out of its slot for the update, which must not see it move, and put back after.
            var held: [Float] = []
            swap(&held, &slots[ranks[0]].values)
            applied = held.withUnsafeMutableBufferPointer { gradient in
                applyChecked(gradient: gradient, gradientBound: meanBound, lrScale: 1)
            }
            swap(&held, &slots[ranks[0]].values)
        } else if optimizer.appliesMeanInOnePass {
            // Plain SGD: the mean and the update in one pass, reading the held gradients where they are.
            let held = ranks.map { slots[$0].values }
            applied = applyChecked(gradientBound: meanBound, lrScale: 1) { state in
                held.withUnsafeBufferPointers { sources in
                    state.weights.withUnsafeMutableBufferPointer { w in
                        state.optimizer.applyMean(weights: w, sources: sources)
                    }
                }
                state.version += 1
            }
        } else {
            let count = weights.count
            if scratch.count != count { scratch = [Float](repeating: 0, count: count) }
            // The sum lives in `scratch`, which the update must not see move: hand it over and take it back after.
            var mean: [Float] = []
            swap(&mean, &scratch)
            mean.withUnsafeMutableBufferPointer { mean in
                ranks.map { slots[$0].values }.withUnsafeBufferPointers { GradientMean.average($0, into: mean) }
            }
            applied = mean.withUnsafeMutableBufferPointer { gradient in
                applyChecked(gradient: gradient, gradientBound: meanBound, lrScale: 1)
            }
            swap(&mean, &scratch)
        }
        for rank in ranks { slots[rank].step = nil }
        return applied ? .applied : .refusedNonFinite
    }

    /// Forgets whatever `rank` holds (it died or left).
    mutating func dropHeld(rank: Int) {
        if rank < slots.count { slots[rank].step = nil }
    }
}
