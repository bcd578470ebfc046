import Foundation

/// The softmax cross-entropy output shared by the classifiers (`ModelComputer`'s softmax and mlp, `ConvNet`):
/// stable, the row maximum is subtracted before `exp`; labels are class indices stored as `Float`.
enum SoftmaxCrossEntropy {
    /// The summed loss of `rows` rows of logits (`[rows][classes]`). With `deltas`, also writes `scale` times the
    /// gradient of the summed loss with respect to the logits there; `deltas` may be `logits` itself.
    ///
    /// Each `exp` is computed once, in double precision, and serves both the loss and the probabilities.
    /// The row's exponentials live in a temporary allocation: on the stack for the class counts of these models.
    static func lossAndDelta(
        logits: UnsafePointer<Float>, labels: UnsafeBufferPointer<Float>, rows: Int, classes: Int, scale: Float,
        deltas: UnsafeMutablePointer<Float>?
    ) -> Double {
        withUnsafeTemporaryAllocation(of: Double.self, capacity: classes) { exponentials in
            var lossSum = 0.0
            for row in 0..<rows {
                let outputs = logits + row * classes
                let label = Int(labels[row])
                precondition(label >= 0 && label < classes, "label \(labels[row]) outside 0..<\(classes)")
                var maximum = outputs[0]
                for j in 1..<classes where outputs[j] > maximum { maximum = outputs[j] }
                var sum = 0.0
                for j in 0..<classes {
                    exponentials[j] = exp(Double(outputs[j] - maximum))
                    sum += exponentials[j]
                }
                lossSum += log(sum) - Double(outputs[label] - maximum)
                if let deltas {
                    let rowDeltas = deltas + row * classes
                    for j in 0..<classes {
                        let probability = Float(exponentials[j] / sum)
                        rowDeltas[j] = scale * (j == label ? probability - 1 : probability)
                    }
                }
            }
            return lossSum
        }
    }

    /// The number of rows whose first largest logit is the label.
    static func countCorrect(
        logits: UnsafePointer<Float>, labels: UnsafeBufferPointer<Float>, rows: Int, classes: Int
    ) -> Int {
        var correct = 0
        for row in 0..<rows {
            let outputs = logits + row * classes
            var best = 0
            for j in 1..<classes where outputs[j] > outputs[best] { best = j }
            if Float(best) == labels[row] { correct += 1 }
        }
        return correct
    }
}
