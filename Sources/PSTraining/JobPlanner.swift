import PSData
import PSMath
import PSModel
import PSWire

/// What the server's job flags ask for, before the data set is looked at.
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

    public init() {}
}

/// Turns job flags into the job description workers receive and the tensors the server registers.
public enum JobPlanner {
    /// Loads the training data's shape (the coordinator refuses workers whose data differs), builds the model's
    /// parameter list with its initialisers, and computes the step counts.
    public static func plan(_ request: JobRequest) throws -> (job: JobDescription, tensors: [TensorSpec]) {
        guard request.workers >= 1, request.workers <= JobDescription.maxWorkers else {
            throw PlanError("--workers must be between 1 and \(JobDescription.maxWorkers), got \(request.workers)")
        }
        guard request.batchPerWorker >= 1 else { throw PlanError("--batch must be at least 1") }
        guard request.epochs >= 1, request.epochs <= JobDescription.maxEpochs else {
            throw PlanError("--epochs must be between 1 and \(JobDescription.maxEpochs), got \(request.epochs)")
        }
        let kind: ModelKind
        do {
            kind = try ModelKind(parsing: request.model)
        } catch {
            throw PlanError("--model: \(error)")
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
        if kind != .linear {
            guard classes >= 2 else {
                throw PlanError(
                    "--model \(request.model) needs class labels, but \(source) has no integer class labels; "
                        + "use --model linear for regression")
            }
            try train.requireClassification(classCount: classes)
        } else {
            classes = 0
        }
        let (globalBatch, batchOverflow) = request.workers.multipliedReportingOverflow(by: request.batchPerWorker)
        guard !batchOverflow, globalBatch <= train.rowCount else {
            throw PlanError(
                "--batch \(request.batchPerWorker) x --workers \(request.workers) (the global batch) is larger than "
                    + "the \(train.rowCount) training rows")
        }
        let stepsPerEpoch = train.rowCount / globalBatch
        let spec = ModelSpec(
            kind: kind, inputCount: train.featureCount, outputCount: kind == .linear ? 1 : classes, seed: request.seed)
        do {
            try spec.validate()
        } catch {
            throw PlanError("--model \(request.model): \(error)")
        }
        let tensors = spec.parameters.map { parameter in
            TensorSpec(name: parameter.name, shape: parameter.shape, initializer: InitSpec(parameter.initializer))
        }
        let job = JobDescription(
            model: request.model, data: request.data, test: request.test, labelColumn: request.labelColumn.rawValue,
            batchPerWorker: request.batchPerWorker, epochs: request.epochs, seed: request.seed, mode: request.mode,
            staleness: request.staleness, workers: request.workers, trainRows: train.rowCount,
            featureCount: train.featureCount, classCount: classes, stepsPerEpoch: stepsPerEpoch,
            totalSteps: stepsPerEpoch.multipliedReportingOverflow(by: request.epochs).partialValue)
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
