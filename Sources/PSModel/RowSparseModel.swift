import PSData

/// A model with one row-sparse table and some dense parameters: what the sparse worker loop trains.
///
/// Each step the worker pulls the table rows `touched` (the sorted, unique feature ids of its batch) and the dense
/// parameters (flat, in `denseParameters` order), calls `lossAndGradient`, and pushes the rows' gradients and
/// the dense gradient.
///
/// ```swift
/// let model: any RowSparseModel = try SparseModelKind(parsing: "sparse-mlp:16,64")
///     .makeModel(featureCount: 1 << 20, classCount: 2, seed: 0)
/// ```
public protocol RowSparseModel: Sendable {
    /// The row-sparse table (`features x width`).
    var table: RowSparseTableShape { get }
    /// The dense parameters, in flat-vector order.
    var denseParameters: [ParameterSpec] { get }
    /// The table's initial values are uniform in `[-tableInitScale, tableInitScale]` (0: zeros).
    var tableInitScale: Float { get }

    /// The mean loss over `batch` and its gradients: `rows` holds `touched.count x width` pulled values,
    /// `dense` the flat dense parameters; `rowGradient` (same shape as `rows`) and `denseGradient` (same as
    /// `dense`) are overwritten.
    func lossAndGradient(
        _ batch: SparseExamples, touched: [UInt64], rows: [Float], dense: [Float], rowGradient: inout [Float],
        denseGradient: inout [Float]
    ) -> Double

    /// The mean loss and accuracy over `examples`.
    func evaluate(_ examples: SparseExamples, touched: [UInt64], rows: [Float], dense: [Float]) -> Evaluation
}

extension SparseLogisticRegression: RowSparseModel {
    public var tableInitScale: Float { 0 }

    public func lossAndGradient(
        _ batch: SparseExamples, touched: [UInt64], rows: [Float], dense: [Float], rowGradient: inout [Float],
        denseGradient: inout [Float]
    ) -> Double {
        lossAndGradient(
            batch, touched: touched, rows: rows, bias: dense, rowGradient: &rowGradient, biasGradient: &denseGradient)
    }

    public func evaluate(_ examples: SparseExamples, touched: [UInt64], rows: [Float], dense: [Float]) -> Evaluation {
        evaluate(examples, touched: touched, rows: rows, bias: dense)
    }
}

/// The built-in row-sparse models by `--model` spelling: `sparse-lr` and `sparse-mlp:E,H`.
///
/// ```swift
/// SparseModelKind(parsing: "sparse-mlp:16,32")   // .mlp(embedding: 16, hidden: 32)
/// SparseModelKind(parsing: "mlp:128")            // nil: a dense model
/// ```
public enum SparseModelKind: Sendable, Equatable {
    /// Logistic regression over sparse features.
    case logisticRegression
    /// An embedding bag of width `embedding` and one ReLU hidden layer of `hidden` units.
    case mlp(embedding: Int, hidden: Int)

    /// Parses `sparse-lr` or `sparse-mlp:E,H`; nil for any other spelling.
    public init?(parsing text: String) {
        if text == "sparse-lr" {
            self = .logisticRegression
            return
        }
        guard text.hasPrefix("sparse-mlp:") else { return nil }
        let parts = text.dropFirst("sparse-mlp:".count).split(separator: ",", omittingEmptySubsequences: false)
        guard parts.count == 2, let embedding = Int(parts[0]), let hidden = Int(parts[1]),
            (1...4096).contains(embedding), (1...4096).contains(hidden)
        else { return nil }
        self = .mlp(embedding: embedding, hidden: hidden)
    }

    /// The model for the job's data.
    public func makeModel(featureCount: Int, classCount: Int, seed: UInt64) -> any RowSparseModel {
        switch self {
        case .logisticRegression:
            return SparseLogisticRegression(featureCount: featureCount, classCount: classCount)
        case .mlp(let embedding, let hidden):
            return SparseMLP(
                featureCount: featureCount, classCount: classCount, embedding: embedding, hidden: hidden, seed: seed)
        }
    }
}

/// Makes `buffer` `count` zeros, reusing its storage when it already holds `count` values (a model's gradient
/// buffers, step after step).
func zeroed(_ buffer: inout [Float], count: Int) {
    if buffer.count == count {
        buffer.withUnsafeMutableBufferPointer { $0.update(repeating: 0) }
    } else {
        buffer = [Float](repeating: 0, count: count)
    }
}
