import Foundation
import PSModel

// The model of the README's "Your own model", copied verbatim so that the test suite compiles and trains it.

/// Multinomial logistic regression on the features and their squares.
final class QuadraticSoftmax: TrainableModel {
    let inputs: Int, classes: Int
    init(inputs: Int, classes: Int) { (self.inputs, self.classes) = (inputs, classes) }

    var parameters: [ParameterSpec] {
        [
            ParameterSpec(name: "w", shape: [2 * inputs, classes], initializer: .zeros),
            ParameterSpec(name: "b", shape: [classes], initializer: .zeros),
        ]
    }

    func lossAndGradient(parameters: ParameterValues, batch: Batch, gradient: GradientValues) -> Double {
        let (w, b, dw, db) = (parameters[0], parameters[1], gradient[0], gradient[1])
        gradient.flat.update(repeating: 0)
        var loss = 0.0
        for row in 0..<batch.rows {
            let x = batch.row(row)
            let features = Array(x) + x.map { $0 * $0 }
            var logits = Array(b)
            for (i, value) in features.enumerated() {
                for c in 0..<classes { logits[c] += value * w[i * classes + c] }
            }
            let top = logits.max()!
            let sum = logits.reduce(0) { $0 + exp($1 - top) }
            let label = Int(batch.labels[row])
            loss += Double(log(sum) - (logits[label] - top))
            for c in 0..<classes {
                let delta = (exp(logits[c] - top) / sum - (c == label ? 1 : 0)) / Float(batch.rows)
                db[c] += delta
                for (i, value) in features.enumerated() { dw[i * classes + c] += value * delta }
            }
        }
        return loss / Double(batch.rows)
    }
}
