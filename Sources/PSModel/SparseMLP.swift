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
        var work = Workspace(embedding: embedding, hidden: hidden, classCount: classCount)
        defer { work.deallocate() }
        rows.withUnsafeBufferPointer { rows in
            dense.withUnsafeBufferPointer { dense in
                rowGradient.withUnsafeMutableBufferPointer { rowGradient in
                    denseGradient.withUnsafeMutableBufferPointer { denseGradient in
                        for row in 0..<batch.rowCount {
                            forward(batch, row: row, touched: touched, rows: rows, dense: dense, into: &work)
                            loss += work.loss
                            backward(
                                batch, row: row, work: work, dense: dense, scale: 1 / n, rowGradient: rowGradient,
                                denseGradient: denseGradient)
                        }
                    }
                }
            }
        }
        return loss / Double(n)
    }

    public func evaluate(_ examples: SparseExamples, touched: [UInt64], rows: [Float], dense: [Float]) -> Evaluation {
        var loss = 0.0
        var correct = 0
        var work = Workspace(embedding: embedding, hidden: hidden, classCount: classCount)
        defer { work.deallocate() }
        rows.withUnsafeBufferPointer { rows in
            dense.withUnsafeBufferPointer { dense in
                for row in 0..<examples.rowCount {
                    forward(examples, row: row, touched: touched, rows: rows, dense: dense, into: &work)
                    loss += work.loss
                    if work.predicted == Int(examples.labels[row]) { correct += 1 }
                }
            }
        }
        let n = Double(max(examples.rowCount, 1))
        return Evaluation(loss: loss / n, accuracy: Double(correct) / n)
    }

    /// One row's forward values and backward temporaries, overwritten row after row: one set of buffers per batch
    /// instead of nine arrays per row, read and written through pointers (no bounds or uniqueness checks in the
    /// inner loops of a release build). The arithmetic and its order are the same as with arrays.
    private struct Workspace {
        var slots: [Int] = []
        let h0: UnsafeMutableBufferPointer<Float>
        let a1: UnsafeMutableBufferPointer<Float>
        let r: UnsafeMutableBufferPointer<Float>
        let z: UnsafeMutableBufferPointer<Float>
        /// `exp(z - max z)`, computed once for the sum and the probabilities.
        let exponentials: UnsafeMutableBufferPointer<Double>
        let probabilities: UnsafeMutableBufferPointer<Float>
        let dz: UnsafeMutableBufferPointer<Float>
        let da1: UnsafeMutableBufferPointer<Float>
        let dh0: UnsafeMutableBufferPointer<Float>
        var loss = 0.0
        var predicted = 0
        var label = 0

        init(embedding: Int, hidden: Int, classCount: Int) {
            func zeros(_ count: Int) -> UnsafeMutableBufferPointer<Float> {
                let buffer = UnsafeMutableBufferPointer<Float>.allocate(capacity: count)
                buffer.initialize(repeating: 0)
                return buffer
            }
            (h0, dh0) = (zeros(embedding), zeros(embedding))
            (a1, r, da1) = (zeros(hidden), zeros(hidden), zeros(hidden))
            (z, probabilities, dz) = (zeros(classCount), zeros(classCount), zeros(classCount))
            exponentials = .allocate(capacity: classCount)
            exponentials.initialize(repeating: 0)
        }

        func deallocate() {
            for buffer in [h0, a1, r, z, probabilities, dz, da1, dh0] { buffer.deallocate() }
            exponentials.deallocate()
        }
    }

    private func forward(
        _ batch: SparseExamples, row: Int, touched: [UInt64], rows: UnsafeBufferPointer<Float>,
        dense: UnsafeBufferPointer<Float>, into w: inout Workspace
    ) {
        let o = offsets
        let (h0, a1, r, z) = (w.h0, w.a1, w.r, w.z)
        let range = batch.rowStarts[row]..<batch.rowStarts[row + 1]
        w.slots.removeAll(keepingCapacity: true)
        for e in 0..<embedding { h0[e] = 0 }
        for entry in range {
            let slot = SparseLogisticRegression.slot(of: UInt64(batch.featureIds[entry]), in: touched)
            w.slots.append(slot)
            let x = batch.values[entry]
            for e in 0..<embedding { h0[e] += x * rows[slot * embedding + e] }
        }
        for j in 0..<hidden { a1[j] = dense[o.b1 + j] }
        for e in 0..<embedding where h0[e] != 0 {
            for j in 0..<hidden { a1[j] += h0[e] * dense[o.w1 + e * hidden + j] }
        }
        for j in 0..<hidden { r[j] = max(a1[j], 0) }
        for c in 0..<classCount { z[c] = dense[o.b2 + c] }
        for j in 0..<hidden where r[j] != 0 {
            for c in 0..<classCount { z[c] += r[j] * dense[o.w2 + j * classCount + c] }
        }
        let maximum = z.max() ?? 0
        var sum = 0.0
        for c in 0..<classCount {
            w.exponentials[c] = exp(Double(z[c] - maximum))
            sum += w.exponentials[c]
        }
        for c in 0..<classCount { w.probabilities[c] = Float(w.exponentials[c] / sum) }
        w.label = Int(batch.labels[row])
        w.loss = -(Double(z[w.label] - maximum) - log(sum))
        w.predicted = z.indices.max { z[$0] < z[$1] } ?? 0
    }

    private func backward(
        _ batch: SparseExamples, row: Int, work w: Workspace, dense: UnsafeBufferPointer<Float>, scale: Float,
        rowGradient: UnsafeMutableBufferPointer<Float>, denseGradient: UnsafeMutableBufferPointer<Float>
    ) {
        let o = offsets
        let (h0, a1, r, dz, da1, dh0) = (w.h0, w.a1, w.r, w.dz, w.da1, w.dh0)
        for c in 0..<classCount { dz[c] = w.probabilities[c] }
        dz[w.label] -= 1
        for c in 0..<classCount { dz[c] *= scale }
        for c in 0..<classCount { denseGradient[o.b2 + c] += dz[c] }
        for j in 0..<hidden {
            var dr: Float = 0
            for c in 0..<classCount {
                denseGradient[o.w2 + j * classCount + c] += r[j] * dz[c]
                dr += dense[o.w2 + j * classCount + c] * dz[c]
            }
            da1[j] = a1[j] > 0 ? dr : 0
        }
        for e in 0..<embedding { dh0[e] = 0 }
        for j in 0..<hidden where da1[j] != 0 {
            denseGradient[o.b1 + j] += da1[j]
            for e in 0..<embedding {
                denseGradient[o.w1 + e * hidden + j] += h0[e] * da1[j]
                dh0[e] += dense[o.w1 + e * hidden + j] * da1[j]
            }
        }
        let range = batch.rowStarts[row]..<batch.rowStarts[row + 1]
        for (offset, entry) in range.enumerated() {
            let x = batch.values[entry]
            let base = w.slots[offset] * embedding
            for e in 0..<embedding { rowGradient[base + e] += x * dh0[e] }
        }
    }
}
