import PSMath
import PSPosix
import PSWire

/// The registered model: tensor list, layout and the shards this server owns. Immutable once built; shards carry
/// their own locks.
///
/// With one server it owns every shard of the layout. In a scale-out job (`--servers`, `--join`) the layout spans
/// every server's shards and `shards` holds only this server's contiguous run of them (`owned`); a shard's
/// `index` is always its number in the whole layout.
public final class ShardedModel: Sendable {
    public let tensors: [TensorSpec]
    public let layout: ShardLayout
    /// The shards this server owns, in shard order.
    public let shards: [Shard]
    /// The shard numbers of `shards`.
    public let owned: Range<Int>

    init(tensors: [TensorSpec], layout: ShardLayout, shards: [Shard]) {
        self.tensors = tensors
        self.layout = layout
        self.shards = shards
        let first = shards.first?.index ?? 0
        owned = first..<(first + shards.count)
    }

    /// The shard with number `index` in the whole layout, if this server owns it.
    public func shard(_ index: Int) -> Shard? {
        owned.contains(index) ? shards[index - owned.lowerBound] : nil
    }

    /// The part of the flat parameter vector this server's shards cover.
    public var ownedElements: Range<Int> {
        guard let first = shards.first, let last = shards.last else { return 0..<0 }
        return first.range.lowerBound..<last.range.upperBound
    }

    /// Whether this server owns every shard of the layout.
    public var ownsAll: Bool { owned == 0..<layout.shardCount }

    /// Tensor names and shapes, in layout order.
    public var tensorShapes: [TensorShape] { tensors.map { TensorShape(name: $0.name, shape: $0.shape) } }
}

/// A registration or restore that cannot be accepted; the message names the tensor and both shapes.
public struct RegistrationError: Error, CustomStringConvertible, Sendable {
    public let code: ErrorCode
    public let description: String
}

/// The server's parameter store: registers tensors, lays them out over shards and takes consistent snapshots.
public final class ShardStore: Sendable {
    /// The shard count of a store with one server (`--shards`); a scale-out placement may change the layout's.
    public let shardCount: Int
    /// How the next model built is laid out: over how many shards, and which of them this server owns.
    private let placement: LockedValue<StorePlacement>
    let optimizer: OptimizerConfig
    let workerSlots: Int
    /// Whether a later registration must list exactly the registered tensors (a training job: every worker
    /// trains the same model) rather than any subset of them (a plain store).
    let requiresIdenticalTensors: Bool
    /// The most bytes a model may take in this store (`footprintBytes`); a larger registration is refused.
    public let maxModelBytes: Int
    private let model = LockedValue<ShardedModel?>(nil)
    /// Whether the store keeps a spare set of snapshot buffers (a server that takes checkpoints).
    public let keepsSnapshotBuffers: Bool
    /// The spare snapshot buffers, already faulted in, that the next `snapshot()` copies into.
    private let spare = LockedValue<SnapshotBuffers?>(nil)

    /// Creates an empty store; `workerSlots` is how many BSP gradients a shard can hold per step (K).
    ///
    /// `maxModelBytes` bounds what a registration may make the store allocate (`footprintBytes`).
    ///
    /// With `requiresIdenticalTensors` (a job's store), a registration after the first must name the same tensors
    /// with the same shapes in the same order, or it is refused with a message naming the first difference.
    ///
    /// With `keepsSnapshotBuffers`, registering (or installing) a model also allocates and faults in one set of
    /// snapshot buffers, and `recycle(_:)` hands a written snapshot's buffers back, so the checkpoint pause is a
    /// plain copy with no allocation and no page faults; the price is one more copy of the model in memory.
    public init(
        shardCount: Int, optimizer: OptimizerConfig, workerSlots: Int, requiresIdenticalTensors: Bool = false,
        keepsSnapshotBuffers: Bool = false, maxModelBytes: Int = Int.max
    ) {
        precondition(shardCount >= 1, "a store needs at least one shard")
        self.shardCount = shardCount
        placement = LockedValue(StorePlacement(totalShards: shardCount, owned: 0..<shardCount))
        self.optimizer = optimizer
        self.workerSlots = max(workerSlots, 1)
        self.requiresIdenticalTensors = requiresIdenticalTensors
        self.keepsSnapshotBuffers = keepsSnapshotBuffers
        self.maxModelBytes = maxModelBytes
    }

    /// The bytes a model of `elementCount` floats takes in a store, at its peak: the weights, the copy they are
    /// built in, the BSP work buffer, one vector per optimizer state slot and one held gradient per worker slot
    /// (4 bytes per element each). Saturates at `Int.max`.
    public static func footprintBytes(elementCount: Int, optimizer: OptimizerConfig, workerSlots: Int) -> Int {
        let vectors = 3 + optimizer.stateSlotNames.count + max(workerSlots, 1)
        let (perVector, overflow1) = elementCount.multipliedReportingOverflow(by: 4)
        let (total, overflow2) = perVector.multipliedReportingOverflow(by: vectors)
        return overflow1 || overflow2 ? Int.max : total
    }

    /// Refuses a model that is over `maxModelBytes` or that the system cannot allocate now (`resourceExhausted`),
    /// so that a registration the process cannot hold is an error frame, not a trap in the array allocation.
    private func checkMemory(_ tensors: [TensorSpec]) throws(RegistrationError) {
        let elements = tensors.reduce(0) { $0.addingReportingOverflow($1.elementCount).partialValue }
        var bytes = Self.footprintBytes(elementCount: elements, optimizer: optimizer, workerSlots: workerSlots)
        if keepsSnapshotBuffers {
            // The preallocated snapshot: one more copy of the weights and of every optimizer state slot.
            let snapshot =
                Self.footprintBytes(elementCount: elements, optimizer: optimizer, workerSlots: 1)
                / (4 + optimizer.stateSlotNames.count) * (1 + optimizer.stateSlotNames.count)
            bytes = bytes.addingReportingOverflow(snapshot).overflow ? Int.max : bytes + snapshot
        }
        guard bytes <= maxModelBytes else {
            throw RegistrationError(
                code: .resourceExhausted,
                description:
                    "the model's \(elements) floats need \(bytes) bytes of server memory (weights, optimizer state "
                    + "and work buffers), more than --max-model-bytes \(maxModelBytes)")
        }
        guard Host.canAllocate(bytes: bytes) else {
            throw RegistrationError(
                code: .resourceExhausted,
                description:
                    "the model's \(elements) floats need \(bytes) bytes of server memory and the system refused to "
                    + "allocate them (a memory limit such as ulimit -v?); nothing was registered")
        }
    }

    /// The registered model, or nil before the first registration.
    public var current: ShardedModel? { model.withLock { $0 } }

    /// Registers tensors. The first registration defines the model (layout and initial values); a later one must
    /// name only tensors already registered with the same shapes (idempotent), otherwise it is refused.
    @discardableResult
    public func register(_ tensors: [TensorSpec]) throws(RegistrationError) -> ShardedModel {
        try validateNames(tensors)
        let result: Result<ShardedModel, RegistrationError> = model.withLock { existing in
            if let existing {
                return Result { () throws(RegistrationError) in
                    if requiresIdenticalTensors {
                        try Self.checkIdentical(tensors, with: existing)
                    } else {
                        try Self.checkCompatible(tensors, with: existing)
                    }
                    return existing
                }
            }
            do throws(RegistrationError) {
                try checkMemory(tensors)
            } catch {
                return .failure(error)
            }
            let built = buildModel(tensors)
            existing = built
            return .success(built)
        }
        let registered = try result.get()
        reserveSnapshotBuffers()
        return registered
    }

    /// Installs a model whose values come from a checkpoint (used at start-up before any connection).
    public func install(
        tensors: [TensorSpec], values: [String: [Float]], optimizerStep: UInt64,
        optimizerSlots: [String: [String: [Float]]], version: UInt64
    ) throws(RegistrationError) {
        try validateNames(tensors)
        try checkMemory(tensors)
        // The values come from checkpoint files: one of another length would overrun a slice copy below.
        for tensor in tensors {
            let count = tensor.elementCount
            if let given = values[tensor.name], given.count != count {
                throw RegistrationError(
                    code: .invalidArgument,
                    description: "checkpoint tensor '\(tensor.name)' has \(given.count) values, its shape \(count)")
            }
            for (slot, source) in (optimizerSlots[tensor.name] ?? [:]).sorted(by: { $0.key < $1.key })
            where source.count != count {
                throw RegistrationError(
                    code: .invalidArgument,
                    description:
                        "checkpoint optimizer state '\(slot)' of tensor '\(tensor.name)' has \(source.count) values, "
                        + "the tensor \(count)")
            }
        }
        try finishInstall(
            buildModel(tensors, values: values), optimizerStep: optimizerStep, optimizerSlots: optimizerSlots,
            version: version)
    }

    /// Installs a checkpoint's model with every shard's weights read straight into the shard's own storage:
    /// `fill` runs once per shard, in shard order, with the shard's pieces (in tensor order) and its uninitialised
    /// weights, which it must fill completely, or throw, leaving the store unchanged. Walking the shards and their
    /// pieces in that order visits the model's flat vector front to back, one tensor after the other.
    public func install(
        tensors: [TensorSpec], optimizerStep: UInt64, optimizerSlots: [String: [String: [Float]]], version: UInt64,
        fillingShards fill: (_ pieces: [ShardPiece], _ weights: UnsafeMutableBufferPointer<Float>) throws -> Void
    ) throws {
        try validateNames(tensors)
        try checkSlotCounts(tensors, optimizerSlots: optimizerSlots)
        let counts = tensors.map(\.elementCount)
        let place = placement.withLock { $0 }
        let layout = ShardLayout(tensorElementCounts: counts, shardCount: place.totalShards)
        let shards = try place.owned.map { index in
            let range = layout.range(ofShard: index)
            let weights = try [Float](unsafeUninitializedCapacity: range.count) { buffer, initialized in
                try fill(layout.pieces(ofShard: index), buffer)
                initialized = range.count
            }
            return Shard(index: index, range: range, weights: weights, optimizer: optimizer, workerSlots: workerSlots)
        }
        try finishInstall(
            ShardedModel(tensors: tensors, layout: layout, shards: shards), optimizerStep: optimizerStep,
            optimizerSlots: optimizerSlots, version: version)
    }

    private func checkSlotCounts(
        _ tensors: [TensorSpec], optimizerSlots: [String: [String: [Float]]]
    ) throws(RegistrationError) {
        for tensor in tensors {
            let count = tensor.elementCount
            for (slot, source) in (optimizerSlots[tensor.name] ?? [:]).sorted(by: { $0.key < $1.key })
            where source.count != count {
                throw RegistrationError(
                    code: .invalidArgument,
                    description:
                        "checkpoint optimizer state '\(slot)' of tensor '\(tensor.name)' has \(source.count) values, "
                        + "the tensor \(count)")
            }
        }
    }

    /// Restores the optimizer state and version into a built model's shards, then publishes the model.
    private func finishInstall(
        _ built: ShardedModel, optimizerStep: UInt64, optimizerSlots: [String: [String: [Float]]], version: UInt64
    ) throws(RegistrationError) {
        let tensors = built.tensors
        let slotNames = optimizer.stateSlotNames
        for shard in built.shards {
            var slots: [[Float]] = []
            for slotName in slotNames {
                var flat = [Float](repeating: 0, count: shard.range.count)
                for piece in built.layout.pieces(ofShard: shard.index) {
                    let tensorName = tensors[piece.tensorIndex].name
                    guard let source = optimizerSlots[tensorName]?[slotName] else {
                        throw RegistrationError(
                            code: .invalidArgument,
                            description: "checkpoint has no optimizer state '\(slotName)' for tensor '\(tensorName)'")
                    }
                    flat.replaceSubrange(piece.shardRange, with: source[piece.tensorRange])
                }
                slots.append(flat)
            }
            let restored: OptimizerState
            do {
                restored = try OptimizerState(config: optimizer, step: optimizerStep, slots: slots)
            } catch {
                throw RegistrationError(code: .invalidArgument, description: "optimizer state: \(error)")
            }
            shard.state.withLock { state in
                state.optimizer = restored
                state.version = version
                state.bounds = nil
            }
        }
        model.withLock { $0 = built }
        reserveSnapshotBuffers()
    }

    private func validateNames(_ tensors: [TensorSpec]) throws(RegistrationError) {
        guard !tensors.isEmpty else {
            throw RegistrationError(code: .invalidArgument, description: "a registration must name at least one tensor")
        }
        var seen = Set<String>()
        for tensor in tensors {
            guard !tensor.name.isEmpty else {
                throw RegistrationError(code: .invalidArgument, description: "tensor names must not be empty")
            }
            // Names become file names in checkpoints and exports: no path may be smuggled in through them.
            guard !tensor.name.contains("/"), !tensor.name.contains("\0"), tensor.name != ".", tensor.name != "..",
                tensor.name.utf8.count <= 200
            else {
                throw RegistrationError(
                    code: .invalidArgument,
                    description:
                        "tensor name '\(tensor.name)' is refused: names become file names, so they may not contain "
                        + "'/' or NUL, be '.' or '..', or exceed 200 bytes")
            }
            guard seen.insert(tensor.name).inserted else {
                throw RegistrationError(
                    code: .registrationConflict, description: "tensor '\(tensor.name)' is listed twice")
            }
        }
    }

    private static func checkIdentical(_ tensors: [TensorSpec], with existing: ShardedModel) throws(RegistrationError) {
        let actual = tensors.map { TensorShape(name: $0.name, shape: $0.shape) }
        if let difference = TensorShape.firstDifference(expected: existing.tensorShapes, actual: actual) {
            throw RegistrationError(
                code: .registrationConflict,
                description: "refused: this worker's model differs from the job's (set by its first worker): "
                    + difference)
        }
    }

    private static func checkCompatible(_ tensors: [TensorSpec], with existing: ShardedModel) throws(RegistrationError)
    {
        for tensor in tensors {
            guard let known = existing.tensors.first(where: { $0.name == tensor.name }) else {
                throw RegistrationError(
                    code: .registrationConflict,
                    description:
                        "tensor '\(tensor.name)' cannot be added: the model is already laid out with tensors "
                        + "\(existing.tensors.map(\.name)); register every tensor in the first registration")
            }
            guard known.shape == tensor.shape else {
                throw RegistrationError(
                    code: .registrationConflict,
                    description:
                        "tensor '\(tensor.name)' is already registered with shape \(known.shape), not \(tensor.shape)")
            }
        }
    }

    private func buildModel(_ tensors: [TensorSpec], values: [String: [Float]]? = nil) -> ShardedModel {
        let counts = tensors.map { $0.shape.reduce(1, *) }
        let place = placement.withLock { $0 }
        let layout = ShardLayout(tensorElementCounts: counts, shardCount: place.totalShards)
        if let values, tensors.allSatisfy({ values[$0.name] != nil }) {
            // Every value given (a restore): each shard's array is filled straight from the tensors' pieces, one
            // copy, with no flat intermediate.
            let shards = place.owned.map { index in
                let range = layout.range(ofShard: index)
                let weights = [Float](unsafeUninitializedCapacity: range.count) { buffer, initialized in
                    for piece in layout.pieces(ofShard: index) {
                        let source = values[tensors[piece.tensorIndex].name] ?? []
                        _ = UnsafeMutableBufferPointer(rebasing: buffer[piece.shardRange])
                            .initialize(fromContentsOf: source[piece.tensorRange])
                    }
                    initialized = range.count
                }
                return Shard(
                    index: index, range: range, weights: weights, optimizer: optimizer, workerSlots: workerSlots)
            }
            return ShardedModel(tensors: tensors, layout: layout, shards: shards)
        }
        var flat = [Float](repeating: 0, count: layout.totalElements)
        let offsets = layout.tensorOffsets
        flat.withUnsafeMutableBufferPointer { all in
            for (index, tensor) in tensors.enumerated() {
                let slice = UnsafeMutableBufferPointer(rebasing: all[offsets[index]..<(offsets[index] + counts[index])])
                if let given = values?[tensor.name] {
                    _ = slice.update(fromContentsOf: given)
                } else {
                    Initializer(tensor.initializer).fill(slice, shape: tensor.shape)
                }
            }
        }
        let shards = place.owned.map { index in
            let range = layout.range(ofShard: index)
            return Shard(
                index: index, range: range, weights: Array(flat[range]), optimizer: optimizer,
                workerSlots: workerSlots)
        }
        return ShardedModel(tensors: tensors, layout: layout, shards: shards)
    }

    /// A consistent copy of every shard: all shard locks are taken in shard order (the only place that holds
    /// more than one), the weights and optimizer state copied, and the locks released before anything is written.
    ///
    /// The copy goes into the spare buffers when there are some (see `keepsSnapshotBuffers`); otherwise into
    /// fresh, uninitialised ones, whose page faults then fall inside the pause.
    public func snapshot() -> ModelSnapshot? {
        guard let model = current else { return nil }
        let total = model.layout.totalElements
        let slotCount = optimizer.stateSlotNames.count
        var buffers =
            spare.withLock { spare -> SnapshotBuffers? in
                defer { spare = nil }
                return spare
            }.flatMap { $0.fits(total: total, slotCount: slotCount) ? $0 : nil }
            ?? SnapshotBuffers(uninitializedTotal: total, slotCount: slotCount)
        return Self.lockAll(model.shards[...]) { states in
            // One copy of every shard: the whole pause training sees.
            buffers.weights.withUnsafeMutableBufferPointer { buffer in
                for (shard, state) in zip(model.shards, states) {
                    state.weights.withUnsafeBufferPointer {
                        _ = UnsafeMutableBufferPointer(rebasing: buffer[shard.range]).update(fromContentsOf: $0)
                    }
                }
            }
            for slot in 0..<slotCount {
                buffers.slots[slot].withUnsafeMutableBufferPointer { buffer in
                    for (shard, state) in zip(model.shards, states) {
                        state.optimizer.slots[slot].withUnsafeBufferPointer {
                            _ = UnsafeMutableBufferPointer(rebasing: buffer[shard.range]).update(fromContentsOf: $0)
                        }
                    }
                }
            }
            return ModelSnapshot(
                tensors: model.tensors, layout: model.layout, weights: buffers.weights, optimizerSlots: buffers.slots,
                optimizerStep: states.map(\.optimizer.step).max() ?? 0, shardVersions: states.map(\.version))
        }
    }

    /// Allocates and faults in the spare snapshot buffers for the current model, unless the store does not keep
    /// them, there is no model yet, or a spare of the right size is already there.
    public func reserveSnapshotBuffers() {
        guard keepsSnapshotBuffers, let model = current else { return }
        let total = model.layout.totalElements
        let slotCount = optimizer.stateSlotNames.count
        if spare.withLock({ $0?.fits(total: total, slotCount: slotCount) ?? false }) { return }
        let fresh = SnapshotBuffers(zeroedTotal: total, slotCount: slotCount)  // written, so faulted in
        spare.withLock { $0 = fresh }
    }

    /// Hands back the buffers of a snapshot that is no longer needed (the checkpoint writer calls it after a
    /// write), so the next pause copies into them; the caller must drop its own copy of `snapshot` soon after,
    /// or the next snapshot's first write to them copies them (correct, but then the pause page-faults again).
    public func recycle(_ snapshot: ModelSnapshot) {
        guard keepsSnapshotBuffers, let model = current else { return }
        let buffers = SnapshotBuffers(weights: snapshot.weights, slots: snapshot.optimizerSlots)
        guard buffers.fits(total: model.layout.totalElements, slotCount: optimizer.stateSlotNames.count) else {
            return
        }
        spare.withLock { if $0 == nil { $0 = buffers } }
    }

    /// Whether a spare set of snapshot buffers is ready (for tests and benchmarks).
    public var hasSpareSnapshotBuffers: Bool { spare.withLock { $0 != nil } }

    // MARK: Scale-out

    /// How the next model is laid out (all shards owned, unless a scale-out placement said otherwise).
    public var currentPlacement: StorePlacement { placement.withLock { $0 } }

    /// A coordinator whose servers all registered: lays the registered model (if any) out again over
    /// `newPlacement`, keeping every value, optimizer state and version, and keeps only its own shards. Later
    /// registrations use the placement too. Returns the whole model as it was before (what the joined servers'
    /// parts are cut from), or nil when nothing is registered yet.
    @discardableResult
    public func relayout(to newPlacement: StorePlacement) throws(RegistrationError) -> ModelSnapshot? {
        guard let full = snapshot() else {
            placement.withLock { $0 = newPlacement }
            return nil
        }
        placement.withLock { $0 = newPlacement }
        var values: [String: [Float]] = [:]
        var slots: [String: [String: [Float]]] = [:]
        for (index, tensor) in full.tensors.enumerated() {
            values[tensor.name] = full.tensorValues(index, from: full.weights)
            for (slot, name) in optimizer.stateSlotNames.enumerated() {
                slots[tensor.name, default: [:]][name] = full.tensorValues(index, from: full.optimizerSlots[slot])
            }
        }
        try install(
            tensors: full.tensors, values: values, optimizerStep: full.optimizerStep, optimizerSlots: slots,
            version: full.shardVersions.max() ?? 0)
        return full
    }

    /// A joined server's model: `tensors` laid out over `newPlacement`, this server's shards filled from `weights`
    /// and `slots` (the owned part of the flat weight and optimizer-slot vectors, in shard order) with one version
    /// per owned shard.
    public func installPart(
        tensors: [TensorSpec], placement newPlacement: StorePlacement, weights: ArraySlice<Float>,
        slots: [ArraySlice<Float>], optimizerStep: UInt64, versions: [UInt64]
    ) throws(RegistrationError) {
        try validateNames(tensors)
        let layout = ShardLayout(tensorElementCounts: tensors.map(\.elementCount), shardCount: newPlacement.totalShards)
        let ownedElements = layout.range(ofShards: newPlacement.owned)
        let first = ownedElements.lowerBound
        let end = ownedElements.upperBound
        guard weights.count == end - first, slots.count == optimizer.stateSlotNames.count,
            slots.allSatisfy({ $0.count == end - first }), versions.count == newPlacement.owned.count
        else {
            throw RegistrationError(
                code: .invalidArgument,
                description:
                    "model part for shards \(newPlacement.owned) carries \(weights.count) weights, \(slots.count) "
                    + "optimizer slots and \(versions.count) versions; the shards hold \(end - first) elements")
        }
        let base = weights.startIndex
        var shards: [Shard] = []
        for (position, index) in newPlacement.owned.enumerated() {
            let range = layout.range(ofShard: index)
            let local = (range.lowerBound - first)..<(range.upperBound - first)
            let shard = Shard(
                index: index, range: range,
                weights: Array(weights[(base + local.lowerBound)..<(base + local.upperBound)]),
                optimizer: optimizer, workerSlots: workerSlots)
            let shardSlots = slots.map { slot in
                Array(slot[(slot.startIndex + local.lowerBound)..<(slot.startIndex + local.upperBound)])
            }
            let restored: OptimizerState
            do {
                restored = try OptimizerState(
                    config: optimizer, step: optimizerStep, slots: shardSlots, count: range.count)
            } catch {
                throw RegistrationError(code: .invalidArgument, description: "optimizer state: \(error)")
            }
            shard.state.withLock { state in
                state.optimizer = restored
                state.version = versions[position]
            }
            shards.append(shard)
        }
        placement.withLock { $0 = newPlacement }
        model.withLock { $0 = ShardedModel(tensors: tensors, layout: layout, shards: shards) }
    }

    /// This server's part of a consistent snapshot: its shards' weights and optimizer slots (the owned part of the
    /// flat vectors) and versions, copied under all of its shard locks.
    public func partSnapshot() -> PartSnapshot? {
        guard let model = current else { return nil }
        let elements = model.ownedElements
        let slotCount = optimizer.stateSlotNames.count
        return Self.lockAll(model.shards[...]) { states in
            var weights = [Float](repeating: 0, count: elements.count)
            var slots = [[Float]](repeating: [Float](repeating: 0, count: elements.count), count: slotCount)
            for (shard, state) in zip(model.shards, states) {
                let local =
                    (shard.range.lowerBound - elements.lowerBound)..<(shard.range.upperBound - elements.lowerBound)
                weights.replaceSubrange(local, with: state.weights)
                for slot in 0..<slotCount { slots[slot].replaceSubrange(local, with: state.optimizer.slots[slot]) }
            }
            return PartSnapshot(
                shards: model.owned, elements: elements, weights: weights, optimizerSlots: slots,
                optimizerStep: states.map(\.optimizer.step).max() ?? 0, versions: states.map(\.version))
        }
    }

    /// Calls `body` with the states of `shards` locked, taking the locks in order.
    private static func lockAll<R: Sendable>(
        _ shards: ArraySlice<Shard>, collected: [ShardState] = [], _ body: ([ShardState]) -> R
    ) -> R {
        guard let first = shards.first else { return body(collected) }
        return first.state.withLock { state in
            lockAll(shards.dropFirst(), collected: collected + [state], body)
        }
    }
}

/// How a store lays a model out: over `totalShards` shards, of which this server owns `owned`.
public struct StorePlacement: Sendable, Equatable {
    public var totalShards: Int
    public var owned: Range<Int>

    public init(totalShards: Int, owned: Range<Int>) {
        precondition(totalShards >= 1 && owned.lowerBound >= 0 && owned.upperBound <= totalShards && !owned.isEmpty)
        self.totalShards = totalShards
        self.owned = owned
    }
}

/// The flat weight and optimizer-slot arrays a snapshot is copied into.
struct SnapshotBuffers: Sendable {
    var weights: [Float]
    var slots: [[Float]]

    init(weights: [Float], slots: [[Float]]) {
        self.weights = weights
        self.slots = slots
    }

    /// Buffers whose contents are undefined until the snapshot overwrites every element.
    init(uninitializedTotal total: Int, slotCount: Int) {
        let make = { [Float](unsafeUninitializedCapacity: total) { _, count in count = total } }
        weights = make()
        slots = (0..<slotCount).map { _ in make() }
    }

    /// Zero-filled buffers (every page written once).
    init(zeroedTotal total: Int, slotCount: Int) {
        weights = [Float](repeating: 0, count: total)
        slots = (0..<slotCount).map { _ in [Float](repeating: 0, count: total) }
    }

    func fits(total: Int, slotCount: Int) -> Bool {
        weights.count == total && slots.count == slotCount && slots.allSatisfy { $0.count == total }
    }
}

/// A consistent copy of the whole model taken under all shard locks.
public struct ModelSnapshot: Sendable {
    public let tensors: [TensorSpec]
    public let layout: ShardLayout
    /// The flat parameter vector (tensors concatenated in layout order).
    public let weights: [Float]
    /// One flat vector per optimizer state slot (`OptimizerConfig.stateSlotNames` order).
    public let optimizerSlots: [[Float]]
    public let optimizerStep: UInt64
    public let shardVersions: [UInt64]

    /// The values of tensor `index`, copied out of the flat vector.
    public func tensorValues(_ index: Int, from flat: [Float]) -> [Float] {
        Array(flat[tensorRange(index)])
    }

    /// Where tensor `index` lies in the flat vectors.
    public func tensorRange(_ index: Int) -> Range<Int> {
        let start = layout.tensorOffsets[index]
        return start..<(start + tensors[index].shape.reduce(1, *))
    }
}

/// One server's part of a model snapshot (scale-out): its shards' slice of the flat vectors.
public struct PartSnapshot: Sendable {
    /// The shard numbers it covers.
    public var shards: Range<Int>
    /// The part of the flat vectors it covers.
    public var elements: Range<Int>
    public var weights: [Float]
    /// One vector per optimizer state slot.
    public var optimizerSlots: [[Float]]
    public var optimizerStep: UInt64
    /// One version per shard of `shards`.
    public var versions: [UInt64]

    public init(
        shards: Range<Int>, elements: Range<Int>, weights: [Float], optimizerSlots: [[Float]], optimizerStep: UInt64,
        versions: [UInt64]
    ) {
        self.shards = shards
        self.elements = elements
        self.weights = weights
        self.optimizerSlots = optimizerSlots
        self.optimizerStep = optimizerStep
        self.versions = versions
    }
}

extension ModelSnapshot {
    /// The snapshot of the whole model from the coordinator's own snapshot (its shards filled, the rest not) and
    /// every other server's part: each part's slice is copied in, versions follow shard order.
    func merging(_ parts: [PartSnapshot], ownShards: Range<Int>) -> ModelSnapshot {
        var weights = self.weights
        var slots = optimizerSlots
        var versions = Array(shardVersions.prefix(ownShards.count))
        var step = optimizerStep
        for part in parts.sorted(by: { $0.shards.lowerBound < $1.shards.lowerBound }) {
            weights.replaceSubrange(part.elements, with: part.weights)
            for slot in slots.indices { slots[slot].replaceSubrange(part.elements, with: part.optimizerSlots[slot]) }
            versions += part.versions
            step = max(step, part.optimizerStep)
        }
        return ModelSnapshot(
            tensors: tensors, layout: layout, weights: weights, optimizerSlots: slots, optimizerStep: step,
            shardVersions: versions)
    }
}

extension Initializer {
    /// The math-side initializer for a wire-side init spec.
    init(_ spec: InitSpec) {
        switch spec {
        case .zeros: self = .zeros
        case .constant(let value): self = .constant(Float(value))
        case .uniform(let low, let high, let seed): self = .uniform(low: Float(low), high: Float(high), seed: seed)
        case .normal(let mean, let std, let seed): self = .normal(mean: Float(mean), std: Float(std), seed: seed)
        case .glorotUniform(let seed): self = .glorotUniform(seed: seed)
        }
    }
}
