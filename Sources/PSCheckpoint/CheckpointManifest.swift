import Foundation

/// `manifest.json`: what a checkpoint holds and how to check it (see DESIGN.md "Checkpoints").
///
/// Every data file is listed with its shape, dtype and CRC-32C, so a reader can refuse a damaged checkpoint
/// naming the file. Tensors are stored whole (not per shard), so a checkpoint restores into any shard count.
public struct CheckpointManifest: Codable, Sendable, Equatable {
    /// The format this code writes and reads.
    public static let currentFormatVersion = 1
    /// The name of the manifest file inside a checkpoint directory.
    public static let fileName = "manifest.json"

    /// The manifest format (1).
    public var formatVersion: Int
    /// Completed steps (the clock) when the checkpoint was taken.
    public var step: UInt64
    /// When it was taken, ISO 8601 in UTC.
    public var createdAt: String
    /// The consistency mode: "bsp", "ssp" or "async".
    public var mode: String
    /// The job configuration, free-form (model, data, batch, seed, …).
    public var job: [String: String]
    /// Each worker's clock by name.
    public var workerClocks: [String: UInt64]
    /// Each worker's rank by name.
    public var workerRanks: [String: Int]
    /// The number of shards of the server that wrote it (informational: tensors are stored whole).
    public var shardCount: Int
    /// Each shard's version (updates applied).
    public var shardVersions: [UInt64]
    /// The parameter tensors in registration order.
    public var tensors: [TensorEntry]
    /// The optimizer and its state tensors.
    public var optimizer: OptimizerEntry
    /// Where the global data order stood, if the job has one.
    public var dataOrder: DataOrderEntry?

    /// Creates a manifest; `tensors` and `optimizer.states` are usually left empty for `CheckpointWriter` to fill.
    public init(
        formatVersion: Int = CheckpointManifest.currentFormatVersion, step: UInt64, createdAt: String = "",
        mode: String, job: [String: String] = [:], workerClocks: [String: UInt64] = [:],
        workerRanks: [String: Int] = [:], shardCount: Int, shardVersions: [UInt64], tensors: [TensorEntry] = [],
        optimizer: OptimizerEntry, dataOrder: DataOrderEntry? = nil
    ) {
        self.formatVersion = formatVersion
        self.step = step
        self.createdAt = createdAt
        self.mode = mode
        self.job = job
        self.workerClocks = workerClocks
        self.workerRanks = workerRanks
        self.shardCount = shardCount
        self.shardVersions = shardVersions
        self.tensors = tensors
        self.optimizer = optimizer
        self.dataOrder = dataOrder
    }

    /// The manifest as pretty-printed JSON with sorted keys.
    public func encoded() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try encoder.encode(self)
    }

    /// Parses a manifest; errors name `file` and say what is wrong.
    public static func decode(_ data: Data, file: String) throws(CheckpointError) -> CheckpointManifest {
        let manifest: CheckpointManifest
        do {
            manifest = try JSONDecoder().decode(CheckpointManifest.self, from: data)
        } catch let error as DecodingError {
            throw CheckpointError(file: file, message: "not a valid checkpoint manifest: \(describe(error))")
        } catch {
            throw CheckpointError(file: file, message: "not a valid checkpoint manifest: \(error)")
        }
        guard manifest.formatVersion == currentFormatVersion else {
            throw CheckpointError(
                file: file,
                message:
                    "unsupported formatVersion \(manifest.formatVersion) (this build reads \(currentFormatVersion))")
        }
        try manifest.checkCounters(file: file)
        return manifest
    }

    /// The largest step, clock or version counter a manifest may hold: 2^62, far past any run, and leaving room
    /// to count on from a restored value without passing `Int.max`.
    public static let maxCounter: UInt64 = 1 << 62

    /// Refuses step, clock and version counters above `maxCounter`: the server prints them (and what it counts on
    /// from them) as JSON integers (`Int`) in status and metrics, where a value past `Int.max` would trap.
    private func checkCounters(file: String) throws(CheckpointError) {
        let limit = Self.maxCounter
        func check(_ value: UInt64, _ field: String) throws(CheckpointError) {
            guard value <= limit else {
                throw CheckpointError(file: file, message: "field \(field) is \(value), more than any run counts to")
            }
        }
        try check(step, "step")
        for (name, clock) in workerClocks.sorted(by: { $0.key < $1.key }) {
            try check(clock, "workerClocks.\(name)")
        }
        for (index, version) in shardVersions.enumerated() {
            try check(version, "shardVersions[\(index)]")
        }
        try check(optimizer.step, "optimizer.step")
    }

    private static func describe(_ error: DecodingError) -> String {
        func path(_ codingPath: [any CodingKey]) -> String {
            codingPath.isEmpty
                ? "the top level"
                : codingPath.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }
                    .joined(separator: ".")
        }
        switch error {
        case .keyNotFound(let key, let context):
            return "missing field '\(key.stringValue)' in \(path(context.codingPath))"
        case .typeMismatch(let type, let context):
            return "field \(path(context.codingPath)) is not a \(type)"
        case .valueNotFound(let type, let context):
            return "field \(path(context.codingPath)) is null, expected a \(type)"
        case .dataCorrupted(let context):
            return context.codingPath.isEmpty
                ? "not valid JSON" : "field \(path(context.codingPath)): \(context.debugDescription)"
        @unknown default:
            return "\(error)"
        }
    }
}

/// One `.npy` data file of a checkpoint: a parameter tensor or an optimizer state tensor.
public struct TensorEntry: Codable, Sendable, Equatable {
    /// The parameter tensor's name, e.g. `fc1.weight` (for a state tensor: the tensor it belongs to).
    public var name: String
    /// The optimizer slot (`adam_m`, `momentum`, …) for a state tensor; nil for a parameter tensor.
    public var slot: String?
    /// The shape, outermost dimension first.
    public var shape: [Int]
    /// The element type; always "float32".
    public var dtype: String
    /// The file name inside the checkpoint directory: `fc1.weight.npy`, `fc1.weight.adam_m.npy`.
    public var file: String
    /// The CRC-32C of the whole file.
    public var crc32c: UInt32
    /// The tensor's offset in the flat parameter vector (registration order).
    public var flatOffset: Int

    /// Creates an entry.
    public init(
        name: String, slot: String? = nil, shape: [Int], dtype: String = "float32", file: String, crc32c: UInt32,
        flatOffset: Int
    ) {
        self.name = name
        self.slot = slot
        self.shape = shape
        self.dtype = dtype
        self.file = file
        self.crc32c = crc32c
        self.flatOffset = flatOffset
    }

    /// The key of a state tensor in `LoadedCheckpoint.optimizerStates` (`fc1.weight.adam_m`), or the name.
    public var key: String {
        slot.map { "\(name).\($0)" } ?? name
    }
}

/// The optimizer of a checkpoint: its name, hyper-parameters, step count and state tensors.
public struct OptimizerEntry: Codable, Sendable, Equatable {
    /// "sgd", "momentum", "adam" or "adagrad".
    public var name: String
    /// Learning rate, betas, epsilon, … by name.
    public var hyperParameters: [String: Double]
    /// The optimizer's step count (Adam's t).
    public var step: UInt64
    /// One entry per (tensor, slot).
    public var states: [TensorEntry]

    /// Creates an entry; `states` is usually left empty for `CheckpointWriter` to fill.
    public init(name: String, hyperParameters: [String: Double] = [:], step: UInt64 = 0, states: [TensorEntry] = []) {
        self.name = name
        self.hyperParameters = hyperParameters
        self.step = step
        self.states = states
    }
}

/// Where the global data order stood at the checkpoint.
public struct DataOrderEntry: Codable, Sendable, Equatable {
    /// The epoch of the next step.
    public var epoch: UInt64
    /// The next step's index within its epoch.
    public var stepInEpoch: UInt64
    /// The shuffle seed.
    public var seed: UInt64
    /// Rows per global step (workers × batch).
    public var globalBatch: Int

    /// Creates an entry.
    public init(epoch: UInt64, stepInEpoch: UInt64, seed: UInt64, globalBatch: Int) {
        self.epoch = epoch
        self.stepInEpoch = stepInEpoch
        self.seed = seed
        self.globalBatch = globalBatch
    }
}
