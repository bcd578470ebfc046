import Foundation
import PSMath

/// Forward and backward passes of one model, with workspaces preallocated for up to `maxBatch` rows.
///
/// The flat parameter vector holds the tensors of `ModelSpec.parameters` in order, each row-major: layer `l`
/// computes `Z = A · W + b` with `A` of shape `[rows][in]` and `W` of shape `[in][out]`, all with `BLAS.sgemm`.
/// Hidden layers apply ReLU. Losses:
/// - softmax and mlp: mean softmax cross-entropy over the rows, computed stably (the row maximum is subtracted
///   before `exp`); labels are class indices stored as `Float`.
/// - linear: mean over the rows of `(yHat - y)^2 / 2` (half the mean squared error), labels are the targets.
///
/// Not thread-safe: use one per thread (each worker owns one). `lossAndGradient` and `evaluate` allocate nothing.
///
/// ```swift
/// let spec = ModelSpec(kind: .mlp(hidden: [128]), inputCount: 784, outputCount: 10, seed: 0)
/// let computer = ModelComputer(spec: spec, maxBatch: 64)
/// let loss = computer.lossAndGradient(
///     parameters: weights, features: features, labels: labels, rows: 64, gradient: gradient)  // buffer pointers
/// ```
public final class ModelComputer {
    /// The model computed.
    public let spec: ModelSpec
    /// The largest number of rows one call of `lossAndGradient` accepts.
    public let maxBatch: Int
    /// The length of the flat parameter and gradient vectors.
    public let parameterCount: Int

    /// One linear layer: its widths, where its tensors sit in the flat vector, and its workspaces.
    private struct Layer {
        let inputWidth: Int
        let outputWidth: Int
        let weightOffset: Int
        let biasOffset: Int
        /// `[maxBatch][outputWidth]`: the layer's output (after ReLU for hidden layers; logits, then softmax
        /// probabilities, for the last).
        let activations: UnsafeMutablePointer<Float>
        /// `[maxBatch][outputWidth]`: the gradient of the loss with respect to the layer's pre-activation output.
        let deltas: UnsafeMutablePointer<Float>
    }

    private let layers: [Layer]
    /// `maxBatch` ones: bias gradients are `ones[1][rows] · deltas[rows][out]`, the column sums.
    private let ones: UnsafeMutablePointer<Float>
    private let usesCrossEntropy: Bool

    /// Creates a computer for `spec` (which must pass `validate()`) and batches of up to `maxBatch` rows.
    public init(spec: ModelSpec, maxBatch: Int) {
        precondition((try? spec.validate()) != nil, "invalid model spec \(spec)")
        if case .cnn = spec.kind { preconditionFailure("a cnn is computed by ConvNet, not ModelComputer") }
        precondition(maxBatch >= 1, "maxBatch must be at least 1, got \(maxBatch)")
        self.spec = spec
        self.maxBatch = maxBatch
        self.parameterCount = spec.parameterCount
        let widths = spec.layerWidths
        var layers: [Layer] = []
        var offset = 0
        for index in 1..<widths.count {
            let (inputWidth, outputWidth) = (widths[index - 1], widths[index])
            let activations = UnsafeMutablePointer<Float>.allocate(capacity: maxBatch * outputWidth)
            activations.initialize(repeating: 0, count: maxBatch * outputWidth)
            let deltas = UnsafeMutablePointer<Float>.allocate(capacity: maxBatch * outputWidth)
            deltas.initialize(repeating: 0, count: maxBatch * outputWidth)
            layers.append(
                Layer(
                    inputWidth: inputWidth, outputWidth: outputWidth, weightOffset: offset,
                    biasOffset: offset + inputWidth * outputWidth, activations: activations, deltas: deltas))
            offset += (inputWidth + 1) * outputWidth
        }
        self.layers = layers
        self.ones = UnsafeMutablePointer<Float>.allocate(capacity: maxBatch)
        self.ones.initialize(repeating: 1, count: maxBatch)
        if case .linear = spec.kind {
            usesCrossEntropy = false
        } else {
            usesCrossEntropy = true
        }
    }

    deinit {
        for layer in layers {
            layer.activations.deallocate()
            layer.deltas.deallocate()
        }
        ones.deallocate()
    }

    /// Forward plus backward multiply-adds times two per row: `sum over layers of 2 * in * out` for the forward
    /// product, as much again for the weight gradient, and as much again for the input gradient of every layer but
    /// the first. Bias, activation and loss work is not counted. For GFLOPS reporting.
    public var flopsPerRow: Double {
        layers.enumerated().reduce(0) { total, entry in
            let products = entry.offset == 0 ? 2.0 : 3.0
            return total + products * 2 * Double(entry.element.inputWidth * entry.element.outputWidth)
        }
    }

    /// Throws unless every label suits the model: an integer class index in `0..<outputCount` for softmax and mlp,
    /// a finite number for linear. Call once on loaded data: the compute calls treat a bad label as a programmer error.
    public func validate(labels: UnsafeBufferPointer<Float>) throws(ModelError) {
        for (row, label) in labels.enumerated() {
            if usesCrossEntropy {
                guard label >= 0, label < Float(spec.outputCount), label == label.rounded(.towardZero) else {
                    throw ModelError(
                        "row \(row): label \(label) is not a class index in 0..<\(spec.outputCount) for model \(spec.kind)"
                    )
                }
            } else if !label.isFinite {
                throw ModelError("row \(row): regression target \(label) is not finite")
            }
        }
    }

    /// The mean loss over the first `rows` rows and its gradient with respect to the flat parameter vector.
    ///
    /// `features` holds at least `rows * inputCount` floats (row-major), `labels` at least `rows`; `1 <= rows <=
    /// maxBatch`. The whole of `gradient` (`parameterCount` floats) is overwritten. Labels must pass
    /// `validate(labels:)`. Allocates nothing.
    public func lossAndGradient(
        parameters: UnsafeBufferPointer<Float>, features: UnsafeBufferPointer<Float>,
        labels: UnsafeBufferPointer<Float>, rows: Int, gradient: UnsafeMutableBufferPointer<Float>
    ) -> Double {
        lossAndGradient(
            parameters: parameters, features: features, labels: labels, rows: rows, gradient: gradient,
            ready: { _, _ in })
    }

    /// `lossAndGradient`, calling `ready(start, loss)` once each layer's backward step is done, from the last
    /// layer's weight offset down to `ready(0, loss)` (the promise is `TrainableModel`'s).
    public func lossAndGradient(
        parameters: UnsafeBufferPointer<Float>, features: UnsafeBufferPointer<Float>,
        labels: UnsafeBufferPointer<Float>, rows: Int, gradient: UnsafeMutableBufferPointer<Float>,
        ready: (_ start: Int, _ loss: Double) -> Void
    ) -> Double {
        precondition(rows >= 1 && rows <= maxBatch, "rows \(rows) outside 1...\(maxBatch)")
        precondition(
            gradient.count == parameterCount, "gradient of \(gradient.count) floats, expected \(parameterCount)")
        checkSizes(parameters: parameters, features: features, labels: labels, rows: rows)
        guard let theta = parameters.baseAddress, let input = features.baseAddress,
            let gradientBase = gradient.baseAddress
        else { preconditionFailure("lossAndGradient: empty buffer") }
        forward(theta: theta, input: input, rows: rows)
        let loss = outputLossAndDelta(labels: labels, rows: rows, scale: 1 / Float(rows), computeDelta: true)
        let meanLoss = loss / Double(rows)
        backward(theta: theta, input: input, rows: rows, gradient: gradientBase) { ready($0, meanLoss) }
        return meanLoss
    }

    /// The mean loss and the accuracy over `rows` rows (processed in chunks of `maxBatch`; any `rows >= 0`).
    ///
    /// Accuracy is the fraction of rows whose largest output (the first, on ties) is the label; it is always 0 for
    /// linear models, which have no classes. Zero rows give `(0, 0)`. Allocates nothing.
    public func evaluate(
        parameters: UnsafeBufferPointer<Float>, features: UnsafeBufferPointer<Float>,
        labels: UnsafeBufferPointer<Float>,
        rows: Int
    ) -> (loss: Double, accuracy: Double) {
        precondition(rows >= 0, "negative row count \(rows)")
        guard rows > 0 else { return (0, 0) }
        checkSizes(parameters: parameters, features: features, labels: labels, rows: rows)
        guard let theta = parameters.baseAddress, let base = features.baseAddress else {
            preconditionFailure("evaluate: empty buffer")
        }
        var lossSum = 0.0
        var correct = 0
        var start = 0
        while start < rows {
            let chunk = min(maxBatch, rows - start)
            let chunkLabels = UnsafeBufferPointer(rebasing: labels[start..<(start + chunk)])
            forward(theta: theta, input: base + start * spec.inputCount, rows: chunk)
            if usesCrossEntropy, let last = layers.last {
                correct += SoftmaxCrossEntropy.countCorrect(
                    logits: last.activations, labels: chunkLabels, rows: chunk, classes: last.outputWidth)
            }
            lossSum += outputLossAndDelta(labels: chunkLabels, rows: chunk, scale: 0, computeDelta: false)
            start += chunk
        }
        return (lossSum / Double(rows), Double(correct) / Double(rows))
    }

    private func checkSizes(
        parameters: UnsafeBufferPointer<Float>, features: UnsafeBufferPointer<Float>,
        labels: UnsafeBufferPointer<Float>, rows: Int
    ) {
        precondition(parameters.count == parameterCount, "\(parameters.count) parameters, expected \(parameterCount)")
        precondition(features.count >= rows * spec.inputCount, "\(features.count) features for \(rows) rows")
        precondition(labels.count >= rows, "\(labels.count) labels for \(rows) rows")
    }

    /// Fills every layer's `activations` for `rows` rows; the last layer's hold the logits (or predictions).
    private func forward(theta: UnsafePointer<Float>, input: UnsafePointer<Float>, rows: Int) {
        var layerInput = input
        for (index, layer) in layers.enumerated() {
            let width = layer.outputWidth
            for row in 0..<rows {
                BLAS.scopy(count: width, x: theta + layer.biasOffset, y: layer.activations + row * width)
            }
            BLAS.sgemm(
                transposeA: false, transposeB: false, m: rows, n: width, k: layer.inputWidth, alpha: 1,
                a: layerInput, lda: layer.inputWidth, b: theta + layer.weightOffset, ldb: width, beta: 1,
                c: layer.activations, ldc: width)
            if index < layers.count - 1 {
                // ReLU as a select, not a branch: the compiler vectorises it, and about half the activations are
                // negative, which a branch mispredicts. Same values (a NaN and -0 stay as they are).
                let values = layer.activations
                for i in 0..<(rows * width) {
                    let value = values[i]
                    values[i] = value < 0 ? 0 : value
                }
            }
            layerInput = UnsafePointer(layer.activations)
        }
    }

    /// The summed (not averaged) loss of `rows` rows from the last layer's outputs; with `computeDelta`, also writes
    /// `scale` times the gradient of the summed loss with respect to the outputs into the last layer's `deltas`.
    private func outputLossAndDelta(
        labels: UnsafeBufferPointer<Float>, rows: Int, scale: Float, computeDelta: Bool
    ) -> Double {
        guard let last = layers.last else { return 0 }
        if usesCrossEntropy {
            return SoftmaxCrossEntropy.lossAndDelta(
                logits: last.activations, labels: labels, rows: rows, classes: last.outputWidth, scale: scale,
                deltas: computeDelta ? last.deltas : nil)
        }
        var lossSum = 0.0
        for row in 0..<rows {
            let error = last.activations[row * last.outputWidth] - labels[row]
            lossSum += 0.5 * Double(error) * Double(error)
            if computeDelta {
                last.deltas[row * last.outputWidth] = scale * error
            }
        }
        return lossSum
    }

    /// Back-propagates the last layer's `deltas` and writes every weight and bias gradient, calling `layerDone`
    /// with a layer's weight offset once its gradients are written and its weights no longer needed.
    private func backward(
        theta: UnsafePointer<Float>, input: UnsafePointer<Float>, rows: Int, gradient: UnsafeMutablePointer<Float>,
        layerDone: (Int) -> Void
    ) {
        for index in stride(from: layers.count - 1, through: 0, by: -1) {
            let layer = layers[index]
            let width = layer.outputWidth
            let layerInput = index == 0 ? input : UnsafePointer(layers[index - 1].activations)
            // dW = Aᵀ · dZ  ([in][rows] · [rows][out])
            BLAS.sgemm(
                transposeA: true, transposeB: false, m: layer.inputWidth, n: width, k: rows, alpha: 1,
                a: layerInput, lda: layer.inputWidth, b: layer.deltas, ldb: width, beta: 0,
                c: gradient + layer.weightOffset, ldc: width)
            // db = column sums of dZ = ones[1][rows] · dZ
            BLAS.sgemm(
                transposeA: false, transposeB: false, m: 1, n: width, k: rows, alpha: 1, a: ones, lda: rows,
                b: layer.deltas, ldb: width, beta: 0, c: gradient + layer.biasOffset, ldc: width)
            guard index > 0 else {
                layerDone(layer.weightOffset)
                continue
            }
            // dA = dZ · Wᵀ ([rows][out] · [out][in]), then the ReLU mask of the previous layer's output.
            let previous = layers[index - 1]
            BLAS.sgemm(
                transposeA: false, transposeB: true, m: rows, n: layer.inputWidth, k: width, alpha: 1,
                a: layer.deltas, lda: width, b: theta + layer.weightOffset, ldb: width, beta: 0,
                c: previous.deltas, ldc: layer.inputWidth)
            let (deltas, activations) = (previous.deltas, UnsafePointer(previous.activations))
            for i in 0..<(rows * layer.inputWidth) {
                let delta = deltas[i]
                deltas[i] = activations[i] <= 0 ? 0 : delta  // a select, as in `forward`
            }
            layerDone(layer.weightOffset)
        }
    }
}
