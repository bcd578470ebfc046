import Foundation
import PSCheckpoint
import PSCoordinator
import PSLog
import PSMath
import PSPosix
import PSWire

/// Takes checkpoints for the server: the in-memory copy happens under the shard locks (in the caller, which is
/// the only pause training sees); the disk writes (checkpoints, final weights, exports) run on one background
/// thread, one at a time, in order, never on a connection's thread.
final class CheckpointManager: Sendable {
    let root: String
    let keep: Int?
    let log: Logger
    /// Names of the optimizer's state slots (`OptimizerConfig.stateSlotNames`), in snapshot order.
    let slotNames: [String]
    /// The queue and the writer's progress; waiters for a ticket sleep on its condition.
    private let state = LockedValue(WriterState())

    private struct WriterState {
        var queue: [PendingWrite] = []
        var writing = false
        var lastWritten: String? = nil
        /// Tickets of writes that finished, with the error text of those that failed.
        var completedWrites = 0
        var failures: [Int: String] = [:]
        var requestedWrites = 0
        /// The step of the latest checkpoint queued (`requestedWrites` is its ticket).
        var lastTakenStep: UInt64 = 0
        /// Checkpoints an operator (or a stop) asked for that the next boundary must take, even when busy.
        var explicitRequests = 0
        /// Scheduled checkpoints skipped because the previous write was still in flight.
        var skipped: UInt64 = 0
    }

    /// A write waiting for the writer thread. The per-tensor arrays are cut out of the snapshot there, so
    /// training pauses only for the snapshot's one copy under the shard locks.
    private struct PendingWrite: Sendable {
        /// `<root>/final` (the final weights and the manifest, no optimizer state) rather than a checkpoint.
        let final: Bool
        let manifest: CheckpointManifest
        let snapshot: ModelSnapshot
        let ticket: Int
        /// The row-sparse tables, copied when the dense snapshot was handed over.
        var sparse: [RowSparseTable.Copy] = []
    }

    /// The job facts a manifest records besides the weights (nil fields for a plain store).
    struct JobContext: Sendable {
        var mode = "store"
        var job: JobDescription? = nil
        var optimizer: OptimizerConfig? = nil
        var workerClocks: [String: UInt64] = [:]
        var workerRanks: [String: Int] = [:]
    }

    /// A checkpoint that was taken (and, if `durable`, is on disk).
    struct Written: Sendable {
        let step: UInt64
        let path: String
        let durable: Bool
    }

    /// Where written checkpoints are counted and timed.
    let metrics: ServerMetrics
    /// The store whose snapshots this manager writes; each written snapshot's buffers go back to it.
    let store: ShardStore?
    /// The job's row-sparse tables: every checkpoint copies them when it is taken and writes each as a
    /// `rows x width` tensor with its optimizer state slots (`<name>.npy`, `<name>.ftrl_z.npy`, …).
    let sparseTables: [RowSparseTable]

    init(
        root: String, keep: Int?, slotNames: [String], log: Logger, metrics: ServerMetrics = ServerMetrics(),
        store: ShardStore? = nil, sparseTables: [RowSparseTable] = []
    ) {
        self.sparseTables = sparseTables
        self.metrics = metrics
        self.store = store
        self.root = root
        self.slotNames = slotNames
        self.keep = keep
        self.log = log
    }

    var lastWritten: String? { state.withLock { $0.lastWritten } }

    /// Scheduled checkpoints skipped so far because the previous one was still being written.
    var skippedCheckpoints: UInt64 { state.withLock { $0.skipped } }

    /// Records that the next checkpoint is asked for explicitly (psctl checkpoint, a stop): it is taken even
    /// when a write is in flight.
    func noteExplicitRequest() {
        state.withLock { $0.explicitRequests += 1 }
    }

    /// Whether a scheduled checkpoint may be taken now: at most one snapshot is in flight, so one that falls
    /// due while the previous is still queued or being written is skipped (counted; logged the first time).
    /// An explicit request is always taken. Returns false when the caller must skip it.
    func admitScheduled(step: UInt64) -> Bool {
        let (admit, firstSkip) = state.withLock { state -> (Bool, Bool) in
            if state.explicitRequests > 0 {
                state.explicitRequests -= 1
                return (true, false)
            }
            // Busy until the newest queued write completed (the writer clears `writing` a moment later).
            guard state.completedWrites < state.requestedWrites else { return (true, false) }
            state.skipped += 1
            return (false, state.skipped == 1)
        }
        if firstSkip {
            log.warning(
                "checkpoint-skipped",
                [
                    "step": step,
                    "reason":
                        "the previous checkpoint is still being written; later skips are only counted (status)",
                ])
        }
        return admit
    }

    /// How many checkpoints were queued so far (a ticket number; see `waitForTicket(after:seconds:)`).
    var requestedWrites: Int { state.withLock { $0.requestedWrites } }

    // MARK: Taking

    /// Queues a checkpoint of `snapshot` recording `step`; returns its ticket and the directory it will have.
    @discardableResult
    func take(snapshot: ModelSnapshot, step: UInt64, context: JobContext, final: Bool = false)
        -> (ticket: Int, step: UInt64, path: String)
    {
        var manifest = makeManifest(snapshot: snapshot, step: step, context: context)
        let sparse = sparseTables.map { $0.copy() }
        if let first = sparse.first {
            manifest.job["sparse_tables"] = sparse.map(\.spec.name).joined(separator: ",")
            manifest.job["sparse_optimizer"] = first.optimizer.kind.rawValue
            manifest.job["sparse_optimizer_step"] = "\(first.step)"
        }
        let (ticket, startWriter) = state.withLockAndBroadcast { state in
            state.requestedWrites += 1
            state.lastTakenStep = step
            state.queue.append(
                PendingWrite(
                    final: final, manifest: manifest, snapshot: snapshot, ticket: state.requestedWrites, sparse: sparse)
            )
            let start = !state.writing
            state.writing = true
            return (state.requestedWrites, start)
        }
        if startWriter {
            let thread = Thread { [self] in writeLoop() }
            thread.name = "psserver-checkpoint"
            thread.start()
        }
        let path = final ? root + "/final" : root + "/" + CheckpointWriter.directoryName(step: step)
        return (ticket, step, path)
    }

    /// Waits until a checkpoint after ticket `before` was queued (BSP: at the next step boundary); returns its
    /// ticket and step, or nil at the deadline.
    func waitForCheckpoint(after before: Int, seconds: Double) -> (ticket: Int, step: UInt64)? {
        let deadline = MonotonicClock.deadline(afterSeconds: seconds)
        return state.wait(until: deadline, while: { $0.requestedWrites <= before }) { state, timedOut in
            timedOut ? nil : (state.requestedWrites, state.lastTakenStep)
        }
    }

    // MARK: Writing (background thread)

    private func writeLoop() {
        while true {
            let next: PendingWrite? = state.withLock { state in
                if state.queue.isEmpty {
                    state.writing = false
                    return nil
                }
                return state.queue.removeFirst()
            }
            guard let next else { return }
            var error: String? = nil
            var path = ""
            let started = MonotonicClock.nanoseconds()
            do {
                if next.final {
                    path = try writeFinalDirectory(next)
                } else {
                    path = try CheckpointWriter.write(
                        root: root, manifest: next.manifest,
                        slices: slices(of: next.snapshot) + Self.slices(of: next.sparse), keepLast: keep)
                }
                log.info("checkpoint-written", ["path": path, "step": next.manifest.step])
                metrics.checkpointWritten(
                    seconds: Double(MonotonicClock.nanoseconds() &- started) / 1e9, bytes: next.snapshot.byteCount)
            } catch let failure {
                error = "\(failure)"
                metrics.checkpointFailures.wrappingAdd(1, ordering: .relaxed)
                log.error("checkpoint-failed", ["step": next.manifest.step, "error": "\(failure)"])
            }
            // The buffers go back to the store for the next pause; `next` is dropped at the end of this
            // iteration, leaving the store's reference the only one (unless another queued write shares it).
            store?.recycle(next.snapshot)
            state.withLockAndBroadcast { state in
                state.completedWrites = next.ticket
                if let error {
                    state.failures[next.ticket] = error
                } else {
                    state.lastWritten = path
                }
            }
        }
    }

    /// The snapshot's tensors, then its optimizer state tensors, as ranges of its flat buffers (no copies).
    private func slices(of snapshot: ModelSnapshot, withOptimizerState: Bool = true) -> [CheckpointSlice] {
        var tensors: [CheckpointSlice] = []
        var states: [CheckpointSlice] = []
        for (index, tensor) in snapshot.tensors.enumerated() {
            let range = snapshot.tensorRange(index)
            tensors.append(
                CheckpointSlice(name: tensor.name, shape: tensor.shape, storage: snapshot.weights, range: range))
            guard withOptimizerState else { continue }
            for (slot, flat) in snapshot.optimizerSlots.enumerated() {
                states.append(
                    CheckpointSlice(
                        name: tensor.name, slot: slotNames[slot], shape: tensor.shape, storage: flat, range: range))
            }
        }
        return tensors + states
    }

    /// The row-sparse tables as `rows x width` tensors, then their optimizer state slots.
    private static func slices(of tables: [RowSparseTable.Copy], withOptimizerState: Bool = true) -> [CheckpointSlice] {
        var tensors: [CheckpointSlice] = []
        var states: [CheckpointSlice] = []
        for table in tables {
            let shape = [table.spec.rows, table.spec.width]
            tensors.append(
                CheckpointSlice(
                    name: table.spec.name, shape: shape, storage: table.weights, range: table.weights.indices))
            guard withOptimizerState else { continue }
            for (name, slot) in zip(table.optimizer.stateSlotNames, table.slots) {
                states.append(
                    CheckpointSlice(name: table.spec.name, slot: name, shape: shape, storage: slot, range: slot.indices)
                )
            }
        }
        return tensors + states
    }

    /// The final weights: a plain directory of `.npy` files (one per tensor) and the manifest, replaced atomically.
    private func writeFinalDirectory(_ pending: PendingWrite) throws -> String {
        let finalRoot = root + "/final-tmp-\(Host.processID())"
        try? FileManager.default.removeItem(atPath: finalRoot)
        let written = try CheckpointWriter.write(
            root: finalRoot, manifest: pending.manifest,
            slices: slices(of: pending.snapshot, withOptimizerState: false)
                + Self.slices(of: pending.sparse, withOptimizerState: false), keepLast: 1)
        let target = root + "/final"
        try? FileManager.default.removeItem(atPath: target)
        try FileManager.default.moveItem(atPath: written, toPath: target)
        try? FileManager.default.removeItem(atPath: finalRoot)
        return target
    }

    /// Waits until the write with `ticket` finished; returns its error text, if any.
    func waitFor(ticket: Int, seconds: Double) -> String? {
        let deadline = MonotonicClock.deadline(afterSeconds: seconds)
        return state.wait(until: deadline, while: { $0.completedWrites < ticket }) { state, timedOut in
            timedOut ? "the checkpoint was not written within \(Int(seconds)) s" : state.failures[ticket]
        }
    }

    /// Waits for every queued write (used when the server stops).
    func waitForWrites() {
        _ = waitFor(ticket: requestedWrites, seconds: 600)
    }

    // MARK: Manifest and restore

    private func makeManifest(snapshot: ModelSnapshot, step: UInt64, context: JobContext) -> CheckpointManifest {
        var job: [String: String] = [:]
        var dataOrder: DataOrderEntry? = nil
        var optimizer = OptimizerEntry(name: "sgd")
        if let description = context.job {
            job = [
                "model": description.model, "data": description.data, "batch": "\(description.batchPerWorker)",
                "epochs": "\(description.epochs)", "seed": "\(description.seed)", "workers": "\(description.workers)",
                "mode": description.mode, "stepsPerEpoch": "\(description.stepsPerEpoch)",
                "totalSteps": "\(description.totalSteps)",
            ]
            if description.stepsPerEpoch > 0 {
                dataOrder = DataOrderEntry(
                    epoch: step / UInt64(description.stepsPerEpoch),
                    stepInEpoch: step % UInt64(description.stepsPerEpoch), seed: description.seed,
                    globalBatch: description.batchPerWorker * description.workers)
            }
        }
        if let config = context.optimizer {
            optimizer = OptimizerEntry(
                name: config.kind.rawValue, hyperParameters: config.hyperParameters, step: snapshot.optimizerStep)
        }
        return CheckpointManifest(
            step: step, mode: context.mode, job: job, workerClocks: context.workerClocks,
            workerRanks: context.workerRanks, shardCount: snapshot.layout.shardCount,
            shardVersions: snapshot.shardVersions, optimizer: optimizer, dataOrder: dataOrder)
    }

    /// What a restore recovered.
    struct Restored {
        let path: String
        let step: UInt64
        let workerClocks: [String: UInt64]
        let workerRanks: [String: Int]
    }

    /// Loads and verifies a checkpoint, checks it matches the job's tensors, and installs it in `store`
    /// (re-split over the store's shard count, whatever the checkpoint's).
    func restore(spec: String, into store: ShardStore, expectedTensors: [TensorSpec]) throws -> Restored {
        let directory = try CheckpointReader.resolve(root: root, spec: spec)
        var manifest = try CheckpointReader.loadManifest(directory: directory)
        // A damaged file is reported before anything else, as a full `CheckpointReader.load` would: when a check
        // below fails, the whole checkpoint is read the plain way first, which throws any file's error.
        func failing(_ error: Error) throws -> Error {
            _ = try CheckpointReader.load(directory: directory)
            return error
        }
        // The row-sparse tables' tensors are restored into the tables; the rest is the dense model.
        let sparseNames = Set(sparseTables.map(\.spec.name))
        let sparseEntries = manifest.tensors.filter { sparseNames.contains($0.name) }
        manifest.tensors.removeAll { sparseNames.contains($0.name) }
        let tensors = manifest.tensors.map { TensorSpec(name: $0.name, shape: $0.shape, initializer: .zeros) }
        if !expectedTensors.isEmpty {
            let expected = expectedTensors.map { "\($0.name)\($0.shape)" }
            let found = tensors.map { "\($0.name)\($0.shape)" }
            guard expected == found else {
                throw try failing(
                    CheckpointError(
                        file: directory + "/manifest.json",
                        message: "the checkpoint holds tensors \(found) but the job's model has \(expected)"))
            }
        }
        guard manifest.optimizer.name == store.optimizer.kind.rawValue else {
            throw try failing(
                CheckpointError(
                    file: directory + "/manifest.json",
                    message:
                        "the checkpoint was written with optimizer \(manifest.optimizer.name), the server runs "
                        + "\(store.optimizer.kind.rawValue)"))
        }
        let states: [String: NPYArray]
        do {
            states = try CheckpointReader.loadOptimizerStates(directory: directory, manifest: manifest)
        } catch {
            throw try failing(error)
        }
        var slots: [String: [String: [Float]]] = [:]
        for entry in manifest.optimizer.states {
            guard let slot = entry.slot, let array = states[entry.key] else { continue }
            slots[entry.name, default: [:]][slot] = array.values
        }
        try restoreSparseTables(directory: directory, manifest: manifest, entries: sparseEntries, slots: slots)
        for name in sparseNames { slots[name] = nil }
        let version = manifest.shardVersions.max() ?? manifest.step
        // The weights go straight from the files into the shards, each file's CRC verified in the same pass.
        try store.installCheckpoint(directory: directory, manifest: manifest, optimizerSlots: slots, version: version)
        return Restored(
            path: directory, step: manifest.step, workerClocks: manifest.workerClocks,
            workerRanks: manifest.workerRanks)
    }

    /// Restores every row-sparse table from its tensor and state slots; a table the checkpoint lacks, or one
    /// written with another optimizer or shape, is an error naming the manifest.
    private func restoreSparseTables(
        directory: String, manifest: CheckpointManifest, entries: [TensorEntry], slots: [String: [String: [Float]]]
    ) throws {
        guard !sparseTables.isEmpty else { return }
        let file = directory + "/manifest.json"
        for table in sparseTables {
            let name = table.spec.name
            let shape = [table.spec.rows, table.spec.width]
            // Only the table's own file: the dense tensors and the optimizer state are read elsewhere.
            guard let entry = entries.first(where: { $0.name == name }) else {
                throw CheckpointError(file: file, message: "the checkpoint holds no row-sparse table \(name)")
            }
            guard entry.shape == shape else {
                throw CheckpointError(
                    file: file, message: "row-sparse table \(name) has shape \(entry.shape), the job's is \(shape)")
            }
            let kind = table.optimizerConfig.kind.rawValue
            guard manifest.job["sparse_optimizer"] == kind,
                let step = manifest.job["sparse_optimizer_step"].flatMap(UInt64.init)
            else {
                throw CheckpointError(
                    file: file,
                    message: "the row-sparse tables were written with optimizer "
                        + "\(manifest.job["sparse_optimizer"] ?? "none"), the server runs \(kind)")
            }
            let values = try CheckpointReader.loadEntry(entry, directory: directory, manifestPath: file).values
            let tableSlots = table.optimizerConfig.stateSlotNames.map { slots[name]?[$0] ?? [] }
            do {
                try table.restore(weights: values, step: step, slots: tableSlots)
            } catch {
                throw CheckpointError(file: file, message: "row-sparse table \(name): \(error)")
            }
        }
    }

    /// `psctl export`: the current weights only, as `.npy` files in `path` (no optimizer state).
    /// The row-sparse tables (`sparse`) are written as `rows x width` tensors next to the dense ones.
    static func exportWeights(snapshot: ModelSnapshot, to path: String, sparse: [RowSparseTable.Copy] = []) throws {
        try FileSystem.makeDirectories(path: path)
        let dense = snapshot.tensors.enumerated().map { index, tensor in
            (tensor.name, tensor.shape, snapshot.tensorValues(index, from: snapshot.weights))
        }
        let tables = sparse.map { ($0.spec.name, [$0.spec.rows, $0.spec.width], $0.weights) }
        for (name, shape, values) in dense + tables {
            let bytes = values.withUnsafeBufferPointer { NPY.encode(float32: $0, shape: shape) }
            let file = path + "/" + name + ".npy"
            let temporary = file + ".tmp"
            try Data(bytes).write(to: URL(fileURLWithPath: temporary))
            try FileSystem.fsync(path: temporary)
            try FileSystem.renameReplacing(from: temporary, to: file)
        }
        try FileSystem.fsyncDirectory(path: path)
    }
}

extension ModelSnapshot {
    /// Bytes of float32 data the snapshot holds (weights and optimizer state).
    var byteCount: UInt64 {
        UInt64((weights.count + optimizerSlots.reduce(0) { $0 + $1.count }) * MemoryLayout<Float>.size)
    }
}
