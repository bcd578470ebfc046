import Foundation
import PSModel

/// A model the library does not ship, written the way a user would: one tanh hidden layer and a softmax output,
/// with plain loops (no BLAS).
final class TanhNetwork: TrainableModel {
    let inputs: Int
    let hidden: Int
    let classes: Int
    private var activations: [Float] = []

    init(inputs: Int, hidden: Int, classes: Int) {
        self.inputs = inputs
        self.hidden = hidden
        self.classes = classes
    }

    var parameters: [ParameterSpec] {
        [
            ParameterSpec(
                name: "hidden.weight", shape: [inputs, hidden], initializer: .uniform(low: -1, high: 1, seed: 7)),
            ParameterSpec(name: "hidden.bias", shape: [hidden], initializer: .zeros),
            ParameterSpec(
                name: "out.weight", shape: [hidden, classes], initializer: .uniform(low: -1, high: 1, seed: 8)),
            ParameterSpec(name: "out.bias", shape: [classes], initializer: .zeros),
        ]
    }

    func validate(labels: UnsafeBufferPointer<Float>) throws(ModelError) {
        if let bad = labels.first(where: { $0 < 0 || $0 >= Float(classes) }) {
            throw ModelError("label \(bad) is not a class below \(classes)")
        }
    }

    /// The loss of one row; with `gradient`, adds `scale` times its gradient.
    private func row(
        _ x: UnsafeBufferPointer<Float>, label: Int, parameters p: ParameterValues, gradient: GradientValues?,
        scale: Float
    ) -> (loss: Double, predicted: Int) {
        let (w1, b1, w2, b2) = (p[0], p[1], p[2], p[3])
        if activations.count != hidden { activations = [Float](repeating: 0, count: hidden) }
        for h in 0..<hidden {
            var z = b1[h]
            for i in 0..<inputs { z += x[i] * w1[i * hidden + h] }
            activations[h] = tanh(z)
        }
        var logits = [Float](repeating: 0, count: classes)
        for c in 0..<classes {
            var z = b2[c]
            for h in 0..<hidden { z += activations[h] * w2[h * classes + c] }
            logits[c] = z
        }
        let maximum = logits.max() ?? 0
        let sum = logits.reduce(0.0) { $0 + exp(Double($1 - maximum)) }
        let loss = log(sum) - Double(logits[label] - maximum)
        let predicted = logits.firstIndex(of: maximum) ?? 0
        guard let gradient else { return (loss, predicted) }
        let (g1, gb1, g2, gb2) = (gradient[0], gradient[1], gradient[2], gradient[3])
        for c in 0..<classes {
            let delta = scale * (Float(exp(Double(logits[c] - maximum)) / sum) - (c == label ? 1 : 0))
            gb2[c] += delta
            for h in 0..<hidden { g2[h * classes + c] += activations[h] * delta }
        }
        for h in 0..<hidden {
            var back: Float = 0
            for c in 0..<classes {
                back +=
                    w2[h * classes + c] * scale * (Float(exp(Double(logits[c] - maximum)) / sum) - (c == label ? 1 : 0))
            }
            let delta = back * (1 - activations[h] * activations[h])
            gb1[h] += delta
            for i in 0..<inputs { g1[i * hidden + h] += x[i] * delta }
        }
        return (loss, predicted)
    }

    func lossAndGradient(parameters: ParameterValues, batch: Batch, gradient: GradientValues) -> Double {
        gradient.flat.update(repeating: 0)
        var loss = 0.0
        for r in 0..<batch.rows {
            loss +=
                row(
                    batch.row(r), label: Int(batch.labels[r]), parameters: parameters, gradient: gradient,
                    scale: 1 / Float(batch.rows)
                ).loss
        }
        return loss / Double(batch.rows)
    }

    func evaluate(parameters: ParameterValues, batch: Batch) -> Evaluation? {
        var loss = 0.0
        var correct = 0
        for r in 0..<batch.rows {
            let result = row(batch.row(r), label: Int(batch.labels[r]), parameters: parameters, gradient: nil, scale: 0)
            loss += result.loss
            if result.predicted == Int(batch.labels[r]) { correct += 1 }
        }
        return Evaluation(
            loss: loss / Double(max(batch.rows, 1)), accuracy: Double(correct) / Double(max(batch.rows, 1)))
    }
}
