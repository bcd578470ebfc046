import Foundation
import PSData
import PSMath

/// `--model sparse-mlp:E,H`: every sparse feature selects a row of width `E` of the `embedding` table; a row's
/// embeddings, weighted by the feature values, are summed (an embedding bag) into `h0 [E]`, then
/// `a1 = h0 · fc1.weight + fc1.bias` (`[E][H]`, `[H]`), ReLU, and `z = relu(a1) · fc2.weight + fc2.bias`
/// (`[H][C]`, `[C]`), softmax cross-entropy over the `C` classes.
///
/// The table starts uniform in `[-0.05, 0.05]` (a zero table would give every gradient zero); the dense layers
/// are Glorot-uniform from `seed * 1000 + layer`. The gradient of a touched embedding row is
/// `sum over its entries of x * dh0`.
///
/// ```swift
/// let model = SparseMLP(featureCount: 1 << 20, classCount: 2, embedding: 16, hidden: 32, seed: 0)
/// model.table          // "embedding": 1048576 rows x 16
/// ```
public struct SparseMLP: RowSparseModel {
    /// The feature count (the table's row count).
    public let featureCount: Int
    /// The class count.
    public let classCount: Int
    /// The embedding width E.
    public let embedding: Int
    /// The hidden width H.
    public let hidden: Int
    /// The seed of the dense initialisers.
    public let seed: UInt64

    /// A model of the given widths.
    public init(featureCount: Int, classCount: Int, embedding: Int, hidden: Int, seed: UInt64) {
        precondition(featureCount >= 1 && classCount >= 2 && embedding >= 1 && hidden >= 1)
        self.featureCount = featureCount
        self.classCount = classCount
        self.embedding = embedding
        self.hidden = hidden
        self.seed = seed
    }

    public var table: RowSparseTableShape {
        RowSparseTableShape(name: "embedding", rows: featureCount, width: embedding)
    }

    public var tableInitScale: Float { 0.05 }

    public var denseParameters: [ParameterSpec] {
        [
            ParameterSpec(
                name: "fc1.weight", shape: [embedding, hidden], initializer: .glorotUniform(seed: seed &* 1000 &+ 1)),
            ParameterSpec(name: "fc1.bias", shape: [hidden], initializer: .zeros),
            ParameterSpec(
                name: "fc2.weight", shape: [hidden, classCount], initializer: .glorotUniform(seed: seed &* 1000 &+ 2)),
            ParameterSpec(name: "fc2.bias", shape: [classCount], initializer: .zeros),
        ]
    }

    /// Offsets of the dense tensors in the flat vector.
    private var offsets: (w1: Int, b1: Int, w2: Int, b2: Int, end: Int) {
        let b1 = embedding * hidden
        let w2 = b1 + hidden
        let b2 = w2 + hidden * classCount
        return (0, b1, w2, b2, b2 + classCount)
    }

    public func lossAndGradient(
        _ batch: SparseExamples, touched: [UInt64], rows: [Float], dense: [Float], rowGradient: inout [Float],
        denseGradient: inout [Float]
    ) -> Double {
        precondition(rows.count == touched.count * embedding && dense.count == offsets.end)
        // The caller's buffers are reused step after step: resized only when the touched rows change in number.
        zeroed(&rowGradient, count: rows.count)
        zeroed(&denseGradient, count: dense.count)
        let n = Float(max(batch.rowCount, 1))
        var loss = 0.0
        for row in 0..<batch.rowCount {
            let forward = self.forward(batch, row: row, touched: touched, rows: rows, dense: dense)
            loss += forward.loss
            backward(
                batch, row: row, forward: forward, dense: dense, scale: 1 / n, rowGradient: &rowGradient,
                denseGradient: &denseGradient)
        }
        return loss / Double(n)
    }

    public func evaluate(_ examples: SparseExamples, touched: [UInt64], rows: [Float], dense: [Float]) -> Evaluation {
        var loss = 0.0
        var correct = 0
        for row in 0..<examples.rowCount {
            let forward = self.forward(examples, row: row, touched: touched, rows: rows, dense: dense)
            loss += forward.loss
            if forward.predicted == Int(examples.labels[row]) { correct += 1 }
        }
        let n = Double(max(examples.rowCount, 1))
        return Evaluation(loss: loss / n, accuracy: Double(correct) / n)
    }

    private struct Forward {
        var slots: [Int]
        var h0: [Float]
        var a1: [Float]
        var r: [Float]
        var probabilities: [Float]
        var loss: Double
        var predicted: Int
        var label: Int
    }

    private func forward(
        _ batch: SparseExamples, row: Int, touched: [UInt64], rows: [Float], dense: [Float]
    ) -> Forward {
        let o = offsets
        let range = batch.rowStarts[row]..<batch.rowStarts[row + 1]
        var slots: [Int] = []
        slots.reserveCapacity(range.count)
        var h0 = [Float](repeating: 0, count: embedding)
        for entry in range {
            let slot = SparseLogisticRegression.slot(of: UInt64(batch.featureIds[entry]), in: touched)
            slots.append(slot)
            let x = batch.values[entry]
            for e in 0..<embedding { h0[e] += x * rows[slot * embedding + e] }
        }
        var a1 = Array(dense[o.b1..<(o.b1 + hidden)])
        for e in 0..<embedding where h0[e] != 0 {
            for j in 0..<hidden { a1[j] += h0[e] * dense[o.w1 + e * hidden + j] }
        }
        let r = a1.map { max($0, 0) }
        var z = Array(dense[o.b2..<(o.b2 + classCount)])
        for j in 0..<hidden where r[j] != 0 {
            for c in 0..<classCount { z[c] += r[j] * dense[o.w2 + j * classCount + c] }
        }
        let maximum = z.max() ?? 0
        var sum = 0.0
        for c in 0..<classCount { sum += exp(Double(z[c] - maximum)) }
        let probabilities = z.map { Float(exp(Double($0 - maximum)) / sum) }
        let label = Int(batch.labels[row])
        let loss = -(Double(z[label] - maximum) - log(sum))
        let predicted = z.indices.max { z[$0] < z[$1] } ?? 0
        return Forward(
            slots: slots, h0: h0, a1: a1, r: r, probabilities: probabilities, loss: loss, predicted: predicted,
            label: label)
    }

    private func backward(
        _ batch: SparseExamples, row: Int, forward: Forward, dense: [Float], scale: Float, rowGradient: inout [Float],
        denseGradient: inout [Float]
    ) {
        let o = offsets
        var dz = forward.probabilities
        dz[forward.label] -= 1
        for c in 0..<classCount { dz[c] *= scale }
        for c in 0..<classCount { denseGradient[o.b2 + c] += dz[c] }
        var da1 = [Float](repeating: 0, count: hidden)
        for j in 0..<hidden {
            var dr: Float = 0
            for c in 0..<classCount {
                denseGradient[o.w2 + j * classCount + c] += forward.r[j] * dz[c]
                dr += dense[o.w2 + j * classCount + c] * dz[c]
            }
            da1[j] = forward.a1[j] > 0 ? dr : 0
        }
        var dh0 = [Float](repeating: 0, count: embedding)
        for j in 0..<hidden where da1[j] != 0 {
            denseGradient[o.b1 + j] += da1[j]
            for e in 0..<embedding {
                denseGradient[o.w1 + e * hidden + j] += forward.h0[e] * da1[j]
                dh0[e] += dense[o.w1 + e * hidden + j] * da1[j]
            }
        }
        let range = batch.rowStarts[row]..<batch.rowStarts[row + 1]
        for (offset, entry) in range.enumerated() {
            let x = batch.values[entry]
            let base = forward.slots[offset] * embedding
            for e in 0..<embedding { rowGradient[base + e] += x * dh0[e] }
        }
    }
}
