import PSData
import PSModel
import PSWire

/// The built-in row-sparse models (`--model sparse-lr`, `--model sparse-mlp:E,H`) and how a job declares them.
///
/// A sparse job's dense parameters (the bias) travel as every model's do; its row-sparse table is table 0 of
/// the server (`sparsePull` / `sparsePush`), `featureCount x width`, initialised as the model's `tableInitScale` says (0 for sparse-lr).
///
/// ```swift
/// SparseModels.isSparse("sparse-lr")                     // true
/// let model = SparseModels.model(for: job)               // nil for a dense job
/// let table = model?.table                                // RowSparseTableShape "weight", D x width
/// ```
public enum SparseModels {
    /// Whether `model` names a row-sparse model (`sparse-lr`, or anything starting `sparse-`, which
    /// `JobPlanner` then checks).
    public static func isSparse(_ model: String) -> Bool { model.hasPrefix("sparse-") }

    /// The job's row-sparse model, or nil for a dense job.
    public static func model(for job: JobDescription) -> (any RowSparseModel)? {
        guard let kind = SparseModelKind(parsing: job.model), job.featureCount >= 1, job.classCount >= 2 else {
            return nil
        }
        return kind.makeModel(featureCount: job.featureCount, classCount: job.classCount, seed: job.seed)
    }
}

extension JobPlanner {
    /// Plans a row-sparse job: the data is read in CSR form (`SparseDataSource`: `synthetic-sparse:…` or a
    /// LIBSVM file), its feature ids hashed into `--hash-features` rows if asked; the dense tensors are the model's
    /// bias.
    static func planSparse(_ request: JobRequest) throws -> (job: JobDescription, tensors: [TensorSpec]) {
        guard let kind = SparseModelKind(parsing: request.model) else {
            throw PlanError(
                "--model \(request.model): expected sparse-lr or sparse-mlp:E,H (E and H between 1 and 4096)")
        }
        var source: SparseDataSource
        do {
            source = try SparseDataSource(parsing: request.data)
        } catch {
            throw PlanError("--data: \(error)")
        }
        var request = request
        if let rows = request.hashFeatures {
            guard rows >= 1, rows <= FeatureHashing.maximumRows else {
                throw PlanError("--hash-features must be between 1 and 2^31, got \(rows)")
            }
            guard request.features == nil else {
                throw PlanError("--hash-features D sets the table's rows; it cannot be combined with --features")
            }
            if case .libsvm(_, .some(let width)) = source {
                throw PlanError(
                    "--hash-features D sets the table's rows; drop the feature count \(width) from --data \(source)")
            }
        }
        if let features = request.features {
            guard features >= 1, features <= 1 << 32 else {
                throw PlanError("--features must be between 1 and 2^32, got \(features)")
            }
            guard case .libsvm(let path, _) = source else {
                throw PlanError("--features applies to LIBSVM data; synthetic-sparse:ROWS,FEATURES,NNZ names its own")
            }
            // Workers read the job's data spelling, so it carries the width.
            source = .libsvm(path: path, featureCount: features)
            request.data = source.description
        }
        let train = try source.loadTrain(hashFeatures: request.hashFeatures)
        guard train.classCount >= 2 else {
            throw PlanError(
                "--model \(request.model) needs class labels (at least two classes; -1/+1 counts as 0/1) in \(source)")
        }
        let classes = train.classCount
        if let testPath = request.test {
            let test: SparseDataset
            do {
                test = try SparseDataSource(parsing: testPath).loadTrain(hashFeatures: request.hashFeatures)
            } catch {
                throw PlanError("--test: \(error)")
            }
            guard test.featureCount <= train.featureCount else {
                throw PlanError(
                    "--test: \(test.name) uses \(test.featureCount) features, the training data \(train.featureCount)")
            }
            try test.requireClassification(classCount: classes)
        }
        let (globalBatch, overflow) = request.workers.multipliedReportingOverflow(by: request.batchPerWorker)
        guard !overflow, globalBatch <= train.rowCount else {
            throw PlanError(
                "--batch \(request.batchPerWorker) x --workers \(request.workers) (the global batch) is larger than "
                    + "the \(train.rowCount) training rows")
        }
        let stepsPerEpoch = train.rowCount / globalBatch
        let model = kind.makeModel(featureCount: train.featureCount, classCount: classes, seed: request.seed)
        let tensors = model.denseParameters.map {
            TensorSpec(name: $0.name, shape: $0.shape, initializer: InitSpec($0.initializer))
        }
        var job = JobDescription(
            model: request.model, data: request.data, test: request.test, labelColumn: request.labelColumn.rawValue,
            batchPerWorker: request.batchPerWorker, epochs: request.epochs, seed: request.seed, mode: request.mode,
            staleness: request.staleness, workers: request.workers, trainRows: train.rowCount,
            featureCount: train.featureCount, classCount: classes, stepsPerEpoch: stepsPerEpoch,
            totalSteps: stepsPerEpoch.multipliedReportingOverflow(by: request.epochs).partialValue)
        job.hashFeatures = request.hashFeatures
        do {
            try job.validate()
        } catch {
            throw PlanError("--epochs \(request.epochs) over \(train.rowCount) rows overflows the step or sample count")
        }
        return (job, tensors)
    }
}
