/// The training job as the coordinator hands it to every worker in the `welcome` frame's config JSON.
///
/// The server owns the job's configuration; a worker names only the server and learns everything else here.
/// Field names are the JSON keys (see proto-docs/protocol.md, "welcome config").
public struct JobDescription: Codable, Sendable, Equatable {
    /// Model spelling as on the command line: `softmax`, `linear`, `mlp:128`, `mlp:256,128`.
    public var model: String
    /// Data set spelling as on the command line: `digits`, `fashion-mnist`, `synthetic:R,F,C`, a path.
    public var data: String
    /// Optional test set path (nil: the data set's own test split).
    public var test: String?
    /// `first` or `last`: where CSV files keep the label.
    public var labelColumn: String
    /// Rows per worker per step (b); the global batch is workers * batch.
    public var batchPerWorker: Int
    public var epochs: Int
    public var seed: UInt64
    /// `bsp`, `ssp` or `async`.
    public var mode: String
    public var staleness: UInt64
    /// K: how many workers the job waits for before step 0.
    public var workers: Int
    /// Shape of the training data the job was configured with; a worker whose data differs is refused.
    public var trainRows: Int
    public var featureCount: Int
    public var classCount: Int
    public var stepsPerEpoch: Int
    public var totalSteps: Int
    /// How workers compress their exchange gradients: `fp16`, `bf16` or `topk:FRACTION`; nil (the key absent, so
    /// an uncompressed job's welcome is unchanged) means none. See `CompressionSetting`.
    public var compression: String? = nil
    /// Whether exchange replies carry the weights in the compression's fp16 or bf16 too (`--compress-pulls`); nil
    /// (absent) means no.
    public var compressPulls: Bool? = nil
    /// Row-sparse jobs: the number of rows every feature id is hashed into (`psserver --hash-features D`, see
    /// `FeatureHashing` in PSData), then also `featureCount`; nil (the key absent, so an unhashed job's welcome is
    /// unchanged) means feature ids are table rows.
    public var hashFeatures: Int? = nil

    public init(
        model: String, data: String, test: String?, labelColumn: String, batchPerWorker: Int, epochs: Int,
        seed: UInt64, mode: String, staleness: UInt64, workers: Int, trainRows: Int, featureCount: Int,
        classCount: Int, stepsPerEpoch: Int, totalSteps: Int
    ) {
        self.model = model
        self.data = data
        self.test = test
        self.labelColumn = labelColumn
        self.batchPerWorker = batchPerWorker
        self.epochs = epochs
        self.seed = seed
        self.mode = mode
        self.staleness = staleness
        self.workers = workers
        self.trainRows = trainRows
        self.featureCount = featureCount
        self.classCount = classCount
        self.stepsPerEpoch = stepsPerEpoch
        self.totalSteps = totalSteps
    }
}

/// The JSON document carried by `welcome.config`.
public struct WelcomeConfig: Codable, Sendable, Equatable {
    /// The job, or nil when the server is a plain parameter store (clients register their own tensors).
    public var job: JobDescription?
    /// The step this worker starts at (0, or the current step after a rejoin or a restore).
    public var startStep: UInt64
    /// Number of shards and, for each, the address of the server that owns it.
    public var shardCount: Int
    public var shardMap: [String]
    /// Tensors already registered (name and shape), in layout order; empty in a store before registration.
    public var tensors: [TensorShape]
    /// How often the worker should send heartbeats, in milliseconds.
    public var heartbeatIntervalMillis: Int
    /// Whether the server rejects NaN/Inf gradients.
    public var rejectsNonFinite: Bool

    public init(
        job: JobDescription?, startStep: UInt64, shardCount: Int, shardMap: [String], tensors: [TensorShape],
        heartbeatIntervalMillis: Int, rejectsNonFinite: Bool
    ) {
        self.job = job
        self.startStep = startStep
        self.shardCount = shardCount
        self.shardMap = shardMap
        self.tensors = tensors
        self.heartbeatIntervalMillis = heartbeatIntervalMillis
        self.rejectsNonFinite = rejectsNonFinite
    }
}

/// A tensor's name and shape, as listed in the welcome config and in status.
public struct TensorShape: Codable, Sendable, Equatable {
    public var name: String
    public var shape: [Int]

    public init(name: String, shape: [Int]) {
        self.name = name
        self.shape = shape
    }

    /// Number of elements (the product of the shape; 1 for a scalar).
    public var elementCount: Int { shape.reduce(1, *) }
}

extension TensorShape {
    /// The first difference between two tensor lists as a sentence naming the tensor, or nil when they are equal.
    ///
    /// `expected` is what the job holds (the server's model), `actual` what a worker brings. Names, shapes and order
    /// are compared, since the order fixes the flat layout.
    ///
    /// ```swift
    /// TensorShape.firstDifference(expected: [TensorShape(name: "w", shape: [4, 2])],
    ///                             actual: [TensorShape(name: "w", shape: [4, 3])])
    /// // "tensor 'w' has shape [4, 3], but the job's model has [4, 2]"
    /// ```
    public static func firstDifference(expected: [TensorShape], actual: [TensorShape]) -> String? {
        for (index, tensor) in actual.enumerated() {
            guard let known = expected.first(where: { $0.name == tensor.name }) else {
                return "tensor '\(tensor.name)' is not in the job's model (which has \(expected.map(\.name)))"
            }
            guard known.shape == tensor.shape else {
                return "tensor '\(tensor.name)' has shape \(tensor.shape), but the job's model has \(known.shape)"
            }
            if index >= expected.count || expected[index].name != tensor.name {
                return "tensor '\(tensor.name)' is at position \(index), but the job's model has the order "
                    + "\(expected.map(\.name))"
            }
        }
        if let missing = expected.first(where: { known in !actual.contains { $0.name == known.name } }) {
            return "tensor '\(missing.name)' of the job's model (shape \(missing.shape)) is missing"
        }
        return nil
    }
}
