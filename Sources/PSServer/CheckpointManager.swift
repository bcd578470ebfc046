import Foundation
import PSCheckpoint
import PSCoordinator
import PSLog
import PSMath
import PSPosix
import PSWire
import Synchronization

/// Takes checkpoints for the server: the in-memory copy happens under the shard locks (in the caller, which is
/// the only pause training sees); the disk write runs on a background thread, one at a time, in order.
final class CheckpointManager: Sendable {
    let root: String
    let keep: Int?
    let log: Logger
    private let state = Mutex<WriterState>(WriterState())
    private let written = NSCondition()

    struct WriterState {
        var queue: [PendingCheckpoint] = []
        var writing = false
        var lastWritten: String? = nil
        var lastWrittenStep: UInt64? = nil
        var lastError: String? = nil
        var completedWrites = 0
        var requestedWrites = 0
        /// The step of the latest checkpoint queued (`requestedWrites` is its ticket).
        var lastTakenStep: UInt64 = 0
    }

    /// A checkpoint waiting for the writer thread. The per-tensor arrays are cut out of the snapshot there, so
    /// training pauses only for the snapshot's one copy under the shard locks.
    struct PendingCheckpoint: Sendable {
        let manifest: CheckpointManifest
        let snapshot: ModelSnapshot
        let final: Bool
        let ticket: Int
    }

    /// The snapshot's tensors and optimizer state tensors, one array each (on the writer thread).
    private func files(of snapshot: ModelSnapshot) -> (tensors: [CheckpointTensor], states: [CheckpointStateTensor]) {
        var tensors: [CheckpointTensor] = []
        var states: [CheckpointStateTensor] = []
        for (index, tensor) in snapshot.tensors.enumerated() {
            tensors.append(
                CheckpointTensor(
                    name: tensor.name, shape: tensor.shape, values: snapshot.tensorValues(index, from: snapshot.weights)
                ))
            for (slot, flat) in snapshot.optimizerSlots.enumerated() {
                states.append(
                    CheckpointStateTensor(
                        tensor: tensor.name, slot: slotNames[slot], shape: tensor.shape,
                        values: snapshot.tensorValues(index, from: flat)))
            }
        }
        return (tensors, states)
    }

    /// A checkpoint that was taken (and, if `durable`, is on disk).
    struct Written: Sendable {
        let step: UInt64
        let path: String
        let durable: Bool
    }

    /// Names of the optimizer's state slots (`OptimizerConfig.stateSlotNames`), in snapshot order.
    let slotNames: [String]

    init(root: String, keep: Int?, slotNames: [String], log: Logger) {
        self.root = root
        self.slotNames = slotNames
        self.keep = keep
        self.log = log
    }

    var lastWritten: String? { state.withLock { $0.lastWritten } }

    // MARK: Taking

    /// Queues a checkpoint of `snapshot` for writing; returns its ticket and the directory it will have.
    @discardableResult
    func take(snapshot: ModelSnapshot?, coordinator: Coordinator?, waitDurable: Bool, final: Bool = false)
        -> (ticket: Int, step: UInt64, path: String)?
    {
        guard let snapshot else { return nil }
        let step = coordinator?.checkpointStep ?? (snapshot.shardVersions.max() ?? 0)
        let manifest = makeManifest(snapshot: snapshot, step: step, coordinator: coordinator)
        coordinator?.checkpointTaken(step: step)
        let ticket: Int = state.withLock { state in
            state.requestedWrites += 1
            state.lastTakenStep = step
            state.queue.append(
                PendingCheckpoint(manifest: manifest, snapshot: snapshot, final: final, ticket: state.requestedWrites))
            return state.requestedWrites
        }
        startWriterIfIdle()
        if waitDurable { _ = waitFor(ticket: ticket, seconds: 600) }
        let path = final ? root + "/final" : root + "/" + CheckpointWriter.directoryName(step: step)
        return (ticket, step, path)
    }

    /// `psctl checkpoint`: in BSP, asks for one at the next step boundary and waits for it to be taken; otherwise
    /// takes one now under all shard locks.
    func requestCheckpoint(server: ParameterServer, wait: Bool) -> Result<Written, CheckpointError> {
        let taken: (ticket: Int, step: UInt64, path: String)?
        if let coordinator = server.coordinator, server.config.mode == .bsp,
            coordinator.core.withLock({ $0.jobStarted && !$0.jobFinished })
        {
            let before = state.withLock { $0.requestedWrites }
            coordinator.requestCheckpoint()
            let deadline = Date(timeIntervalSinceNow: server.config.waitTimeoutSeconds)
            while state.withLock({ $0.requestedWrites }) == before, Date() < deadline {
                Thread.sleep(forTimeInterval: 0.01)
            }
            let (ticket, step) = state.withLock { ($0.requestedWrites, $0.lastTakenStep) }
            guard ticket > before else {
                return .failure(
                    CheckpointError(file: root, message: "no step boundary was reached within the wait timeout"))
            }
            taken = (ticket, step, root + "/" + CheckpointWriter.directoryName(step: step))
        } else {
            taken = take(snapshot: server.store.snapshot(), coordinator: server.coordinator, waitDurable: false)
        }
        guard let taken else { return .failure(CheckpointError(file: root, message: "nothing is registered yet")) }
        if wait {
            if let error = waitFor(ticket: taken.ticket, seconds: 600) {
                return .failure(CheckpointError(file: taken.path, message: error))
            }
        }
        return .success(Written(step: taken.step, path: taken.path, durable: wait))
    }

    /// Writes the final weights (`<root>/final/*.npy` plus a manifest) and a last full checkpoint, synchronously.
    func writeFinal(snapshot: ModelSnapshot, coordinator: Coordinator) {
        take(snapshot: snapshot, coordinator: coordinator, waitDurable: true)
        take(snapshot: snapshot, coordinator: coordinator, waitDurable: true, final: true)
    }

    // MARK: Writing (background thread)

    private func startWriterIfIdle() {
        let start: Bool = state.withLock { state in
            if state.writing { return false }
            state.writing = true
            return true
        }
        guard start else { return }
        let thread = Thread { [self] in writeLoop() }
        thread.name = "psserver-checkpoint"
        thread.start()
    }

    private func writeLoop() {
        while true {
            let next: PendingCheckpoint? = state.withLock { state in
                if state.queue.isEmpty {
                    state.writing = false
                    return nil
                }
                return state.queue.removeFirst()
            }
            guard let next else { return }
            var error: String? = nil
            var path = ""
            do {
                if next.final {
                    path = try writeFinalDirectory(next)
                } else {
                    let (tensors, states) = files(of: next.snapshot)
                    path = try CheckpointWriter.write(
                        root: root, manifest: next.manifest, tensors: tensors, optimizerStates: states, keepLast: keep)
                }
                log.info("checkpoint-written", ["path": path, "step": next.manifest.step])
            } catch let failure {
                error = "\(failure)"
                log.error("checkpoint-failed", ["step": next.manifest.step, "error": "\(failure)"])
            }
            written.lock()
            state.withLock { state in
                state.completedWrites = next.ticket
                if let error {
                    state.lastError = error
                } else {
                    state.lastWritten = path
                    state.lastWrittenStep = next.manifest.step
                }
            }
            written.broadcast()
            written.unlock()
        }
    }

    /// The final weights: a plain directory of `.npy` files (one per tensor) and the manifest, replaced atomically.
    private func writeFinalDirectory(_ pending: PendingCheckpoint) throws -> String {
        let finalRoot = root + "/final-tmp-\(Host.processID())"
        try? FileManager.default.removeItem(atPath: finalRoot)
        let written = try CheckpointWriter.write(
            root: finalRoot, manifest: pending.manifest, tensors: files(of: pending.snapshot).tensors,
            optimizerStates: [], keepLast: 1)
        let target = root + "/final"
        try? FileManager.default.removeItem(atPath: target)
        try FileManager.default.moveItem(atPath: written, toPath: target)
        try? FileManager.default.removeItem(atPath: finalRoot)
        return target
    }

    /// Waits until the write with `ticket` finished; returns its error text, if any.
    func waitFor(ticket: Int, seconds: Double) -> String? {
        let deadline = Date(timeIntervalSinceNow: seconds)
        written.lock()
        defer { written.unlock() }
        while state.withLock({ $0.completedWrites }) < ticket {
            if !written.wait(until: deadline) { return "the checkpoint was not written within \(Int(seconds)) s" }
        }
        return state.withLock { $0.lastError }
    }

    /// Waits for every queued write (used when the server stops).
    func waitForWrites() {
        let ticket = state.withLock { $0.requestedWrites }
        _ = waitFor(ticket: ticket, seconds: 600)
    }

    // MARK: Manifest and restore

    private func makeManifest(snapshot: ModelSnapshot, step: UInt64, coordinator: Coordinator?) -> CheckpointManifest {
        var job: [String: String] = [:]
        var clocks: [String: UInt64] = [:]
        var ranks: [String: Int] = [:]
        var dataOrder: DataOrderEntry? = nil
        var mode = "store"
        var optimizer = OptimizerEntry(name: "sgd")
        if let coordinator {
            mode = coordinator.config.mode.rawValue
            let description = coordinator.job
            job = [
                "model": description.model, "data": description.data, "batch": "\(description.batchPerWorker)",
                "epochs": "\(description.epochs)", "seed": "\(description.seed)", "workers": "\(description.workers)",
                "mode": description.mode, "stepsPerEpoch": "\(description.stepsPerEpoch)",
                "totalSteps": "\(description.totalSteps)",
            ]
            (clocks, ranks) = coordinator.workerClocks()
            if description.stepsPerEpoch > 0 {
                dataOrder = DataOrderEntry(
                    epoch: step / UInt64(description.stepsPerEpoch),
                    stepInEpoch: step % UInt64(description.stepsPerEpoch), seed: description.seed,
                    globalBatch: description.batchPerWorker * description.workers)
            }
            let config = coordinator.config.optimizer
            optimizer = OptimizerEntry(
                name: config.kind.rawValue, hyperParameters: config.hyperParameters, step: snapshot.optimizerStep)
        }
        return CheckpointManifest(
            step: step, mode: mode, job: job, workerClocks: clocks, workerRanks: ranks,
            shardCount: snapshot.layout.shardCount, shardVersions: snapshot.shardVersions, optimizer: optimizer,
            dataOrder: dataOrder)
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
        let loaded = try CheckpointReader.load(directory: directory)
        let manifest = loaded.manifest
        var tensors: [TensorSpec] = []
        var values: [String: [Float]] = [:]
        for entry in manifest.tensors {
            guard let array = loaded.tensors[entry.name] else {
                throw CheckpointError(file: directory + "/" + entry.file, message: "tensor \(entry.name) is missing")
            }
            tensors.append(TensorSpec(name: entry.name, shape: entry.shape, initializer: .zeros))
            values[entry.name] = array.values
        }
        if !expectedTensors.isEmpty {
            let expected = expectedTensors.map { "\($0.name)\($0.shape)" }
            let found = tensors.map { "\($0.name)\($0.shape)" }
            guard expected == found else {
                throw CheckpointError(
                    file: directory + "/manifest.json",
                    message: "the checkpoint holds tensors \(found) but the job's model has \(expected)")
            }
        }
        guard manifest.optimizer.name == store.optimizer.kind.rawValue else {
            throw CheckpointError(
                file: directory + "/manifest.json",
                message:
                    "the checkpoint was written with optimizer \(manifest.optimizer.name), the server runs "
                    + "\(store.optimizer.kind.rawValue)")
        }
        var slots: [String: [String: [Float]]] = [:]
        for entry in manifest.optimizer.states {
            guard let slot = entry.slot, let array = loaded.optimizerStates[entry.key] else { continue }
            slots[entry.name, default: [:]][slot] = array.values
        }
        let version = manifest.shardVersions.max() ?? manifest.step
        try store.install(
            tensors: tensors, values: values, optimizerStep: manifest.optimizer.step, optimizerSlots: slots,
            version: version)
        return Restored(
            path: directory, step: manifest.step, workerClocks: manifest.workerClocks,
            workerRanks: manifest.workerRanks)
    }

    /// `psctl export`: the current weights only, as `.npy` files in `path` (no optimizer state); returns the
    /// largest shard version.
    static func exportWeights(snapshot: ModelSnapshot, to path: String) throws -> UInt64 {
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        for (index, tensor) in snapshot.tensors.enumerated() {
            let values = snapshot.tensorValues(index, from: snapshot.weights)
            let bytes = values.withUnsafeBufferPointer { NPY.encode(float32: $0, shape: tensor.shape) }
            let file = path + "/" + tensor.name + ".npy"
            let temporary = file + ".tmp"
            try Data(bytes).write(to: URL(fileURLWithPath: temporary))
            try FileSystem.fsync(path: temporary)
            try FileSystem.renameReplacing(from: temporary, to: file)
        }
        try FileSystem.fsyncDirectory(path: path)
        return snapshot.shardVersions.max() ?? 0
    }
}
