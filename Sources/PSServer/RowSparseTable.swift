import PSMath
import PSPosix
import PSWire
import Synchronization  // Atomic

/// Where the rows of a row-sparse table live: row `r` of a table over `shardCount` shards is local row
/// `r / shardCount` of shard `r % shardCount` (proto-docs/protocol.md, "Row-sparse tensors").
///
/// Round-robin placement spreads the hot low ids of a Zipf-distributed feature space over every shard.
///
/// ```swift
/// let placement = RowPlacement(rows: 10, shardCount: 4)
/// placement.shard(of: 6)        // 2
/// placement.localRow(of: 6)     // 1
/// placement.rowCount(shard: 3)  // 2 (rows 3 and 7)
/// ```
public struct RowPlacement: Sendable, Equatable {
    /// The table's row count.
    public let rows: Int
    /// The number of shards.
    public let shardCount: Int

    /// A placement of `rows` rows over `shardCount` (>= 1) shards.
    public init(rows: Int, shardCount: Int) {
        precondition(rows >= 1 && shardCount >= 1, "RowPlacement: \(rows) rows over \(shardCount) shards")
        self.rows = rows
        self.shardCount = shardCount
    }

    /// The shard that holds global row `row`.
    public func shard(of row: UInt64) -> Int { Int(row % UInt64(shardCount)) }

    /// The position of global row `row` within its shard.
    public func localRow(of row: UInt64) -> Int { Int(row / UInt64(shardCount)) }

    /// The number of rows shard `shard` holds: `ceil((rows - shard) / shardCount)`.
    public func rowCount(shard: Int) -> Int { (rows - shard + shardCount - 1) / shardCount }
}

/// Why a row-sparse request was refused; nothing of it was applied.
public enum SparseRowsError: Error, Equatable, Sendable, CustomStringConvertible {
    /// `ids[index]` is not greater than `ids[index - 1]` (equal: a duplicate).
    case notIncreasing(index: Int, previous: UInt64, id: UInt64)
    /// A row id is not below the table's row count.
    case outOfRange(index: Int, id: UInt64, rows: Int)
    /// The number of values is not `ids.count * width`.
    case valueCountMismatch(expected: Int, actual: Int)
    /// A gradient value is NaN or infinite.
    case nonFinite(index: Int)
    /// No table of that id.
    case unknownTable(UInt32)

    /// The error code of the error frame that reports it.
    public var code: ErrorCode {
        switch self {
        case .notIncreasing, .outOfRange: return .invalidArgument
        case .valueCountMismatch: return .lengthMismatch
        case .nonFinite: return .nonFinite
        case .unknownTable: return .unknownTensor
        }
    }

    public var description: String {
        switch self {
        case .notIncreasing(let index, let previous, let id):
            let what = id == previous ? "a duplicate of" : "not greater than"
            return
                "row ids must be sorted and unique: id \(id) at index \(index) is \(what) the previous id \(previous)"
        case .outOfRange(let index, let id, let rows):
            return "row id \(id) at index \(index) is out of range: the table has \(rows) rows"
        case .valueCountMismatch(let expected, let actual):
            return "expected \(expected) values (row count x width), got \(actual)"
        case .nonFinite(let index):
            return "value \(index) is NaN or infinite"
        case .unknownTable(let table):
            return "no row-sparse table \(table)"
        }
    }
}

/// A row-sparse tensor declared by the job: `rows x width` float32, zero-initialised unless `initialValue` is set.
public struct RowSparseTableSpec: Sendable, Codable, Equatable {
    /// The tensor's name (checkpoint file names derive from it).
    public var name: String
    /// The number of rows (the feature count of a sparse-lr model).
    public var rows: Int
    /// The row width.
    public var width: Int
    /// Initial values uniform in `[-initScale, initScale]` (0: zeros), element `i` of the table drawn from
    /// splitmix64 seeded with `seed ^ i` (so any placement gives the same table).
    public var initScale: Float
    /// The seed of the initial values.
    public var seed: UInt64

    /// Creates a spec.
    public init(name: String, rows: Int, width: Int, initScale: Float = 0, seed: UInt64 = 0) {
        self.name = name
        self.rows = rows
        self.width = width
        self.initScale = initScale
        self.seed = seed
    }

    /// The initial value of element `index` (row-major) of the table.
    public func initialValue(_ index: Int) -> Float {
        guard initScale != 0 else { return 0 }
        var generator = SplitMix64(seed: seed ^ (UInt64(index) &* 0x9E37_79B9_7F4A_7C15))
        return Float((generator.nextUnitDouble() * 2 - 1) * Double(initScale))
    }
}

/// One shard's rows of a row-sparse table: weights, lazy optimizer state, the BSP held pushes and which rows
/// were touched.
struct RowShardState: Sendable {
    var weights: [Float]
    var optimizer: RowOptimizerState
    /// BSP: per rank, the step and the (local rows, values) it pushed for it.
    var held: [Int: (step: UInt64, rows: [Int], values: [Float])] = [:]
    /// One bit per local row, set the first time an update touches the row.
    var touched: [UInt64]
    /// The set bits of `touched`.
    var touchedCount = 0

    init(weights: [Float], optimizer: RowOptimizerState, rows: Int) {
        self.weights = weights
        self.optimizer = optimizer
        touched = [UInt64](repeating: 0, count: (rows + 63) / 64)
    }

    /// Marks the local rows of one update as touched: O(1) per row.
    mutating func markTouched(_ rows: [Int]) {
        for row in rows {
            let bit = UInt64(1) << UInt64(row & 63)
            if touched[row >> 6] & bit == 0 {
                touched[row >> 6] |= bit
                touchedCount += 1
            }
        }
    }
}

/// What a row-sparse table has served, for `/metrics` and status: relaxed atomics, one add per request.
public final class RowSparseTableCounters: Sendable {
    /// `sparsePull` requests answered with rows.
    public let pulls = Atomic<UInt64>(0)
    /// `sparsePush` requests accepted (applied, or held for the BSP barrier).
    public let pushes = Atomic<UInt64>(0)
    /// Rows sent by the pulls and received by the pushes counted above.
    public let rowsPulled = Atomic<UInt64>(0)
    public let rowsPushed = Atomic<UInt64>(0)
    /// Payload bytes (after the 24-byte frame header) of the `sparsePullReply` frames sent and the `sparsePush`
    /// frames accepted.
    public let pullBytes = Atomic<UInt64>(0)
    public let pushBytes = Atomic<UInt64>(0)
    /// Requests refused for bad ids (unsorted, duplicate, out of range), a value count that is not ids x width,
    /// or non-finite values.
    public let refused = Atomic<UInt64>(0)

    init() {}
}

/// A row-sparse table split over shards by `RowPlacement`, each part under its own lock.
///
/// Pushes and pulls name sorted, unique global row ids; every request is validated in full before any lock is
/// taken, so a bad one applies nothing. Async pushes apply at once (`push`); BSP pushes are held per rank
/// (`hold`) and applied once per step by `applyStep`, which sums the ranks' rows in rank order and scales by
/// `1 / K` exactly like the dense BSP mean, so a run is bitwise reproducible whatever the arrival order, and a
/// row no rank touched is not updated (the lazy optimizer semantics of `RowOptimizerKind`).
///
/// ```swift
/// let table = RowSparseTable(spec: RowSparseTableSpec(name: "w", rows: 1 << 20, width: 1), shardCount: 4,
///                            optimizer: RowOptimizerConfig(kind: .adagrad, learningRate: 0.1))
/// try table.push(ids: [3, 17], values: [0.5, -1])
/// let rows = try table.pull(ids: [3, 17])   // 2 x width floats
/// ```
public final class RowSparseTable: Sendable {
    /// The declared shape.
    public let spec: RowSparseTableSpec
    /// Where each row lives.
    public let placement: RowPlacement
    /// The lazy optimizer's configuration (every shard's; it never changes).
    public let optimizerConfig: RowOptimizerConfig
    /// Requests served and refused (kept by the server's request handling).
    public let counters = RowSparseTableCounters()
    /// Updates applied to the whole table: one per async push, one per BSP step.
    private let updates = Atomic<UInt64>(0)
    let shards: [LockedValue<RowShardState>]

    /// A zero-initialised table with fresh optimizer state.
    public init(spec: RowSparseTableSpec, shardCount: Int, optimizer: RowOptimizerConfig) {
        self.spec = spec
        let placement = RowPlacement(rows: spec.rows, shardCount: shardCount)
        self.placement = placement
        optimizerConfig = optimizer
        shards = (0..<shardCount).map { shard in
            let rows = placement.rowCount(shard: shard)
            var weights = [Float](repeating: 0, count: rows * spec.width)
            if spec.initScale != 0 {
                for local in 0..<rows {
                    let row = local * shardCount + shard
                    for column in 0..<spec.width {
                        weights[local * spec.width + column] = spec.initialValue(row * spec.width + column)
                    }
                }
            }
            return LockedValue(
                RowShardState(
                    weights: weights,
                    optimizer: RowOptimizerState(config: optimizer, rows: rows, width: spec.width), rows: rows))
        }
    }

    /// Checks a request: ids strictly increasing and below the row count, `valueCount` (when given) equal to
    /// `ids.count * width`.
    public func validate(ids: [UInt64], valueCount: Int?) throws(SparseRowsError) {
        var previous: UInt64? = nil
        for (index, id) in ids.enumerated() {
            if let previous, id <= previous {
                throw .notIncreasing(index: index, previous: previous, id: id)
            }
            guard id < UInt64(spec.rows) else { throw .outOfRange(index: index, id: id, rows: spec.rows) }
            previous = id
        }
        if let valueCount, valueCount != ids.count * spec.width {
            throw .valueCountMismatch(expected: ids.count * spec.width, actual: valueCount)
        }
    }

    /// The rows `ids` (validated), `ids.count x width` floats in the order of `ids`.
    public func pull(ids: [UInt64]) throws(SparseRowsError) -> [Float] {
        try validate(ids: ids, valueCount: nil)
        return rows(validated: ids)
    }

    /// The rows `ids`, which `validate` has accepted: `ids.count x width` floats in the order of `ids`.
    public func rows(validated ids: [UInt64]) -> [Float] {
        let width = spec.width
        var result = [Float](repeating: 0, count: ids.count * width)
        for (shard, part) in split(ids) {
            shards[shard].withLock { state in
                for (slot, local) in part {
                    for column in 0..<width {
                        result[slot * width + column] = state.weights[local * width + column]
                    }
                }
            }
        }
        return result
    }

    /// Applies one gradient to the rows `ids` at once (async / SSP), after validating the whole request.
    public func push(ids: [UInt64], values: [Float]) throws(SparseRowsError) {
        try validate(ids: ids, valueCount: values.count)
        try requireFinite(values)
        let width = spec.width
        // Every shard applies the update, with no rows where it holds none, so that each shard's optimizer counts
        // the table's updates (lazy Adam's bias correction) whatever rows a push touches.
        let parts = split(ids)
        for shard in shards.indices {
            let (rows, gradient) = gather(parts[shard] ?? [], values: values, width: width)
            shards[shard].withLock { state in
                gradient.withUnsafeBufferPointer {
                    state.optimizer.apply(rows: rows, gradient: $0, weights: &state.weights)
                }
                state.markTouched(rows)
            }
        }
        updates.wrappingAdd(1, ordering: .relaxed)
    }

    /// BSP: holds rank `rank`'s gradient for `step` (replacing an earlier one of the same rank), after validating
    /// the whole request; `applyStep` applies it.
    public func hold(rank: Int, step: UInt64, ids: [UInt64], values: [Float]) throws(SparseRowsError) {
        try validate(ids: ids, valueCount: values.count)
        try requireFinite(values)
        let parts = split(ids)
        for shard in 0..<shards.count {
            let (rows, gradient) = gather(parts[shard] ?? [], values: values, width: spec.width)
            shards[shard].withLock { $0.held[rank] = (step, rows, gradient) }
        }
    }

    /// BSP: applies `step` as one update with the mean over `ranks` (each of which must hold a gradient for the
    /// step; false and nothing applied otherwise): per shard, the held rows are summed in rank order, scaled by
    /// `1 / ranks.count`, and the lazy optimizer applied to the union of the rows.
    @discardableResult
    public func applyStep(_ step: UInt64, ranks: [Int]) -> Bool {
        let ordered = ranks.sorted()
        let ready = shards.allSatisfy { shard in
            shard.withLock { state in ordered.allSatisfy { state.held[$0]?.step == step } }
        }
        guard ready, !ordered.isEmpty else { return false }
        let width = spec.width
        let scale = 1 / Float(ordered.count)
        for shard in shards {
            shard.withLock { state in
                // One flat sum: each row's gradients added in rank order at the row's offset (rows in first-seen
                // order; the optimizer updates every row on its own, so the order of rows does not matter).
                var offsets: [Int: Int] = [:]
                var rows: [Int] = []
                var gradient: [Float] = []
                for rank in ordered {
                    let held = state.held.removeValue(forKey: rank)!
                    for (slot, row) in held.rows.enumerated() {
                        let base = slot * width
                        if let offset = offsets[row] {
                            for column in 0..<width { gradient[offset + column] += held.values[base + column] }
                        } else {
                            offsets[row] = gradient.count
                            rows.append(row)
                            gradient.append(contentsOf: held.values[base..<(base + width)])
                        }
                    }
                }
                if ordered.count > 1 {
                    for index in gradient.indices { gradient[index] *= scale }
                }
                gradient.withUnsafeBufferPointer {
                    state.optimizer.apply(rows: rows, gradient: $0, weights: &state.weights)
                }
                state.markTouched(rows)
            }
        }
        updates.wrappingAdd(1, ordering: .relaxed)
        return true
    }

    /// A copy of a table for a checkpoint: its weights and optimizer state in global row order.
    public struct Copy: Sendable {
        /// The table's shape.
        public let spec: RowSparseTableSpec
        /// `rows x width` weights.
        public let weights: [Float]
        /// The optimizer.
        public let optimizer: RowOptimizerConfig
        /// The optimizer's update count.
        public let step: UInt64
        /// The state slots in `optimizer.stateSlotNames` order.
        public let slots: [[Float]]
    }

    /// Copies the table: each shard's weights and optimizer state under one hold of its lock (so they belong
    /// to the same update), spread into global row order outside it.
    public func copy() -> Copy {
        let parts = shards.map { lock in lock.withLock { ($0.weights, $0.optimizer.slots, $0.optimizer.step) } }
        let slotCount = optimizerConfig.stateSlotNames.count
        return Copy(
            spec: spec, weights: toGlobal(parts.map(\.0)), optimizer: optimizerConfig, step: parts[0].2,
            slots: (0..<slotCount).map { slot in toGlobal(parts.map { $0.1[slot] }) })
    }

    /// The number of updates applied to the table: one per async push (whichever shards its rows touched), one
    /// per BSP step.
    public var version: UInt64 { updates.load(ordering: .relaxed) }

    /// Rows at least one update has touched since the table was made or last restored from a checkpoint (a
    /// bitmap of one bit per row, kept under each shard's lock; a read takes each lock once).
    public var rowsTouched: Int { shards.reduce(0) { $0 + $1.withLock { $0.touchedCount } } }

    /// The whole table, `rows x width` row-major in global row order (for checkpoints and tests).
    public func denseWeights() -> [Float] {
        gatherGlobal { $0.weights }
    }

    /// Every optimizer state slot in global row order, in `stateSlotNames` order, and the step count.
    public func optimizerState() -> (step: UInt64, slots: [[Float]]) {
        let copy = copy()
        return (copy.step, copy.slots)
    }

    /// Replaces the weights and optimizer state with saved ones in global row order (a checkpoint's).
    public func restore(weights: [Float], step: UInt64, slots: [[Float]]) throws(OptimizerError) {
        let width = spec.width
        guard weights.count == spec.rows * width else {
            throw OptimizerError(
                field: spec.name, message: "\(spec.name) has \(weights.count) values, expected \(spec.rows * width)")
        }
        for (shard, lock) in shards.enumerated() {
            let rows = placement.rowCount(shard: shard)
            func local(_ global: [Float]) -> [Float] {
                var part = [Float](repeating: 0, count: rows * width)
                for local in 0..<rows {
                    let row = local * placement.shardCount + shard
                    for column in 0..<width { part[local * width + column] = global[row * width + column] }
                }
                return part
            }
            let config = optimizerConfig
            for slot in slots where slot.count != weights.count {
                throw OptimizerError(field: spec.name, message: "optimizer state of \(slot.count) values")
            }
            let state = try RowOptimizerState(
                config: config, rows: rows, width: width, step: step, slots: slots.map(local))
            let part = local(weights)
            lock.withLock {
                $0.weights = part
                $0.optimizer = state
                $0.held = [:]
                $0.touched = [UInt64](repeating: 0, count: $0.touched.count)
                $0.touchedCount = 0
            }
        }
    }

    private func gatherGlobal(_ field: (RowShardState) -> [Float]) -> [Float] {
        toGlobal(shards.map { lock in lock.withLock { field($0) } })
    }

    /// Per-shard parts (local row order) spread into one `rows x width` vector in global row order.
    private func toGlobal(_ parts: [[Float]]) -> [Float] {
        let width = spec.width
        var result = [Float](repeating: 0, count: spec.rows * width)
        for (shard, part) in parts.enumerated() {
            for local in 0..<placement.rowCount(shard: shard) {
                let row = local * placement.shardCount + shard
                for column in 0..<width { result[row * width + column] = part[local * width + column] }
            }
        }
        return result
    }

    private func requireFinite(_ values: [Float]) throws(SparseRowsError) {
        if let index = values.firstIndex(where: { !$0.isFinite }) { throw .nonFinite(index: index) }
    }

    /// Validated ids grouped by shard: (position in the request, local row), in request order.
    private func split(_ ids: [UInt64]) -> [Int: [(slot: Int, local: Int)]] {
        var parts: [Int: [(slot: Int, local: Int)]] = [:]
        for (slot, id) in ids.enumerated() {
            parts[placement.shard(of: id), default: []].append((slot, placement.localRow(of: id)))
        }
        return parts
    }

    private func gather(_ part: [(slot: Int, local: Int)], values: [Float], width: Int) -> ([Int], [Float]) {
        var gradient: [Float] = []
        gradient.reserveCapacity(part.count * width)
        for (slot, _) in part {
            gradient.append(contentsOf: values[(slot * width)..<((slot + 1) * width)])
        }
        return (part.map(\.local), gradient)
    }
}
