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
    /// The images the convolution blocks process at a time (see `init`).
    public let chunkRows: Int
    private let layout: TensorLayout

    // Whole-batch state kept from the forward pass for the backward pass.
    private let pool1, pool2, act3, logits, dPool2, dAct3: Workspace
    private let codes1, codes2: UnsafeMutablePointer<UInt8>
    // Per-chunk scratch: im2col matrices, convolution outputs (reused for their gradients) and the first pool's
    // gradient.
    private let col1, act1, col2, act2, dPool1: Workspace
    private let ones: Workspace

    /// A network with workspaces for up to `maxBatch` rows.
    ///
    /// The convolution blocks run `chunkRows` images at a time, forward and backward: im2col, the product and the
    /// pooling of one chunk stay in the core's cache, where sgemm runs near its peak, instead of streaming
    /// megabytes of im2col matrix through memory. The backward pass recomputes each chunk's im2col (cheap) rather
    /// than keeping the whole batch's. The default sizes a chunk's second im2col matrix to at most about 384 KiB.
    public init(geometry: Geometry, seed: UInt64, maxBatch: Int, chunkRows: Int? = nil) {
        precondition(maxBatch >= 1, "maxBatch must be at least 1, got \(maxBatch)")
        self.geometry = geometry
        self.seed = seed
        self.maxBatch = maxBatch
        let g = geometry
        let col2BytesPerImage = g.conv2Height * g.conv2Width * 9 * g.channels1 * MemoryLayout<Float>.size
        let chunk = min(max(chunkRows ?? (384 * 1024 / max(col2BytesPerImage, 1)), 1), maxBatch)
        self.chunkRows = chunk
        layout = TensorLayout(geometry.parameters(seed: seed))
        let pooled1 = g.pool1Height * g.pool1Width * g.channels1
        pool1 = Workspace(maxBatch * pooled1)
        codes1 = .allocate(capacity: maxBatch * pooled1)
        codes1.initialize(repeating: 0, count: maxBatch * pooled1)
        pool2 = Workspace(maxBatch * g.flattened)
        dPool2 = Workspace(maxBatch * g.flattened)
        codes2 = .allocate(capacity: maxBatch * g.flattened)
        codes2.initialize(repeating: 0, count: maxBatch * g.flattened)
        act3 = Workspace(maxBatch * g.hidden)
        dAct3 = Workspace(maxBatch * g.hidden)
        logits = Workspace(maxBatch * g.classes)
        let pixels1 = chunk * g.conv1Height * g.conv1Width
        let pixels2 = chunk * g.conv2Height * g.conv2Width
        col1 = Workspace(pixels1 * 9 * g.channels)
        act1 = Workspace(pixels1 * g.channels1)
        col2 = Workspace(pixels2 * 9 * g.channels1)
        act2 = Workspace(pixels2 * g.channels2)
        dPool1 = Workspace(chunk * pooled1)
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
        lossAndGradient(parameters: parameters, batch: batch, gradient: gradient, ready: { _, _ in })
    }

    /// `lossAndGradient`, reporting the dense layers' gradients as soon as each is finished (fc2, then fc1), before
    /// the convolutions' backward pass, which holds most of the work; then `ready(0, loss)`.
    public func lossAndGradient(
        parameters: ParameterValues, batch: Batch, gradient: GradientValues,
        ready: (_ start: Int, _ loss: Double) -> Void
    ) -> Double {
        precondition(batch.rows >= 1 && batch.rows <= maxBatch, "rows \(batch.rows) outside 1...\(maxBatch)")
        precondition(batch.featureCount == geometry.inputCount, "\(batch.featureCount) features per row")
        let rows = batch.rows
        forward(parameters, batch)
        let loss = SoftmaxCrossEntropy.lossAndDelta(
            logits: logits.base, labels: batch.labels, rows: rows, classes: geometry.classes, scale: 1 / Float(rows),
            deltas: logits.base)
        let meanLoss = loss / Double(rows)
        backward(parameters, batch, gradient) { ready($0, meanLoss) }
        return meanLoss
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
                deltas: nil)
            start += chunk.rows
        }
        return Evaluation(loss: lossSum / Double(batch.rows), accuracy: Double(correct) / Double(batch.rows))
    }

    // MARK: Forward

    private func forward(_ p: ParameterValues, _ batch: Batch) {
        let g = geometry
        guard let input = batch.features.baseAddress else { preconditionFailure("empty batch") }
        let pooled1 = g.pool1Height * g.pool1Width * g.channels1
        for start in stride(from: 0, to: batch.rows, by: chunkRows) {
            let count = min(chunkRows, batch.rows - start)
            // Block 1: im2col, sgemm, then pool with the bias and ReLU applied to the pooled values only (the
            // maximum of x + b is the maximum of x, plus b; ReLU commutes with the maximum).
            Self.im2col(
                input + start * g.inputCount, rows: count, height: g.height, width: g.width, channels: g.channels,
                into: col1.base)
            Self.multiply(
                col1.base, pixels: count * g.conv1Height * g.conv1Width, depth: 9 * g.channels, by: p[0],
                outChannels: g.channels1, into: act1.base)
            Self.maxPool(
                act1.base, rows: count, height: g.conv1Height, width: g.conv1Width, channels: g.channels1,
                bias: p[1], into: pool1.base + start * pooled1, codes: codes1 + start * pooled1)
            // Block 2.
            Self.im2col(
                pool1.base + start * pooled1, rows: count, height: g.pool1Height, width: g.pool1Width,
                channels: g.channels1, into: col2.base)
            Self.multiply(
                col2.base, pixels: count * g.conv2Height * g.conv2Width, depth: 9 * g.channels1, by: p[2],
                outChannels: g.channels2, into: act2.base)
            Self.maxPool(
                act2.base, rows: count, height: g.conv2Height, width: g.conv2Width, channels: g.channels2,
                bias: p[3], into: pool2.base + start * g.flattened, codes: codes2 + start * g.flattened)
        }
        // Dense layers over the whole batch: the ReLU hidden layer, then the logits.
        let rows = batch.rows
        Self.multiply(pool2.base, pixels: rows, depth: g.flattened, by: p[4], outChannels: g.hidden, into: act3.base)
        Self.addBias(p[5], to: act3.base, rows: rows, relu: true)
        Self.multiply(act3.base, pixels: rows, depth: g.hidden, by: p[6], outChannels: g.classes, into: logits.base)
        Self.addBias(p[7], to: logits.base, rows: rows, relu: false)
    }

    /// `out[pixels][outChannels] = input[pixels][depth] · weight[depth][outChannels]`.
    private static func multiply(
        _ input: UnsafePointer<Float>, pixels: Int, depth: Int, by weight: UnsafeBufferPointer<Float>,
        outChannels: Int, into out: UnsafeMutablePointer<Float>
    ) {
        BLAS.sgemm(
            transposeA: false, transposeB: false, m: pixels, n: outChannels, k: depth, alpha: 1, a: input, lda: depth,
            b: weight.baseAddress!, ldb: outChannels, beta: 0, c: out, ldc: outChannels)
    }

    /// Adds `bias` to every row of `values` (`rows x bias.count`), then ReLU when asked.
    private static func addBias(
        _ bias: UnsafeBufferPointer<Float>, to values: UnsafeMutablePointer<Float>, rows: Int, relu: Bool
    ) {
        let width = bias.count
        for row in 0..<rows {
            let outputs = values + row * width
            if relu {
                for c in 0..<width { outputs[c] = max(outputs[c] + bias[c], 0) }
            } else {
                for c in 0..<width { outputs[c] += bias[c] }
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
                        let source = image + ((y + ky) * width + x) * channels
                        if run <= 8 {
                            // Single-channel images: a call to memmove per 3 floats would cost more than the copy.
                            for i in 0..<run { destination[i] = source[i] }
                        } else {
                            destination.update(from: source, count: run)
                        }
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

    /// 2x2 stride-2 max-pool (floor), channels-last, of a convolution's output before its bias and ReLU: writes
    /// `max(maximum + bias, 0)` per channel, which equals pooling `max(x + bias, 0)`. `codes` records which of the
    /// window's four positions (0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right) held each maximum (the
    /// first on ties).
    static func maxPool(
        _ input: UnsafePointer<Float>, rows: Int, height: Int, width: Int, channels: Int,
        bias: UnsafeBufferPointer<Float>, into out: UnsafeMutablePointer<Float>, codes: UnsafeMutablePointer<UInt8>
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
                        pooled[c] = max(maximum + bias[c], 0)
                        code[c] = which
                    }
                    o += channels
                }
            }
        }
    }

    /// The adjoint of `maxPool` and its ReLU: routes each pooled gradient to its maximum's position when the
    /// pooled value is positive (zero everywhere else), and adds the routed values per channel onto
    /// `biasGradient` (a convolution's bias gradient is its output gradient summed over pixels), which it zeroes
    /// first when `resetBias`.
    static func unpool(
        _ pooledGradient: UnsafePointer<Float>, pooled: UnsafePointer<Float>, codes: UnsafePointer<UInt8>, rows: Int,
        height: Int, width: Int, channels: Int, into out: UnsafeMutablePointer<Float>,
        biasGradient: UnsafeMutablePointer<Float>, resetBias: Bool
    ) {
        let (outHeight, outWidth) = (height / 2, width / 2)
        if height % 2 == 1 || width % 2 == 1 {
            // The dropped last row or column gets no gradient; the windows below overwrite everything else.
            out.update(repeating: 0, count: rows * height * width * channels)
        }
        if resetBias { biasGradient.update(repeating: 0, count: channels) }
        var o = 0
        for b in 0..<rows {
            for y in 0..<outHeight {
                for x in 0..<outWidth {
                    let q0 = out + ((b * height + 2 * y) * width + 2 * x) * channels
                    let (q1, q2) = (q0 + channels, q0 + width * channels)
                    let q3 = q2 + channels
                    let (gradient, value, code) = (pooledGradient + o, pooled + o, codes + o)
                    for c in 0..<channels {
                        // Unconditional loads, so that the compiler can vectorise the selects.
                        let (incoming, which) = (gradient[c], code[c])
                        let routed = value[c] > 0 ? incoming : 0
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

    /// The backward pass; `tensorsDone(start)` once the gradients from flat offset `start` on are final and the
    /// weights from there on no longer read.
    private func backward(
        _ p: ParameterValues, _ batch: Batch, _ gradient: GradientValues, tensorsDone: (Int) -> Void
    ) {
        let g = geometry
        let offset = { (tensor: Int) in gradient[tensor].baseAddress! - gradient.flat.baseAddress! }
        let rows = batch.rows
        guard let input = batch.features.baseAddress else { preconditionFailure("empty batch") }
        // fc2 (the logits' deltas are in `logits`), then fc1 through its ReLU.
        denseBackward(
            input: act3.base, delta: logits.base, rows: rows, inWidth: g.hidden, outWidth: g.classes, weight: p[6],
            weightGradient: gradient[6], biasGradient: gradient[7], inputDelta: dAct3.base, inputActivation: act3.base)
        tensorsDone(offset(6))
        denseBackward(
            input: pool2.base, delta: dAct3.base, rows: rows, inWidth: g.flattened, outWidth: g.hidden, weight: p[4],
            weightGradient: gradient[4], biasGradient: gradient[5], inputDelta: dPool2.base, inputActivation: nil)
        tensorsDone(offset(4))
        // The convolution blocks chunk by chunk; the weight and bias gradients accumulate over the chunks in image
        // order (the bias sums in exactly the whole batch's order).
        let pooled1 = g.pool1Height * g.pool1Width * g.channels1
        for start in stride(from: 0, to: rows, by: chunkRows) {
            let (count, first) = (min(chunkRows, rows - start), start == 0)
            // Block 2: un-pool onto the convolution output's gradient (through the ReLU's mask, summing the bias
            // gradient), the weight gradient from the recomputed im2col, then the im2col gradient (into the
            // im2col matrix's own space) folded back onto the first pool's output.
            let pixels2 = count * g.conv2Height * g.conv2Width
            Self.unpool(
                dPool2.base + start * g.flattened, pooled: pool2.base + start * g.flattened,
                codes: codes2 + start * g.flattened, rows: count, height: g.conv2Height, width: g.conv2Width,
                channels: g.channels2, into: act2.base, biasGradient: gradient[3].baseAddress!, resetBias: first)
            Self.im2col(
                pool1.base + start * pooled1, rows: count, height: g.pool1Height, width: g.pool1Width,
                channels: g.channels1, into: col2.base)
            Self.weightGradient(
                col2.base, delta: act2.base, pixels: pixels2, depth: 9 * g.channels1, outChannels: g.channels2,
                into: gradient[2], accumulate: !first)
            BLAS.sgemm(
                transposeA: false, transposeB: true, m: pixels2, n: 9 * g.channels1, k: g.channels2, alpha: 1,
                a: act2.base, lda: g.channels2, b: p[2].baseAddress!, ldb: g.channels2, beta: 0, c: col2.base,
                ldc: 9 * g.channels1)
            Self.col2im(
                col2.base, rows: count, height: g.pool1Height, width: g.pool1Width, channels: g.channels1,
                into: dPool1.base)
            // Block 1: the same; the input needs no gradient.
            Self.unpool(
                dPool1.base, pooled: pool1.base + start * pooled1, codes: codes1 + start * pooled1, rows: count,
                height: g.conv1Height, width: g.conv1Width, channels: g.channels1, into: act1.base,
                biasGradient: gradient[1].baseAddress!, resetBias: first)
            Self.im2col(
                input + start * g.inputCount, rows: count, height: g.height, width: g.width, channels: g.channels,
                into: col1.base)
            Self.weightGradient(
                col1.base, delta: act1.base, pixels: count * g.conv1Height * g.conv1Width, depth: 9 * g.channels,
                outChannels: g.channels1, into: gradient[0], accumulate: !first)
        }
        tensorsDone(0)
    }

    /// `weightGradient (+)= colᵀ · delta`: overwritten, or added to when `accumulate`.
    private static func weightGradient(
        _ col: UnsafePointer<Float>, delta: UnsafePointer<Float>, pixels: Int, depth: Int, outChannels: Int,
        into weightGradient: UnsafeMutableBufferPointer<Float>, accumulate: Bool
    ) {
        BLAS.sgemm(
            transposeA: true, transposeB: false, m: depth, n: outChannels, k: pixels, alpha: 1, a: col, lda: depth,
            b: delta, ldb: outChannels, beta: accumulate ? 1 : 0, c: weightGradient.baseAddress!, ldc: outChannels)
    }

    /// `dW = inputᵀ · delta`, `db` = column sums of `delta`, and `inputDelta = delta · Wᵀ`, zeroed where
    /// `inputActivation` (a ReLU output), when given, is not positive.
    private func denseBackward(
        input: UnsafePointer<Float>, delta: UnsafePointer<Float>, rows: Int, inWidth: Int, outWidth: Int,
        weight: UnsafeBufferPointer<Float>, weightGradient: UnsafeMutableBufferPointer<Float>,
        biasGradient: UnsafeMutableBufferPointer<Float>, inputDelta: UnsafeMutablePointer<Float>,
        inputActivation: UnsafePointer<Float>?
    ) {
        Self.weightGradient(
            input, delta: delta, pixels: rows, depth: inWidth, outChannels: outWidth, into: weightGradient,
            accumulate: false)
        BLAS.sgemm(
            transposeA: false, transposeB: false, m: 1, n: outWidth, k: rows, alpha: 1, a: ones.base, lda: rows,
            b: delta, ldb: outWidth, beta: 0, c: biasGradient.baseAddress!, ldc: outWidth)
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
