/// A model that SwiftPS can train: named parameter tensors and a function from a batch to its loss and gradient.
///
/// The worker agent (`PSTraining.Worker`) owns the loop around it: it joins the job, pulls the parameters, hands
/// the model this worker's rows of the step, pushes the gradient and keeps the clock, in BSP, SSP or async. The
/// built-in models (`softmax`, `linear`, `mlp:…`, `cnn:…`) are implementations of this protocol and run through the
/// same loop; see `ModelKind.makeModel(context:)`.
///
/// The parameters travel as one flat float32 vector: the tensors of `parameters`, in order, each row-major. The
/// server initialises them from their `Initializer`s, so every worker starts from the same weights.
///
/// A model is called from one thread only (each worker owns one), so a final class may keep its workspaces in
/// stored properties and reuse them every step.
///
/// ```swift
/// /// y ≈ w · x + b, trained on half the mean squared error.
/// final class LinearRegression: TrainableModel {
///     let inputs: Int
///     init(inputs: Int) { self.inputs = inputs }
///
///     var parameters: [ParameterSpec] {
///         [ParameterSpec(name: "w", shape: [inputs], initializer: .zeros),
///          ParameterSpec(name: "b", shape: [1], initializer: .zeros)]
///     }
///
///     func lossAndGradient(parameters: ParameterValues, batch: Batch, gradient: GradientValues) -> Double {
///         let (w, b, dw, db) = (parameters[0], parameters[1], gradient[0], gradient[1])
///         dw.update(repeating: 0)
///         db[0] = 0
///         var loss = 0.0
///         for row in 0..<batch.rows {
///             let x = batch.row(row)
///             var error = b[0] - batch.labels[row]
///             for j in 0..<inputs { error += w[j] * x[j] }
///             loss += 0.5 * Double(error * error)
///             for j in 0..<inputs { dw[j] += error * x[j] / Float(batch.rows) }
///             db[0] += error / Float(batch.rows)
///         }
///         return loss / Double(batch.rows)
///     }
/// }
/// ```
public protocol TrainableModel {
    /// The parameter tensors in flat-vector order, with their shapes and initialisers.
    ///
    /// Must not change while the model trains: the server lays its shards out from the first worker's list and
    /// refuses a worker whose list differs.
    var parameters: [ParameterSpec] { get }

    /// Throws unless every label suits the model (called once on the loaded training and test data).
    ///
    /// The default accepts any label.
    func validate(labels: UnsafeBufferPointer<Float>) throws(ModelError)

    /// The mean loss over `batch` and its gradient with respect to every parameter.
    ///
    /// Every element of `gradient` must be written (it holds the previous step's values on entry). The worker
    /// pushes the gradient as it is; the server's optimizer applies it, averaged over the workers in BSP.
    func lossAndGradient(parameters: ParameterValues, batch: Batch, gradient: GradientValues) -> Double

    /// `lossAndGradient`, also calling `ready(start, loss)` each time the backward pass has finished a trailing
    /// part of the gradient (`loss` is the batch's mean loss, as returned).
    ///
    /// `ready(start, loss)` promises that elements `start...` of `gradient` hold their final values and that the
    /// pass neither writes them nor reads the parameters from `start` on again. Starts only decrease, and the last
    /// call is `ready(0, loss)`, before the method returns. A scale-out worker uses it as PyTorch DDP uses its
    /// gradient buckets: the servers that own a finished trailing part get their exchange while the earlier layers'
    /// backward pass still runs (their replies may land in those parameters meanwhile).
    ///
    /// The default calls `lossAndGradient` and then `ready(0, loss)`.
    func lossAndGradient(
        parameters: ParameterValues, batch: Batch, gradient: GradientValues,
        ready: (_ start: Int, _ loss: Double) -> Void
    ) -> Double

    /// The mean loss and, for classifiers, the accuracy over `batch`, which may hold the whole test set (any
    /// number of rows, chunk it as needed); nil when the model does not evaluate.
    ///
    /// The worker calls it at the end of every epoch on the test set and reports it to the coordinator. The
    /// default returns nil.
    func evaluate(parameters: ParameterValues, batch: Batch) -> Evaluation?
}

extension TrainableModel {
    /// Accepts any label.
    public func validate(labels: UnsafeBufferPointer<Float>) throws(ModelError) {}

    /// No evaluation.
    public func evaluate(parameters: ParameterValues, batch: Batch) -> Evaluation? { nil }

    /// The whole gradient, then `ready(0, loss)`: nothing is ready early.
    public func lossAndGradient(
        parameters: ParameterValues, batch: Batch, gradient: GradientValues,
        ready: (_ start: Int, _ loss: Double) -> Void
    ) -> Double {
        let loss = lossAndGradient(parameters: parameters, batch: batch, gradient: gradient)
        ready(0, loss)
        return loss
    }

    /// The length of the flat parameter vector: the sum of every tensor's element count.
    public var parameterCount: Int { parameters.reduce(0) { $0 + $1.elementCount } }
}

/// What a model is built for: the data's widths and the job's batch and seed, as the server configured the job.
///
/// ```swift
/// let worker = Worker(options: options) { context in
///     MyModel(inputs: context.featureCount, classes: context.classCount, seed: context.seed)
/// }
/// ```
public struct ModelContext: Sendable, Equatable {
    /// The `--model` text of the job (`external` for a model the server does not know).
    public var model: String
    /// Features per row of the training data.
    public var featureCount: Int
    /// Classes of the training labels; 0 for regression data.
    public var classCount: Int
    /// Rows per worker per step: the largest batch `lossAndGradient` receives.
    public var batchPerWorker: Int
    /// The job's seed (the data order and the built-in initialisers use it).
    public var seed: UInt64

    /// Creates a context.
    public init(model: String, featureCount: Int, classCount: Int, batchPerWorker: Int, seed: UInt64) {
        self.model = model
        self.featureCount = featureCount
        self.classCount = classCount
        self.batchPerWorker = batchPerWorker
        self.seed = seed
    }
}

/// Rows of a data set handed to a model: row-major features and one label per row.
///
/// ```swift
/// for row in 0..<batch.rows {
///     let pixels = batch.row(row)        // featureCount floats
///     let label = Int(batch.labels[row])  // a class index for classification data
/// }
/// ```
public struct Batch {
    /// `[rows][featureCount]` features, row-major.
    public let features: UnsafeBufferPointer<Float>
    /// `rows` labels: class indices stored as `Float`, or regression targets.
    public let labels: UnsafeBufferPointer<Float>
    /// The number of rows.
    public let rows: Int
    /// Features per row.
    public let featureCount: Int

    /// Creates a batch; `features` must hold at least `rows * featureCount` floats and `labels` at least `rows`.
    public init(features: UnsafeBufferPointer<Float>, labels: UnsafeBufferPointer<Float>, rows: Int, featureCount: Int)
    {
        precondition(rows >= 0 && featureCount >= 1, "batch of \(rows) rows x \(featureCount) features")
        precondition(features.count >= rows * featureCount, "\(features.count) features for \(rows) rows")
        precondition(labels.count >= rows, "\(labels.count) labels for \(rows) rows")
        self.features = features
        self.labels = labels
        self.rows = rows
        self.featureCount = featureCount
    }

    /// The features of one row.
    public func row(_ index: Int) -> UnsafeBufferPointer<Float> {
        UnsafeBufferPointer(rebasing: features[(index * featureCount)..<((index + 1) * featureCount)])
    }

    /// The rows `start ..< start + count` as a batch of their own.
    public func slice(start: Int, count: Int) -> Batch {
        Batch(
            features: UnsafeBufferPointer(
                rebasing: features[(start * featureCount)..<((start + count) * featureCount)]),
            labels: UnsafeBufferPointer(rebasing: labels[start..<(start + count)]), rows: count,
            featureCount: featureCount)
    }
}

/// Where each tensor of a model sits in the flat parameter vector.
///
/// ```swift
/// let layout = TensorLayout(model.parameters)
/// layout.offsets[1]            // where the second tensor starts
/// layout.index(of: "fc1.bias") // its position in the list
/// ```
public final class TensorLayout: Sendable {
    /// Tensor names in order.
    public let names: [String]
    /// Tensor shapes in order.
    public let shapes: [[Int]]
    /// The first element of each tensor in the flat vector.
    public let offsets: [Int]
    /// Each tensor's element count.
    public let counts: [Int]
    /// The length of the flat vector.
    public let totalCount: Int

    /// The layout of the given tensors, concatenated in order.
    public init(_ parameters: [ParameterSpec]) {
        names = parameters.map(\.name)
        shapes = parameters.map(\.shape)
        counts = parameters.map(\.elementCount)
        var offsets: [Int] = []
        var total = 0
        for count in counts {
            offsets.append(total)
            total += count
        }
        self.offsets = offsets
        totalCount = total
    }

    /// The position of the tensor named `name`, or nil.
    public func index(of name: String) -> Int? { names.firstIndex(of: name) }

    fileprivate func range(_ index: Int) -> Range<Int> { offsets[index]..<(offsets[index] + counts[index]) }

    fileprivate func range(named name: String) -> Range<Int> {
        guard let index = index(of: name) else { preconditionFailure("no tensor named '\(name)' in \(names)") }
        return range(index)
    }
}

/// The current parameters as the model sees them: the flat vector and a view of each tensor.
///
/// ```swift
/// let weights = parameters[0]            // the first tensor of `parameters`, row-major
/// let bias = parameters["fc1.bias"]      // by name
/// let all = parameters.flat              // every tensor, concatenated
/// ```
public struct ParameterValues {
    /// Every tensor, concatenated in the order of the model's `parameters`.
    public let flat: UnsafeBufferPointer<Float>
    /// Where each tensor sits in `flat`.
    public let layout: TensorLayout

    /// Wraps a flat vector of `layout.totalCount` floats.
    public init(flat: UnsafeBufferPointer<Float>, layout: TensorLayout) {
        precondition(flat.count == layout.totalCount, "\(flat.count) parameters, expected \(layout.totalCount)")
        self.flat = flat
        self.layout = layout
    }

    /// The tensor at position `index` of the model's `parameters`.
    public subscript(index: Int) -> UnsafeBufferPointer<Float> {
        UnsafeBufferPointer(rebasing: flat[layout.range(index)])
    }

    /// The tensor named `name` (a missing name is a programmer error).
    public subscript(name: String) -> UnsafeBufferPointer<Float> {
        UnsafeBufferPointer(rebasing: flat[layout.range(named: name)])
    }
}

/// The gradient the model writes: the flat vector and a view of each tensor, laid out like `ParameterValues`.
///
/// ```swift
/// gradient[0].update(repeating: 0)     // clear the first tensor's gradient
/// gradient["fc1.bias"][3] += delta
/// ```
public struct GradientValues {
    /// Every tensor's gradient, concatenated in the order of the model's `parameters`.
    public let flat: UnsafeMutableBufferPointer<Float>
    /// Where each tensor sits in `flat`.
    public let layout: TensorLayout

    /// Wraps a flat vector of `layout.totalCount` floats.
    public init(flat: UnsafeMutableBufferPointer<Float>, layout: TensorLayout) {
        precondition(flat.count == layout.totalCount, "\(flat.count) gradients, expected \(layout.totalCount)")
        self.flat = flat
        self.layout = layout
    }

    /// The gradient of the tensor at position `index`.
    public subscript(index: Int) -> UnsafeMutableBufferPointer<Float> {
        UnsafeMutableBufferPointer(rebasing: flat[layout.range(index)])
    }

    /// The gradient of the tensor named `name` (a missing name is a programmer error).
    public subscript(name: String) -> UnsafeMutableBufferPointer<Float> {
        UnsafeMutableBufferPointer(rebasing: flat[layout.range(named: name)])
    }
}

/// A model's score on held-out rows.
///
/// ```swift
/// return Evaluation(loss: lossSum / Double(batch.rows), accuracy: Double(correct) / Double(batch.rows))
/// ```
public struct Evaluation: Sendable, Equatable {
    /// The mean loss.
    public var loss: Double
    /// The fraction of rows classified correctly; nil for models without classes.
    public var accuracy: Double?

    /// Creates an evaluation.
    public init(loss: Double, accuracy: Double? = nil) {
        self.loss = loss
        self.accuracy = accuracy
    }
}

extension ModelComputer: TrainableModel {
    /// The tensors of `spec`.
    public var parameters: [ParameterSpec] { spec.parameters }

    /// Forwards to the flat-vector `lossAndGradient` over all of `batch`'s rows.
    public func lossAndGradient(parameters: ParameterValues, batch: Batch, gradient: GradientValues) -> Double {
        lossAndGradient(
            parameters: parameters.flat, features: batch.features, labels: batch.labels, rows: batch.rows,
            gradient: gradient.flat)
    }

    /// Forwards to the flat-vector `lossAndGradient`, which reports each layer's gradient as it is finished.
    public func lossAndGradient(
        parameters: ParameterValues, batch: Batch, gradient: GradientValues,
        ready: (_ start: Int, _ loss: Double) -> Void
    ) -> Double {
        lossAndGradient(
            parameters: parameters.flat, features: batch.features, labels: batch.labels, rows: batch.rows,
            gradient: gradient.flat, ready: ready)
    }

    /// Loss and, except for linear models, accuracy over all of `batch`'s rows.
    public func evaluate(parameters: ParameterValues, batch: Batch) -> Evaluation? {
        let result = evaluate(
            parameters: parameters.flat, features: batch.features, labels: batch.labels, rows: batch.rows)
        if case .linear = spec.kind { return Evaluation(loss: result.loss) }
        return Evaluation(loss: result.loss, accuracy: result.accuracy)
    }
}

extension ModelKind {
    /// The built-in model of this kind for the job's data: a `ModelComputer` (softmax, linear, mlp) or a `ConvNet`
    /// (cnn, on square single-channel images).
    ///
    /// Softmax, mlp and cnn need `context.classCount >= 2`; linear has one output. Weights come from `context.seed`
    /// as `ModelSpec.parameters` describes.
    ///
    /// ```swift
    /// let model = try ModelKind(parsing: "mlp:128").makeModel(context: context)
    /// ```
    public func makeModel(context: ModelContext) throws(ModelError) -> any TrainableModel {
        let spec = try spec(context: context)
        if case .cnn = self {
            let geometry = try ConvNet.Geometry(kind: self, inputCount: spec.inputCount, classCount: spec.outputCount)
            return ConvNet(geometry: geometry, seed: spec.seed, maxBatch: max(context.batchPerWorker, 64))
        }
        return ModelComputer(spec: spec, maxBatch: max(context.batchPerWorker, 256))
    }

    /// The validated `ModelSpec` of this kind for the job's data.
    public func spec(context: ModelContext) throws(ModelError) -> ModelSpec {
        let spec = ModelSpec(
            kind: self, inputCount: context.featureCount, outputCount: self == .linear ? 1 : context.classCount,
            seed: context.seed)
        try spec.validate()
        return spec
    }
}
