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

    init(index: Int, range: Range<Int>, weights: [Float], optimizer: OptimizerConfig, workerSlots: Int) {
        precondition(weights.count == range.count, "shard weights must match the shard's range")
        self.index = index
        self.range = range
        state = LockedValue(
            ShardState(
                weights: weights, optimizer: OptimizerState(config: optimizer, count: range.count), version: 0,
                slots: Array(repeating: GradientSlot(), count: workerSlots),
                scratch: [Float](repeating: 0, count: range.count)))
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
}

/// Everything a shard's lock protects.
struct ShardState: Sendable {
    var weights: [Float]
    var optimizer: OptimizerState
    var version: UInt64
    /// BSP: the gradients held for the pending step, one slot per rank.
    var slots: [GradientSlot]
    /// Work buffer for the BSP mean, sized once.
    var scratch: [Float]

    /// Applies one gradient update (async/SSP path); the gradient buffer may be overwritten.
    mutating func apply(gradient: UnsafeMutableBufferPointer<Float>, lrScale: Float) {
        weights.withUnsafeMutableBufferPointer { w in
            optimizer.apply(weights: w, gradient: gradient, lrScale: lrScale)
        }
        version += 1
    }

    /// Stores `rank`'s gradient for `step` (BSP), copying it out of the connection's receive buffer.
    mutating func hold(step: UInt64, rank: Int, gradient: UnsafeBufferPointer<Float>) {
        if slots[rank].values.count != gradient.count {
            slots[rank].values = [Float](repeating: 0, count: gradient.count)
        }
        slots[rank].values.withUnsafeMutableBufferPointer { destination in
            _ = destination.initialize(fromContentsOf: gradient)
        }
        slots[rank].step = step
    }

    /// Applies the mean of the held gradients of `ranks` for `step`, summed in rank order (bitwise reproducible).
    /// Returns false (and applies nothing) if a listed rank holds no gradient for that step.
    mutating func applyMean(step: UInt64, ranks: [Int]) -> Bool {
        guard !ranks.isEmpty, ranks.allSatisfy({ $0 < slots.count && slots[$0].step == step }) else { return false }
        let count = scratch.count
        scratch.withUnsafeMutableBufferPointer { sum in
            slots[ranks[0]].values.withUnsafeBufferPointer { first in
                _ = sum.update(fromContentsOf: first)
            }
            for rank in ranks.dropFirst() {
                slots[rank].values.withUnsafeBufferPointer { g in
                    BLAS.saxpy(count: count, alpha: 1, x: g.baseAddress!, y: sum.baseAddress!)
                }
            }
            if ranks.count > 1 {
                BLAS.sscal(count: count, alpha: 1 / Float(ranks.count), x: sum.baseAddress!)
            }
            weights.withUnsafeMutableBufferPointer { w in
                optimizer.apply(weights: w, gradient: sum, lrScale: 1)
            }
        }
        for rank in ranks { slots[rank].step = nil }
        version += 1
        return true
    }

    /// Forgets whatever `rank` holds (it died or left).
    mutating func dropHeld(rank: Int) {
        if rank < slots.count { slots[rank].step = nil }
    }
}
