extension WireProtocol {
    /// The most shards a server may split a model into, and so the most a welcome may announce.
    public static let maxShardCount = 1024

    /// The most floats one shard may hold so that its push (24-byte prefix) and its pull reply (16-byte prefix)
    /// each fit a payload of `maxPayloadBytes`.
    public static func maxShardElements(maxPayloadBytes: Int) -> Int {
        max(0, (maxPayloadBytes - PushPrefix.size) / 4)
    }

    /// The element count of the largest shard when `totalElements` are laid out over `shardCount` shards
    /// (`ShardLayout`: shard s owns [s*N/S, (s+1)*N/S), so the largest holds ceil(N/S)).
    public static func largestShardElements(totalElements: Int, shardCount: Int) -> Int {
        guard shardCount >= 1, totalElements > 0 else { return max(0, totalElements) }
        return totalElements / shardCount + (totalElements % shardCount == 0 ? 0 : 1)
    }
}

/// A welcome config that no worker can run: a count that is zero, out of range or inconsistent with the others.
///
/// The description is one line naming the field by its JSON key (proto-docs/protocol.md, "welcome config").
public struct WelcomeError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The JSON key at fault, `job.` prefixed for the job's fields: `shardCount`, `job.workers`, `rank`.
    public let field: String
    /// What is wrong with it.
    public let message: String

    /// Creates an error about `field`.
    public init(field: String, message: String) {
        self.field = field
        self.message = message
    }

    public var description: String { "invalid welcome from the server: \(field) \(message)" }
}

extension WelcomeConfig {
    /// Checks every count a worker will size buffers, loop bounds and divisions by, before any of them is used.
    ///
    /// `rank` is the welcome's rank (nil when the server assigned none). With a job, the rank must be in
    /// `0..<job.workers`, the step counts must agree with the job's shape (`stepsPerEpoch` = `trainRows / (workers *
    /// batchPerWorker)`, `totalSteps` = `stepsPerEpoch * epochs`) and `startStep` must not lie past the end. The
    /// server computes all of them from validated flags, so a failure means a broken or hostile peer.
    public func validate(rank: Int?) throws(WelcomeError) {
        try validateJobAndLayout()
        guard let job else { return }
        guard let rank, rank >= 0, rank < job.workers else {
            throw WelcomeError(
                field: "rank",
                message: "is \(rank.map(String.init) ?? "none"), expected 0..<\(job.workers) (job.workers)")
        }
        guard startStep <= UInt64(job.totalSteps) else {
            throw WelcomeError(field: "startStep", message: "is \(startStep), past job.totalSteps \(job.totalSteps)")
        }
    }

    /// Checks what every connection's welcome shares, whatever its role: the shard count, the tensors and the job
    /// (not the rank or the start step, which only a worker's welcome carries).
    public func validateJobAndLayout() throws(WelcomeError) {
        func fail(_ field: String, _ message: String) -> WelcomeError { WelcomeError(field: field, message: message) }
        guard shardCount >= 1, shardCount <= WireProtocol.maxShardCount else {
            throw fail("shardCount", "is \(shardCount), expected 1...\(WireProtocol.maxShardCount)")
        }
        guard heartbeatIntervalMillis >= 0 else {
            throw fail("heartbeatIntervalMillis", "is \(heartbeatIntervalMillis), expected a non-negative number")
        }
        var registered = 0
        for tensor in tensors {
            guard tensor.shape.count <= WireProtocol.maxTensorRank else {
                throw fail("tensors", "'\(tensor.name)' has \(tensor.shape.count) dimensions, at most 8 are allowed")
            }
            var count = 1
            for dimension in tensor.shape {
                let (product, overflow) = count.multipliedReportingOverflow(by: dimension)
                guard dimension >= 0, !overflow, product <= WireProtocol.maxTensorElements else {
                    throw fail("tensors", "'\(tensor.name)' has an invalid shape \(tensor.shape)")
                }
                count = product
            }
            registered += count
            guard registered <= WireProtocol.maxTensorElements else {
                throw fail("tensors", "hold more than \(WireProtocol.maxTensorElements) elements")
            }
        }
        let largest = WireProtocol.largestShardElements(totalElements: registered, shardCount: shardCount)
        let limit = WireProtocol.maxShardElements(maxPayloadBytes: WireProtocol.defaultMaxPayloadBytes)
        guard largest <= limit else {
            throw fail(
                "tensors",
                "put \(largest) floats in one of \(shardCount) shards, more than one frame carries (\(limit))")
        }
        try job?.validate()
    }
}

extension JobDescription {
    /// The most workers a job may have: ranks travel as `Int32`.
    public static let maxWorkers = Int(Int32.max)
    /// The most epochs a job may have: epoch numbers travel as `UInt32`.
    public static let maxEpochs = Int(UInt32.max)
    /// The most rows `hashFeatures` may name: 2^31 (PSData's `FeatureHashing.maximumRows`).
    public static let maxHashFeatures = 1 << 31

    /// Checks the job's counts on their own and against each other; the error names the field (`job.<key>`).
    ///
    /// Every product a worker forms (the global batch, the total steps, the samples seen) is checked for overflow.
    public func validate() throws(WelcomeError) {
        func fail(_ field: String, _ message: String) -> WelcomeError {
            WelcomeError(field: "job.\(field)", message: message)
        }
        guard workers >= 1, workers <= Self.maxWorkers else {
            throw fail("workers", "is \(workers), expected 1...\(Self.maxWorkers)")
        }
        guard batchPerWorker >= 1 else { throw fail("batchPerWorker", "is \(batchPerWorker), expected at least 1") }
        guard epochs >= 1, epochs <= Self.maxEpochs else {
            throw fail("epochs", "is \(epochs), expected 1...\(Self.maxEpochs)")
        }
        guard trainRows >= 1 else { throw fail("trainRows", "is \(trainRows), expected at least 1") }
        guard featureCount >= 1 else { throw fail("featureCount", "is \(featureCount), expected at least 1") }
        guard classCount >= 0 else { throw fail("classCount", "is \(classCount), expected at least 0") }
        let (globalBatch, batchOverflow) = workers.multipliedReportingOverflow(by: batchPerWorker)
        guard !batchOverflow, globalBatch <= trainRows else {
            throw fail(
                "batchPerWorker",
                "\(batchPerWorker) times job.workers \(workers) is more than job.trainRows \(trainRows)")
        }
        guard stepsPerEpoch == trainRows / globalBatch else {
            throw fail(
                "stepsPerEpoch",
                "is \(stepsPerEpoch), but \(trainRows) rows in global batches of \(globalBatch) make "
                    + "\(trainRows / globalBatch)")
        }
        let (steps, stepsOverflow) = stepsPerEpoch.multipliedReportingOverflow(by: epochs)
        guard !stepsOverflow, totalSteps == steps else {
            throw fail("totalSteps", "is \(totalSteps), expected job.stepsPerEpoch x job.epochs")
        }
        // The samples a worker reports: at most totalSteps x globalBatch.
        guard !steps.multipliedReportingOverflow(by: globalBatch).overflow else {
            throw fail("epochs", "\(epochs) over \(trainRows) rows is more samples than a 64-bit counter holds")
        }
        guard let setting = compressionSetting else {
            throw fail("compression", "is \(compression ?? ""), expected none, fp16, bf16 or topk:FRACTION")
        }
        guard compressPulls != true || setting == .fp16 || setting == .bf16 else {
            throw fail("compressPulls", "is true, but job.compression \(setting) is not fp16 or bf16")
        }
        if let hashFeatures {
            guard hashFeatures >= 1, hashFeatures <= Self.maxHashFeatures, hashFeatures == featureCount else {
                throw fail(
                    "hashFeatures",
                    "is \(hashFeatures), expected 1...\(Self.maxHashFeatures) and job.featureCount \(featureCount)")
            }
        }
    }

    /// The job's gradient compression: `.none` when the key is absent, nil when it does not parse.
    public var compressionSetting: CompressionSetting? {
        guard let compression else { return CompressionSetting.none }
        return CompressionSetting(parsing: compression)
    }
}
