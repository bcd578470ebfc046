import PSData
import PSMath
import PSModel
import PSWire

/// What the server's job flags ask for, before the data set is looked at.
///
/// ```swift
/// var request = JobRequest()
/// request.model = "cnn:32,64,128"
/// request.data = "fashion-mnist"
/// request.workers = 2
/// let (job, tensors) = try JobPlanner.plan(request)   // job.stepsPerEpoch == 468
/// ```
public struct JobRequest: Sendable {
    public var model = "softmax"
    public var data = "digits"
    public var test: String? = nil
    public var labelColumn: LabelColumn = .first
    public var batchPerWorker = 64
    public var epochs = 10
    public var seed: UInt64 = 0
    public var mode = "bsp"
    public var staleness: UInt64 = 0
    public var workers = 1
    /// Row-sparse models: the feature count (the table's rows) of a LIBSVM file, instead of its largest index.
    public var features: Int? = nil
    /// Row-sparse models: hash every feature id into this many table rows (`--hash-features`, see `FeatureHashing`).
    public var hashFeatures: Int? = nil
    /// Gradient compression for the job's exchanges (`--compression`).
    public var compression: CompressionSetting = .none
    /// Whether exchange replies carry fp16/bf16 weights too (`--compress-pulls`; needs fp16 or bf16).
    public var compressPulls = false

    public init() {}
}

/// Turns job flags into the job description workers receive and the tensors the server registers.
///
/// ```swift
/// var request = JobRequest()
/// request.model = JobPlanner.externalModel   // the first worker registers its model's tensors
/// let planned = try JobPlanner.plan(request)
/// config.job = planned.job                   // config: a PSServer.ServerConfig
/// config.jobTensors = planned.tensors        // empty for external
/// ```
public enum JobPlanner {
    /// The `--model` value of a job whose model the server does not know: the first worker registers its
    /// tensors, and a later worker whose tensors differ is refused.
    public static let externalModel = "external"

    /// Loads the training data's shape (the coordinator refuses workers whose data differs), builds the model's
    /// parameter list with its initialisers (none for `external`), and computes the step counts.
    public static func plan(_ request: JobRequest) throws -> (job: JobDescription, tensors: [TensorSpec]) {
        guard request.workers >= 1, request.workers <= JobDescription.maxWorkers else {
            throw PlanError("--workers must be between 1 and \(JobDescription.maxWorkers), got \(request.workers)")
        }
        guard request.batchPerWorker >= 1 else { throw PlanError("--batch must be at least 1") }
        guard request.epochs >= 1, request.epochs <= JobDescription.maxEpochs else {
            throw PlanError("--epochs must be between 1 and \(JobDescription.maxEpochs), got \(request.epochs)")
        }
        if SparseModels.isSparse(request.model) {
            guard request.compression == .none, !request.compressPulls else {
                throw PlanError(
                    "--compression is for dense models' exchanges; \(request.model) moves only the rows a batch "
                        + "touches, uncompressed")
            }
            return try planSparse(request)
        }
        if request.features != nil {
            throw PlanError("--features is for the row-sparse models (a dense model reads libsvm:PATH,FEATURES)")
        }
        if request.hashFeatures != nil {
            throw PlanError("--hash-features is for the row-sparse models (--model sparse-lr or sparse-mlp:E,H)")
        }
        // `external`: the job's first worker registers its own model's tensors (see `Worker`).
        let kind: ModelKind?
        if request.model == JobPlanner.externalModel {
            kind = nil
        } else {
            do {
                kind = try ModelKind(parsing: request.model)
            } catch {
                throw PlanError("--model: \(error) (or external, for a model its workers register)")
            }
        }
        let source: DataSource
        do {
            source = try DataSource(parsing: request.data, labelColumn: request.labelColumn)
        } catch {
            // A spelling the parser refuses is a usage error; a file that cannot be loaded stays exit 1.
            throw PlanError("--data: \(error)")
        }
        let train = try source.loadTrain()
        var classes = train.classCount
        if let kind, kind != .linear {
            // A label that is not a class index names its file and line, with the likely fix.
            try source.requireClassLabels(train)
            guard classes >= 2 else {
                throw PlanError(
                    "--model \(request.model) needs at least two classes, but every label of \(source) is 0; "
                        + "use --model linear for regression")
            }
        } else if kind == .linear {
            classes = 0
        }
        if let testPath = request.test {
            // The server checks --test as it checks --data (workers load both themselves): a missing file, another
            // width or a label that is not one of the job's classes is refused now, not found as accuracy 0.04.
            let testSource: DataSource
            do {
                testSource = try DataSource(parsing: testPath, labelColumn: request.labelColumn)
            } catch {
                throw PlanError("--test: \(error)")
            }
            let test = try testSource.loadTrain()
            guard test.featureCount == train.featureCount else {
                throw DataError(
                    file: test.name,
                    message: "(--test) has \(test.featureCount) features per row, the training data \(source) has "
                        + "\(train.featureCount)")
            }
            if kind != nil, classes > 0 { try testSource.requireClassLabels(test, classCount: classes) }
        }
        let (globalBatch, batchOverflow) = request.workers.multipliedReportingOverflow(by: request.batchPerWorker)
        guard !batchOverflow, globalBatch <= train.rowCount else {
            throw PlanError(
                "--batch \(request.batchPerWorker) x --workers \(request.workers) (the global batch) is larger than "
                    + "the \(train.rowCount) training rows")
        }
        let stepsPerEpoch = train.rowCount / globalBatch
        var tensors: [TensorSpec] = []
        if let kind {
            let context = ModelContext(
                model: request.model, featureCount: train.featureCount, classCount: classes,
                batchPerWorker: request.batchPerWorker, seed: request.seed)
            let spec: ModelSpec
            do {
                spec = try kind.spec(context: context)
            } catch {
                throw PlanError("--model \(request.model): \(error)")
            }
            tensors = spec.parameters.map { parameter in
                TensorSpec(name: parameter.name, shape: parameter.shape, initializer: InitSpec(parameter.initializer))
            }
        }
        var job = JobDescription(
            model: request.model, data: request.data, test: request.test, labelColumn: request.labelColumn.rawValue,
            batchPerWorker: request.batchPerWorker, epochs: request.epochs, seed: request.seed, mode: request.mode,
            staleness: request.staleness, workers: request.workers, trainRows: train.rowCount,
            featureCount: train.featureCount, classCount: classes, stepsPerEpoch: stepsPerEpoch,
            totalSteps: stepsPerEpoch.multipliedReportingOverflow(by: request.epochs).partialValue)
        job.compression = request.compression == .none ? nil : request.compression.description
        if request.compressPulls {
            guard request.compression == .fp16 || request.compression == .bf16 else {
                throw PlanError(
                    "--compress-pulls needs --compression fp16 or bf16 (weights travel as half floats), "
                        + "not \(request.compression)")
            }
            job.compressPulls = true
        }
        do {
            // What every worker checks on the welcome: the step and sample counts fit their integers.
            try job.validate()
        } catch {
            throw PlanError("--epochs \(request.epochs) over \(train.rowCount) rows overflows the step or sample count")
        }
        return (job, tensors)
    }
}

/// A job configuration that cannot run; the message names the flag.
///
/// ```swift
/// do {
///     _ = try JobPlanner.plan(request)
/// } catch let error as PlanError {
///     print("Error: \(error)")   // e.g. "--workers must be at least 1, got 0"
/// }
/// ```
public struct PlanError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

extension InitSpec {
    /// The wire-side init spec of a math-side initializer.
    public init(_ initializer: Initializer) {
        switch initializer {
        case .zeros: self = .zeros
        case .constant(let value): self = .constant(Double(value))
        case .uniform(let low, let high, let seed): self = .uniform(low: Double(low), high: Double(high), seed: seed)
        case .normal(let mean, let std, let seed): self = .normal(mean: Double(mean), std: Double(std), seed: seed)
        case .glorotUniform(let seed): self = .glorotUniform(seed: seed)
        }
    }
}
