import PSMath
import PSPosix

/// The global data order of shared/reference/README.md, which every worker computes on its own.
///
/// Epoch e visits the rows in the order `splitmixPermutation(count: rowCount, seed: seed + e)`. Global step t
/// (counted across epochs) is step `s = t % stepsPerEpoch` of epoch `t / stepsPerEpoch`; it covers the global
/// batch `perm[s*K*b ..< (s+1)*K*b]`, of which worker rank r takes `perm[s*K*b + r*b ..< s*K*b + (r+1)*b]`.
/// The last partial global batch of an epoch is dropped, so a BSP run with K workers of batch b follows a
/// single-process run with batch K*b step for step.
///
/// A value type whose copies share one cache of the current epoch's permutation (guarded by a `LockedValue`), so a
/// worker thread asking for consecutive steps permutes once per epoch, not once per step; it is safe to use from
/// several threads.
public struct DataOrder: Sendable {
    /// The number of rows in the (training) data set.
    public let rowCount: Int
    /// K, the number of workers sharing each global batch.
    public let workerCount: Int
    /// b, the rows each worker takes per step.
    public let batchPerWorker: Int
    /// The seed of epoch 0's permutation; epoch e uses `seed + e` (mod 2^64).
    public let seed: UInt64
    private let cache = PermutationCache()

    /// Creates the order; `workerCount` and `batchPerWorker` must be positive.
    public init(rowCount: Int, workerCount: Int, batchPerWorker: Int, seed: UInt64) {
        precondition(rowCount >= 0, "DataOrder: rowCount must not be negative")
        precondition(workerCount > 0, "DataOrder: workerCount must be positive")
        precondition(batchPerWorker > 0, "DataOrder: batchPerWorker must be positive")
        self.rowCount = rowCount
        self.workerCount = workerCount
        self.batchPerWorker = batchPerWorker
        self.seed = seed
    }

    /// K*b, the rows of one global step.
    public var globalBatch: Int { workerCount * batchPerWorker }

    /// `rowCount / (K*b)`: the last partial global batch is dropped; 0 when the data is smaller than one batch.
    public var stepsPerEpoch: Int { rowCount / globalBatch }

    /// The epoch of a global step.
    public func epoch(ofStep step: Int) -> Int {
        precondition(stepsPerEpoch > 0, "DataOrder: fewer rows (\(rowCount)) than one global batch (\(globalBatch))")
        return step / stepsPerEpoch
    }

    /// The step within its epoch of a global step.
    public func stepInEpoch(ofStep step: Int) -> Int {
        precondition(stepsPerEpoch > 0, "DataOrder: fewer rows (\(rowCount)) than one global batch (\(globalBatch))")
        return step % stepsPerEpoch
    }

    /// The permutation of epoch `epoch`: `splitmixPermutation(count: rowCount, seed: seed + epoch)`, cached.
    public func permutation(epoch: Int) -> [Int] {
        precondition(epoch >= 0, "DataOrder: negative epoch \(epoch)")
        if let cached = cache.lookup(epoch: epoch) { return cached }
        let permutation = splitmixPermutation(count: rowCount, seed: seed &+ UInt64(epoch))
        cache.store(epoch: epoch, permutation: permutation)
        return permutation
    }

    /// The row indices of the whole global batch of global step `step` (all workers' rows, rank order).
    public func globalRows(step: Int) -> ArraySlice<Int> {
        precondition(step >= 0, "DataOrder: negative step \(step)")
        let start = stepInEpoch(ofStep: step) * globalBatch
        return permutation(epoch: epoch(ofStep: step))[start..<(start + globalBatch)]
    }

    /// Row indices worker `rank` uses at global step `step` (step counts across epochs: epoch = step / stepsPerEpoch).
    public func rows(step: Int, rank: Int) -> ArraySlice<Int> {
        precondition(rank >= 0 && rank < workerCount, "DataOrder: rank \(rank) out of range 0..<\(workerCount)")
        let global = globalRows(step: step)
        let start = global.startIndex + rank * batchPerWorker
        return global[start..<(start + batchPerWorker)]
    }
}

/// The most recently used epoch's permutation, shared by copies of a `DataOrder`.
private final class PermutationCache: Sendable {
    private let entry = LockedValue<(epoch: Int, permutation: [Int])?>(nil)

    func lookup(epoch: Int) -> [Int]? {
        entry.withLock { entry in entry?.epoch == epoch ? entry?.permutation : nil }
    }

    /// Permutations are computed outside the lock; storing only swaps an array reference.
    func store(epoch: Int, permutation: [Int]) {
        entry.withLock { $0 = (epoch, permutation) }
    }
}
