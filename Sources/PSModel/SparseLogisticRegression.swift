import Foundation
import PSData

/// Rows of sparse examples in CSR form, as a row-sparse model computes on them: PSData's `SparseBatch`.
///
/// Row `r`'s features are `featureIds[rowStarts[r]..<rowStarts[r + 1]]` with the matching `values`.
///
/// ```swift
/// // Two rows: {3: 1, 7: 0.5} with label 1, {2: 1} with label 0.
/// let examples = SparseExamples(rowStarts: [0, 2, 3], featureIds: [3, 7, 2], values: [1, 0.5, 1], labels: [1, 0])
/// examples.touchedRows   // [2, 3, 7]
/// ```
public typealias SparseExamples = SparseBatch

/// A row-sparse table a model declares: `rows x width`, initialised on the server as the model's `tableInitScale`
/// says (zeros for sparse-lr).
///
/// ```swift
/// let table = RowSparseTableShape(name: "weight", rows: 1 << 24, width: 1)   // sparse-lr over 2^24 features
/// ```
public struct RowSparseTableShape: Sendable, Equatable {
    /// The tensor's name.
    public var name: String
    /// The row count.
    public var rows: Int
    /// The row width.
    public var width: Int

    /// Creates a shape.
    public init(name: String, rows: Int, width: Int) {
        self.name = name
        self.rows = rows
        self.width = width
    }
}

/// Logistic regression over sparse features (`--model sparse-lr`): a row-sparse weight table
/// `features x width` and a dense bias `[width]`; width 1 (a sigmoid) for two classes, else one column per class
/// (a softmax).
///
/// A worker pulls only the table rows its batch touches (`SparseExamples.touchedRows`) and pushes only their
/// gradients. The loss is the mean cross-entropy; the gradient of a touched row is
/// `sum over its entries of x * (p - y) / n`, exactly what dense logistic regression computes for those rows (and
/// zero for the others).
///
/// ```swift
/// let model = SparseLogisticRegression(featureCount: 1 << 20, classCount: 2)
/// let touched = batch.touchedRows
/// let loss = model.lossAndGradient(
///     batch, touched: touched, rows: pulled, bias: bias, rowGradient: &g, biasGradient: &gb)
/// ```
public struct SparseLogisticRegression: Sendable {
    /// The feature count (the table's row count).
    public let featureCount: Int
    /// The class count (at least 2).
    public let classCount: Int

    /// A model for `featureCount` sparse features and `classCount` classes.
    public init(featureCount: Int, classCount: Int) {
        precondition(featureCount >= 1 && classCount >= 2, "sparse-lr: \(featureCount) features, \(classCount) classes")
        self.featureCount = featureCount
        self.classCount = classCount
    }

    /// The row width: 1 for two classes (a sigmoid), else the class count.
    public var width: Int { classCount == 2 ? 1 : classCount }

    /// The row-sparse table: `weight`, `featureCount x width`.
    public var table: RowSparseTableShape { RowSparseTableShape(name: "weight", rows: featureCount, width: width) }

    /// The dense parameters: `bias [width]`, zeros.
    public var denseParameters: [ParameterSpec] { [ParameterSpec(name: "bias", shape: [width], initializer: .zeros)] }

    /// The mean loss over `batch` and its gradient: `rows` holds the pulled rows of `touched` (sorted, unique,
    /// covering every feature of the batch), `rowGradient` receives `touched.count x width` values in the same
    /// order and `biasGradient` `width` values (both overwritten).
    public func lossAndGradient(
        _ batch: SparseExamples, touched: [UInt64], rows: [Float], bias: [Float], rowGradient: inout [Float],
        biasGradient: inout [Float]
    ) -> Double {
        let width = self.width
        precondition(rows.count == touched.count * width && bias.count == width)
        zeroed(&rowGradient, count: rows.count)
        zeroed(&biasGradient, count: width)
        let n = Float(max(batch.rowCount, 1))
        var loss = 0.0
        var work = Scores(width: width)
        var slots: [Int] = []
        for row in 0..<batch.rowCount {
            let range = batch.rowStarts[row]..<batch.rowStarts[row + 1]
            slots.removeAll(keepingCapacity: true)
            for entry in range {
                slots.append(Self.slot(of: UInt64(batch.featureIds[entry]), in: touched))
            }
            let label = Int(batch.labels[row])
            let delta = scores(batch, range: range, slots: slots, rows: rows, bias: bias, into: &work, label: label)
            loss += delta.loss
            for column in 0..<width {
                let d = work.gradient[column] / n
                biasGradient[column] += d
                for (offset, entry) in range.enumerated() {
                    rowGradient[slots[offset] * width + column] += d * batch.values[entry]
                }
            }
        }
        return loss / Double(n)
    }

    /// The mean loss and the accuracy over `examples`, with the table rows of `touched` in `rows`.
    public func evaluate(_ examples: SparseExamples, touched: [UInt64], rows: [Float], bias: [Float]) -> Evaluation {
        var loss = 0.0
        var correct = 0
        var work = Scores(width: width)
        var slots: [Int] = []
        for row in 0..<examples.rowCount {
            let range = examples.rowStarts[row]..<examples.rowStarts[row + 1]
            slots.removeAll(keepingCapacity: true)
            for entry in range { slots.append(Self.slot(of: UInt64(examples.featureIds[entry]), in: touched)) }
            let label = Int(examples.labels[row])
            let result = scores(
                examples, range: range, slots: slots, rows: rows, bias: bias, into: &work, label: label)
            loss += result.loss
            if result.predicted == label { correct += 1 }
        }
        let n = Double(max(examples.rowCount, 1))
        return Evaluation(loss: loss / n, accuracy: Double(correct) / n)
    }

    /// One row's logits, `exp(logit - max)` (softmax only) and `p - y` per column, reused from row to row.
    private struct Scores {
        var logits: [Float]
        var exponentials: [Double]
        var gradient: [Float]

        init(width: Int) {
            logits = [Float](repeating: 0, count: max(width, 2))
            exponentials = [Double](repeating: 0, count: width)
            gradient = [Float](repeating: 0, count: width)
        }
    }

    /// One row's logits and `p - y` per column (into `work`), its loss and predicted class.
    private func scores(
        _ batch: SparseExamples, range: Range<Int>, slots: [Int], rows: [Float], bias: [Float],
        into work: inout Scores, label: Int
    ) -> (loss: Double, predicted: Int) {
        let width = self.width
        for column in 0..<width {
            var z = bias[column]
            for (offset, entry) in range.enumerated() {
                z += rows[slots[offset] * width + column] * batch.values[entry]
            }
            work.logits[column] = z
        }
        if width == 1 {
            let z = Double(work.logits[0])
            let p = 1 / (1 + exp(-z))
            let y = Double(label)
            // log(1 + e^-z) for y = 1, log(1 + e^z) for y = 0, computed stably.
            let margin = y == 1 ? z : -z
            let loss = margin > 0 ? log1p(exp(-margin)) : -margin + log1p(exp(margin))
            work.gradient[0] = Float(p - y)
            return (loss, z > 0 ? 1 : 0)
        }
        let maximum = work.logits[0..<width].max() ?? 0
        var sum = 0.0
        for column in 0..<width {
            work.exponentials[column] = exp(Double(work.logits[column] - maximum))
            sum += work.exponentials[column]
        }
        var predicted = 0
        for column in 0..<width {
            let p = work.exponentials[column] / sum
            work.gradient[column] = Float(p - (column == label ? 1 : 0))
            if work.logits[column] > work.logits[predicted] { predicted = column }
        }
        let loss = -(Double(work.logits[label] - maximum) - log(sum))
        return (loss, predicted)
    }

    /// The position of `id` in the sorted `touched` (a programmer error if absent).
    static func slot(of id: UInt64, in touched: [UInt64]) -> Int {
        var low = 0
        var high = touched.count
        while low < high {
            let middle = (low + high) / 2
            if touched[middle] < id { low = middle + 1 } else { high = middle }
        }
        precondition(low < touched.count && touched[low] == id, "feature \(id) was not pulled")
        return low
    }
}
