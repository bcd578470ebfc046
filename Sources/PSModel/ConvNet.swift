import Foundation
import PSMath

/// The built-in convolutional network `cnn:C1,C2,H`: two blocks of 3x3 valid convolution + ReLU + 2x2 max-pool,
/// a ReLU dense layer and a softmax cross-entropy output, forward and backward through im2col and `BLAS.sgemm`.
///
/// Activations are channels-last (`[rows][height][width][channels]`), so one im2col row is three contiguous runs
/// of `3 * channels` floats. A convolution's weight is stored in its im2col form, `[3 * 3 * inChannels][outChannels]`
/// with rows ordered (ky, kx, inChannel); pooling floors odd sizes (the last row or column is dropped, as
/// PyTorch's `MaxPool2d(2)`); the dense input is the second pool's output flattened in (y, x, channel) order.
///
/// Not thread-safe (one per worker thread); `lossAndGradient` and `evaluate` allocate nothing.
///
/// ```swift
/// let geometry = try ConvNet.Geometry(kind: .cnn(channels1: 32, channels2: 64, hidden: 128),
///                                     inputCount: 784, classCount: 10)   // 28x28x1 images
/// let model = ConvNet(geometry: geometry, seed: 0, maxBatch: 64)
/// ```
public final class ConvNet: TrainableModel {
    /// The sizes of every stage, derived from the image and the layer widths.
    ///
    /// ```swift
    /// let geometry = try ConvNet.Geometry(
    ///     height: 28, width: 28, channels: 1, channels1: 32, channels2: 64, hidden: 128, classes: 10)
    /// geometry.flattened          // 1600: 5 x 5 x 64 after the second pool
    /// geometry.parameters(seed: 0).map(\.shape)   // [[9, 32], [32], [288, 64], [64], [1600, 128], ...]
    /// ```
    public struct Geometry: Sendable, Equatable {
        /// Input image height, width and channels.
        public let height: Int, width: Int, channels: Int
        /// Output channels of the two convolutions and the hidden dense width.
        public let channels1: Int, channels2: Int, hidden: Int
        /// Output classes.
        public let classes: Int

        /// A network for `height x width x channels` images.
        public init(
            height: Int, width: Int, channels: Int, channels1: Int, channels2: Int, hidden: Int, classes: Int
        ) throws(ModelError) {
            (self.height, self.width, self.channels) = (height, width, channels)
            (self.channels1, self.channels2, self.hidden, self.classes) = (channels1, channels2, hidden, classes)
            guard [channels, channels1, channels2, hidden, classes].allSatisfy({ $0 >= 1 }) else {
                throw ModelError("cnn: channels, widths and classes must be positive")
            }
            guard pool2Height >= 1, pool2Width >= 1 else {
                throw ModelError(
                    "cnn: a \(height)x\(width) image is too small for two 3x3 convolutions and 2x2 pools "
                        + "(at least 10x10)")
            }
        }

        /// The network for `kind` (a `.cnn`) on square single-channel images of `inputCount` pixels.
        public init(kind: ModelKind, inputCount: Int, classCount: Int) throws(ModelError) {
            guard case .cnn(let channels1, let channels2, let hidden) = kind else {
                throw ModelError("\(kind) is not a convolutional network")
            }
            let side = Int(Double(inputCount).squareRoot().rounded())
            guard side * side == inputCount else {
                throw ModelError(
                    "model \(kind) needs square single-channel images, but the data has \(inputCount) features "
                        + "(not a square number)")
            }
            try self.init(
                height: side, width: side, channels: 1, channels1: channels1, channels2: channels2, hidden: hidden,
                classes: classCount)
        }

        var conv1Height: Int { height - 2 }
        var conv1Width: Int { width - 2 }
        var pool1Height: Int { conv1Height / 2 }
        var pool1Width: Int { conv1Width / 2 }
        var conv2Height: Int { pool1Height - 2 }
        var conv2Width: Int { pool1Width - 2 }
        var pool2Height: Int { max(conv2Height, 0) / 2 }
        var pool2Width: Int { max(conv2Width, 0) / 2 }
        /// Pixels per row.
        public var inputCount: Int { height * width * channels }
        /// The dense layer's input width: the second pool's output, flattened.
        public var flattened: Int { pool2Height * pool2Width * channels2 }

        /// The tensors: `conv1.weight [9*channels][C1]`, `conv1.bias`, `conv2.weight [9*C1][C2]`, `conv2.bias`,
        /// `fc1.weight [flattened][H]`, `fc1.bias`, `fc2.weight [H][classes]`, `fc2.bias`; weight `l` (1-based)
        /// Glorot-uniform with seed `seed * 1000 + l` (the im2col shape gives fan-in `9 * inChannels`), biases 0.
        public func parameters(seed: UInt64) -> [ParameterSpec] {
            let shapes = [
                ("conv1", [9 * channels, channels1]), ("conv2", [9 * channels1, channels2]),
                ("fc1", [flattened, hidden]), ("fc2", [hidden, classes]),
            ]
            return shapes.enumerated().flatMap { layer, entry in
                [
                    ParameterSpec(
                        name: entry.0 + ".weight", shape: entry.1,
                        initializer: .glorotUniform(seed: seed &* 1000 &+ UInt64(layer + 1))),
                    ParameterSpec(name: entry.0 + ".bias", shape: [entry.1[1]], initializer: .zeros),
                ]
            }
        }

        /// Multiply-adds times two per row of forward and backward: each layer's forward product and weight
        /// gradient, and the input gradient of every layer but the first. Pooling, im2col and the loss are not
        /// counted. For GFLOPS reporting.
        public var flopsPerRow: Double {
            let conv1 = Double(conv1Height * conv1Width * 9 * channels * channels1)
            let conv2 = Double(conv2Height * conv2Width * 9 * channels1 * channels2)
            let dense = Double(flattened * hidden + hidden * classes)
            return 2 * (2 * conv1 + 3 * conv2 + 3 * dense)
        }
    }

    /// The network's sizes.
    public let geometry: Geometry
    /// The seed of the initial weights.
    public let seed: UInt64
    /// The most rows one call computes at once (`evaluate` chunks larger inputs).
    public let maxBatch: Int
    private let layout: TensorLayout

    private let col1, act1, pool1, col2, act2, pool2, act3, logits: Workspace
    private let dAct1, dPool1, dCol2, dAct2, dPool2, dAct3: Workspace
    private let codes1, codes2: UnsafeMutablePointer<UInt8>
    private let ones: Workspace

    /// A network with workspaces for up to `maxBatch` rows.
    public init(geometry: Geometry, seed: UInt64, maxBatch: Int) {
        precondition(maxBatch >= 1, "maxBatch must be at least 1, got \(maxBatch)")
        self.geometry = geometry
        self.seed = seed
        self.maxBatch = maxBatch
        layout = TensorLayout(geometry.parameters(seed: seed))
        let g = geometry
        let pixels1 = maxBatch * g.conv1Height * g.conv1Width
        let pixels2 = maxBatch * g.conv2Height * g.conv2Width
        let pooled1 = maxBatch * g.pool1Height * g.pool1Width * g.channels1
        col1 = Workspace(pixels1 * 9 * g.channels)
        act1 = Workspace(pixels1 * g.channels1)
        dAct1 = Workspace(pixels1 * g.channels1)
        pool1 = Workspace(pooled1)
        dPool1 = Workspace(pooled1)
        col2 = Workspace(pixels2 * 9 * g.channels1)
        dCol2 = Workspace(pixels2 * 9 * g.channels1)
        act2 = Workspace(pixels2 * g.channels2)
        dAct2 = Workspace(pixels2 * g.channels2)
        pool2 = Workspace(maxBatch * g.flattened)
        dPool2 = Workspace(maxBatch * g.flattened)
        act3 = Workspace(maxBatch * g.hidden)
        dAct3 = Workspace(maxBatch * g.hidden)
        logits = Workspace(maxBatch * g.classes)
        codes1 = .allocate(capacity: pooled1)
        codes1.initialize(repeating: 0, count: pooled1)
        codes2 = .allocate(capacity: maxBatch * g.flattened)
        codes2.initialize(repeating: 0, count: maxBatch * g.flattened)
        ones = Workspace(maxBatch, value: 1)
    }

    deinit {
        codes1.deallocate()
        codes2.deallocate()
    }

    /// The tensors of `geometry.parameters(seed:)`.
    public var parameters: [ParameterSpec] { geometry.parameters(seed: seed) }

    /// Throws unless every label is a class index below `geometry.classes`.
    public func validate(labels: UnsafeBufferPointer<Float>) throws(ModelError) {
        for (row, label) in labels.enumerated() {
            guard label >= 0, label < Float(geometry.classes), label == label.rounded(.towardZero) else {
                throw ModelError("row \(row): label \(label) is not a class index in 0..<\(geometry.classes) for cnn")
            }
        }
    }

    /// Mean softmax cross-entropy over the batch (at most `maxBatch` rows) and its gradient.
    public func lossAndGradient(parameters: ParameterValues, batch: Batch, gradient: GradientValues) -> Double {
        precondition(batch.rows >= 1 && batch.rows <= maxBatch, "rows \(batch.rows) outside 1...\(maxBatch)")
        precondition(batch.featureCount == geometry.inputCount, "\(batch.featureCount) features per row")
        let rows = batch.rows
        forward(parameters, batch)
        let loss = SoftmaxCrossEntropy.lossAndDelta(
            logits: logits.base, labels: batch.labels, rows: rows, classes: geometry.classes, scale: 1 / Float(rows),
            computeDelta: true)
        backward(parameters, batch, gradient)
        return loss / Double(rows)
    }

    /// Mean loss and accuracy over any number of rows (in chunks of `maxBatch`).
    public func evaluate(parameters: ParameterValues, batch: Batch) -> Evaluation? {
        guard batch.rows > 0 else { return Evaluation(loss: 0, accuracy: 0) }
        var lossSum = 0.0
        var correct = 0
        var start = 0
        while start < batch.rows {
            let chunk = batch.slice(start: start, count: min(maxBatch, batch.rows - start))
            forward(parameters, chunk)
            correct += SoftmaxCrossEntropy.countCorrect(
                logits: logits.base, labels: chunk.labels, rows: chunk.rows, classes: geometry.classes)
            lossSum += SoftmaxCrossEntropy.lossAndDelta(
                logits: logits.base, labels: chunk.labels, rows: chunk.rows, classes: geometry.classes, scale: 0,
                computeDelta: false)
            start += chunk.rows
        }
        return Evaluation(loss: lossSum / Double(batch.rows), accuracy: Double(correct) / Double(batch.rows))
    }

    // MARK: Forward

    private func forward(_ p: ParameterValues, _ batch: Batch) {
        let g = geometry
        let rows = batch.rows
        guard let input = batch.features.baseAddress else { preconditionFailure("empty batch") }
        // Block 1: im2col, sgemm, bias + ReLU, pool.
        let pixels1 = rows * g.conv1Height * g.conv1Width
        Self.im2col(
            input, rows: rows, height: g.height, width: g.width, channels: g.channels, into: col1.base)
        Self.convolve(
            col: col1.base, pixels: pixels1, depth: 9 * g.channels, weight: p[0], bias: p[1], outChannels: g.channels1,
            into: act1.base)
        Self.maxPool(
            act1.base, rows: rows, height: g.conv1Height, width: g.conv1Width, channels: g.channels1, into: pool1.base,
            codes: codes1)
        // Block 2.
        let pixels2 = rows * g.conv2Height * g.conv2Width
        Self.im2col(
            pool1.base, rows: rows, height: g.pool1Height, width: g.pool1Width, channels: g.channels1,
            into: col2.base)
        Self.convolve(
            col: col2.base, pixels: pixels2, depth: 9 * g.channels1, weight: p[2], bias: p[3],
            outChannels: g.channels2, into: act2.base)
        Self.maxPool(
            act2.base, rows: rows, height: g.conv2Height, width: g.conv2Width, channels: g.channels2,
            into: pool2.base, codes: codes2)
        // Dense layers: the ReLU hidden layer, then the logits.
        Self.convolve(
            col: pool2.base, pixels: rows, depth: g.flattened, weight: p[4], bias: p[5], outChannels: g.hidden,
            into: act3.base)
        Self.convolve(
            col: act3.base, pixels: rows, depth: g.hidden, weight: p[6], bias: p[7], outChannels: g.classes,
            into: logits.base, relu: false)
    }

    /// `out[pixels][outChannels] = col[pixels][depth] · weight[depth][outChannels] + bias`, then ReLU unless told.
    private static func convolve(
        col: UnsafePointer<Float>, pixels: Int, depth: Int, weight: UnsafeBufferPointer<Float>,
        bias: UnsafeBufferPointer<Float>, outChannels: Int, into out: UnsafeMutablePointer<Float>, relu: Bool = true
    ) {
        BLAS.sgemm(
            transposeA: false, transposeB: false, m: pixels, n: outChannels, k: depth, alpha: 1, a: col, lda: depth,
            b: weight.baseAddress!, ldb: outChannels, beta: 0, c: out, ldc: outChannels)
        for pixel in 0..<pixels {
            let row = out + pixel * outChannels
            if relu {
                for c in 0..<outChannels { row[c] = max(row[c] + bias[c], 0) }
            } else {
                for c in 0..<outChannels { row[c] += bias[c] }
            }
        }
    }

    /// Channels-last 3x3 valid im2col: row (b, y, x) holds the 3x3 window at (y, x), ordered (ky, kx, channel);
    /// each ky is one contiguous run of `3 * channels` floats.
    static func im2col(
        _ input: UnsafePointer<Float>, rows: Int, height: Int, width: Int, channels: Int,
        into col: UnsafeMutablePointer<Float>
    ) {
        let (outHeight, outWidth, run) = (height - 2, width - 2, 3 * channels)
        var destination = col
        for b in 0..<rows {
            let image = input + b * height * width * channels
            for y in 0..<outHeight {
                for x in 0..<outWidth {
                    for ky in 0..<3 {
                        destination.update(from: image + ((y + ky) * width + x) * channels, count: run)
                        destination += run
                    }
                }
            }
        }
    }

    /// The adjoint of `im2col`: adds every window's gradient back onto the image gradient (overwritten first).
    static func col2im(
        _ col: UnsafePointer<Float>, rows: Int, height: Int, width: Int, channels: Int,
        into image: UnsafeMutablePointer<Float>
    ) {
        let (outHeight, outWidth, run) = (height - 2, width - 2, 3 * channels)
        image.update(repeating: 0, count: rows * height * width * channels)
        var source = col
        for b in 0..<rows {
            let base = image + b * height * width * channels
            for y in 0..<outHeight {
                for x in 0..<outWidth {
                    for ky in 0..<3 {
                        let target = base + ((y + ky) * width + x) * channels
                        for i in 0..<run { target[i] += source[i] }
                        source += run
                    }
                }
            }
        }
    }

    /// 2x2 stride-2 max-pool (floor), channels-last; `codes` records which of the window's four positions
    /// (0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right) held each maximum (the first on ties).
    static func maxPool(
        _ input: UnsafePointer<Float>, rows: Int, height: Int, width: Int, channels: Int,
        into out: UnsafeMutablePointer<Float>, codes: UnsafeMutablePointer<UInt8>
    ) {
        let (outHeight, outWidth) = (height / 2, width / 2)
        var o = 0
        for b in 0..<rows {
            for y in 0..<outHeight {
                for x in 0..<outWidth {
                    let p0 = input + ((b * height + 2 * y) * width + 2 * x) * channels
                    let (p1, p2) = (p0 + channels, p0 + width * channels)
                    let p3 = p2 + channels
                    let (pooled, code) = (out + o, codes + o)
                    for c in 0..<channels {
                        var maximum = p0[c]
                        var which: UInt8 = 0
                        if p1[c] > maximum { (maximum, which) = (p1[c], 1) }
                        if p2[c] > maximum { (maximum, which) = (p2[c], 2) }
                        if p3[c] > maximum { (maximum, which) = (p3[c], 3) }
                        pooled[c] = maximum
                        code[c] = which
                    }
                    o += channels
                }
            }
        }
    }

    /// The adjoint of `maxPool` followed by the ReLU mask: routes each pooled gradient to its maximum's position
    /// when that maximum is positive (zero everywhere else), and adds the routed values per channel onto
    /// `biasGradient` (a convolution's bias gradient is its output gradient summed over pixels).
    static func unpool(
        _ pooledGradient: UnsafePointer<Float>, pooled: UnsafePointer<Float>, codes: UnsafePointer<UInt8>, rows: Int,
        height: Int, width: Int, channels: Int, into out: UnsafeMutablePointer<Float>,
        biasGradient: UnsafeMutablePointer<Float>
    ) {
        let (outHeight, outWidth) = (height / 2, width / 2)
        if height % 2 == 1 || width % 2 == 1 {
            // The dropped last row or column gets no gradient; the windows below overwrite everything else.
            out.update(repeating: 0, count: rows * height * width * channels)
        }
        biasGradient.update(repeating: 0, count: channels)
        var o = 0
        for b in 0..<rows {
            for y in 0..<outHeight {
                for x in 0..<outWidth {
                    let q0 = out + ((b * height + 2 * y) * width + 2 * x) * channels
                    let (q1, q2) = (q0 + channels, q0 + width * channels)
                    let q3 = q2 + channels
                    let (gradient, value, code) = (pooledGradient + o, pooled + o, codes + o)
                    for c in 0..<channels {
                        let routed = value[c] > 0 ? gradient[c] : 0
                        let which = code[c]
                        q0[c] = which == 0 ? routed : 0
                        q1[c] = which == 1 ? routed : 0
                        q2[c] = which == 2 ? routed : 0
                        q3[c] = which == 3 ? routed : 0
                        biasGradient[c] += routed
                    }
                    o += channels
                }
            }
        }
    }

    // MARK: Backward

    private func backward(_ p: ParameterValues, _ batch: Batch, _ gradient: GradientValues) {
        let g = geometry
        let rows = batch.rows
        // fc2 (the logits' deltas are in `logits`), then fc1 through its ReLU.
        denseBackward(
            input: act3.base, delta: logits.base, rows: rows, inWidth: g.hidden, outWidth: g.classes, weight: p[6],
            weightGradient: gradient[6], biasGradient: gradient[7], inputDelta: dAct3.base, inputActivation: act3.base)
        denseBackward(
            input: pool2.base, delta: dAct3.base, rows: rows, inWidth: g.flattened, outWidth: g.hidden, weight: p[4],
            weightGradient: gradient[4], biasGradient: gradient[5], inputDelta: dPool2.base, inputActivation: nil)
        // Block 2: un-pool onto the ReLU output's gradient through its mask (which also sums the bias
        // gradient), then the convolution.
        let pixels2 = rows * g.conv2Height * g.conv2Width
        Self.unpool(
            dPool2.base, pooled: pool2.base, codes: codes2, rows: rows, height: g.conv2Height, width: g.conv2Width,
            channels: g.channels2, into: dAct2.base, biasGradient: gradient[3].baseAddress!)
        denseBackward(
            input: col2.base, delta: dAct2.base, rows: pixels2, inWidth: 9 * g.channels1, outWidth: g.channels2,
            weight: p[2], weightGradient: gradient[2], biasGradient: nil, inputDelta: dCol2.base,
            inputActivation: nil)
        Self.col2im(
            dCol2.base, rows: rows, height: g.pool1Height, width: g.pool1Width, channels: g.channels1,
            into: dPool1.base)
        // Block 1: the input needs no gradient.
        let pixels1 = rows * g.conv1Height * g.conv1Width
        Self.unpool(
            dPool1.base, pooled: pool1.base, codes: codes1, rows: rows, height: g.conv1Height, width: g.conv1Width,
            channels: g.channels1, into: dAct1.base, biasGradient: gradient[1].baseAddress!)
        denseBackward(
            input: col1.base, delta: dAct1.base, rows: pixels1, inWidth: 9 * g.channels, outWidth: g.channels1,
            weight: p[0], weightGradient: gradient[0], biasGradient: nil, inputDelta: nil, inputActivation: nil)
    }

    /// `dW = inputᵀ · delta`, `db` = column sums of `delta` (when given), and (when asked)
    /// `inputDelta = delta · Wᵀ`, zeroed where `inputActivation` (a ReLU output) is not positive.
    private func denseBackward(
        input: UnsafePointer<Float>, delta: UnsafePointer<Float>, rows: Int, inWidth: Int, outWidth: Int,
        weight: UnsafeBufferPointer<Float>, weightGradient: UnsafeMutableBufferPointer<Float>,
        biasGradient: UnsafeMutableBufferPointer<Float>?, inputDelta: UnsafeMutablePointer<Float>?,
        inputActivation: UnsafePointer<Float>?
    ) {
        BLAS.sgemm(
            transposeA: true, transposeB: false, m: inWidth, n: outWidth, k: rows, alpha: 1, a: input, lda: inWidth,
            b: delta, ldb: outWidth, beta: 0, c: weightGradient.baseAddress!, ldc: outWidth)
        if let biasGradient {
            BLAS.sgemm(
                transposeA: false, transposeB: false, m: 1, n: outWidth, k: rows, alpha: 1, a: ones.base, lda: rows,
                b: delta, ldb: outWidth, beta: 0, c: biasGradient.baseAddress!, ldc: outWidth)
        }
        guard let inputDelta else { return }
        BLAS.sgemm(
            transposeA: false, transposeB: true, m: rows, n: inWidth, k: outWidth, alpha: 1, a: delta, lda: outWidth,
            b: weight.baseAddress!, ldb: outWidth, beta: 0, c: inputDelta, ldc: inWidth)
        if let inputActivation {
            for i in 0..<(rows * inWidth) where inputActivation[i] <= 0 { inputDelta[i] = 0 }
        }
    }
}

/// A zero-filled (or `value`-filled) float buffer owned by its model.
private final class Workspace {
    let base: UnsafeMutablePointer<Float>

    init(_ count: Int, value: Float = 0) {
        base = .allocate(capacity: max(count, 1))
        base.initialize(repeating: value, count: max(count, 1))
    }

    deinit { base.deallocate() }
}

/// The softmax cross-entropy output shared by the classifiers: stable (the row maximum is subtracted first).
enum SoftmaxCrossEntropy {
    /// The summed loss of `rows` rows of logits; with `computeDelta`, overwrites the logits with `scale` times
    /// the gradient of the summed loss.
    static func lossAndDelta(
        logits: UnsafeMutablePointer<Float>, labels: UnsafeBufferPointer<Float>, rows: Int, classes: Int, scale: Float,
        computeDelta: Bool
    ) -> Double {
        var lossSum = 0.0
        for row in 0..<rows {
            let outputs = logits + row * classes
            let label = Int(labels[row])
            precondition(label >= 0 && label < classes, "label \(labels[row]) outside 0..<\(classes)")
            var maximum = outputs[0]
            for j in 1..<classes where outputs[j] > maximum { maximum = outputs[j] }
            var sum = 0.0
            for j in 0..<classes { sum += exp(Double(outputs[j] - maximum)) }
            lossSum += log(sum) - Double(outputs[label] - maximum)
            if computeDelta {
                for j in 0..<classes {
                    let probability = Float(exp(Double(outputs[j] - maximum)) / sum)
                    outputs[j] = scale * (j == label ? probability - 1 : probability)
                }
            }
        }
        return lossSum
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
