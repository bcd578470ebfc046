import CFusedUpdate
import Foundation

/// The server-side optimizers (PyTorch's update rules).
///
/// ```swift
/// let kind = OptimizerKind(rawValue: "adam")   // .adam; nil for an unknown name
/// ```
public enum OptimizerKind: String, Sendable, Codable, CaseIterable {
    /// Plain SGD: `w -= lr * g`.
    case sgd
    /// Heavy-ball momentum, optionally Nesterov: `v = mu * v + g`, `w -= lr * (nesterov ? g + mu * v : v)`.
    case momentum
    /// Adam (Kingma & Ba) with bias correction.
    case adam
    /// AdaGrad: `s += g^2`, `w -= lr * g / (sqrt(s) + eps)`.
    case adagrad
}

/// A configuration value the optimizer refuses, naming the command-line flag that set it.
///
/// ```swift
/// var config = OptimizerConfig(kind: .adam, learningRate: 0.001)
/// config.beta1 = 1.5
/// try config.validate()   // throws: the error names beta1
/// ```
public struct OptimizerError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The flag or field at fault, such as `--lr` or `slots`.
    public let field: String
    /// A whole sentence naming the field and the offending value.
    public let message: String

    /// Creates an error about `field`.
    public init(field: String, message: String) {
        self.field = field
        self.message = message
    }

    public var description: String { message }
}

/// An optimizer and its hyper-parameters; validated once at start-up with `validate()`.
///
/// Command-line flags: `--optimizer`, `--lr`, `--momentum`, `--nesterov`, `--beta1`, `--beta2`, `--epsilon`,
/// `--weight-decay`, `--clip`. Fields an optimizer does not use are ignored by it (but still validated).
///
/// ```swift
/// var config = OptimizerConfig(kind: .momentum, learningRate: 0.05)
/// config.momentum = 0.9
/// config.nesterov = true
/// try config.validate()
/// ```
public struct OptimizerConfig: Sendable, Codable, Equatable {
    /// Which update rule.
    public var kind: OptimizerKind
    /// The learning rate `lr` (> 0).
    public var learningRate: Float
    /// The momentum coefficient `mu` in [0, 1) (momentum only; default 0.9).
    public var momentum: Float
    /// Nesterov momentum (momentum only; requires `momentum > 0`).
    public var nesterov: Bool
    /// Adam's first-moment decay in [0, 1) (default 0.9).
    public var beta1: Float
    /// Adam's second-moment decay in [0, 1) (default 0.999).
    public var beta2: Float
    /// The denominator term `eps` (> 0): default 1e-8 for Adam and 1e-10 for AdaGrad, PyTorch's defaults.
    public var epsilon: Float
    /// L2 weight decay (>= 0), added to the gradient as `g += weightDecay * w` (PyTorch's coupled form).
    public var weightDecay: Float
    /// When set (> 0), every gradient element is first clamped to `[-clipValue, clipValue]`.
    public var clipValue: Float?

    /// Creates a configuration; `epsilon` nil takes the kind's default (`defaultEpsilon(for:)`).
    public init(
        kind: OptimizerKind, learningRate: Float, momentum: Float = 0.9, nesterov: Bool = false, beta1: Float = 0.9,
        beta2: Float = 0.999, epsilon: Float? = nil, weightDecay: Float = 0, clipValue: Float? = nil
    ) {
        self.kind = kind
        self.learningRate = learningRate
        self.momentum = momentum
        self.nesterov = nesterov
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon ?? Self.defaultEpsilon(for: kind)
        self.weightDecay = weightDecay
        self.clipValue = clipValue
    }

    /// PyTorch's default `eps`: 1e-10 for AdaGrad, 1e-8 otherwise.
    public static func defaultEpsilon(for kind: OptimizerKind) -> Float {
        kind == .adagrad ? 1e-10 : 1e-8
    }

    private enum CodingKeys: String, CodingKey {
        case kind, learningRate, momentum, nesterov, beta1, beta2, epsilon, weightDecay, clipValue
    }

    /// Decodes a configuration; every field but `kind` and `learningRate` may be absent and takes its default.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.init(
            kind: try container.decode(OptimizerKind.self, forKey: .kind),
            learningRate: try container.decode(Float.self, forKey: .learningRate),
            momentum: try container.decodeIfPresent(Float.self, forKey: .momentum) ?? 0.9,
            nesterov: try container.decodeIfPresent(Bool.self, forKey: .nesterov) ?? false,
            beta1: try container.decodeIfPresent(Float.self, forKey: .beta1) ?? 0.9,
            beta2: try container.decodeIfPresent(Float.self, forKey: .beta2) ?? 0.999,
            epsilon: try container.decodeIfPresent(Float.self, forKey: .epsilon),
            weightDecay: try container.decodeIfPresent(Float.self, forKey: .weightDecay) ?? 0,
            clipValue: try container.decodeIfPresent(Float.self, forKey: .clipValue))
    }

    /// Checks every hyper-parameter; the error names the flag, e.g. "--lr must be a positive finite number, got -1".
    public func validate() throws(OptimizerError) {
        try Self.require(learningRate.isFinite && learningRate > 0, "--lr", "a positive finite number", learningRate)
        try Self.require(momentum.isFinite && momentum >= 0 && momentum < 1, "--momentum", "in [0, 1)", momentum)
        try Self.require(beta1.isFinite && beta1 >= 0 && beta1 < 1, "--beta1", "in [0, 1)", beta1)
        try Self.require(beta2.isFinite && beta2 >= 0 && beta2 < 1, "--beta2", "in [0, 1)", beta2)
        try Self.require(epsilon.isFinite && epsilon > 0, "--epsilon", "a positive finite number", epsilon)
        try Self.require(
            weightDecay.isFinite && weightDecay >= 0, "--weight-decay", "a non-negative finite number", weightDecay)
        if let clipValue {
            try Self.require(clipValue.isFinite && clipValue > 0, "--clip-value", "a positive finite number", clipValue)
        }
        if nesterov && kind != .momentum {
            throw OptimizerError(
                field: "--nesterov", message: "--nesterov requires --optimizer momentum, got --optimizer \(kind)")
        }
        if nesterov && momentum == 0 {
            throw OptimizerError(field: "--nesterov", message: "--nesterov requires --momentum > 0, got 0")
        }
    }

    private static func require(_ ok: Bool, _ flag: String, _ what: String, _ value: Float) throws(OptimizerError) {
        if !ok {
            throw OptimizerError(field: flag, message: "\(flag) must be \(what), got \(formatted(value))")
        }
    }

    /// Prints whole numbers without a fraction ("-1", not "-1.0"); others as Swift's shortest round-trip form.
    private static func formatted(_ value: Float) -> String {
        if value.isFinite && value == value.rounded() && abs(value) < 1e9 {
            return String(Int(value))
        }
        return String(value)
    }

    /// The names of the per-element state tensors, in `OptimizerState.slots` order.
    ///
    /// sgd: none; momentum: `["momentum"]`; adam: `["adam_m", "adam_v"]`; adagrad: `["adagrad_sum"]`.
    public var stateSlotNames: [String] {
        switch kind {
        case .sgd: return []
        case .momentum: return ["momentum"]
        case .adam: return ["adam_m", "adam_v"]
        case .adagrad: return ["adagrad_sum"]
        }
    }

    /// The hyper-parameters this kind uses, for checkpoint manifests (`nesterov` is 0 or 1; `clip_value` only if set).
    ///
    /// Keys: `learning_rate`, `weight_decay`, `clip_value`; momentum: `momentum`, `nesterov`; adam: `beta1`,
    /// `beta2`, `epsilon`; adagrad: `epsilon`. `init(kind:hyperParameters:)` reverses it exactly.
    public var hyperParameters: [String: Double] {
        var result: [String: Double] = ["learning_rate": Double(learningRate), "weight_decay": Double(weightDecay)]
        if let clipValue {
            result["clip_value"] = Double(clipValue)
        }
        switch kind {
        case .sgd:
            break
        case .momentum:
            result["momentum"] = Double(momentum)
            result["nesterov"] = nesterov ? 1 : 0
        case .adam:
            result["beta1"] = Double(beta1)
            result["beta2"] = Double(beta2)
            result["epsilon"] = Double(epsilon)
        case .adagrad:
            result["epsilon"] = Double(epsilon)
        }
        return result
    }

    /// Rebuilds a configuration from a checkpoint manifest's optimizer name and `hyperParameters`, then validates it.
    ///
    /// Keys this kind does not use are ignored; a missing key other than `learning_rate` takes its default.
    public init(kind name: String, hyperParameters: [String: Double]) throws(OptimizerError) {
        guard let kind = OptimizerKind(rawValue: name) else {
            let known = OptimizerKind.allCases.map(\.rawValue).joined(separator: ", ")
            throw OptimizerError(field: "optimizer", message: "unknown optimizer '\(name)' (expected one of \(known))")
        }
        guard let learningRate = hyperParameters["learning_rate"] else {
            throw OptimizerError(field: "learning_rate", message: "optimizer hyper-parameters lack learning_rate")
        }
        self.init(
            kind: kind, learningRate: Float(learningRate),
            momentum: hyperParameters["momentum"].map(Float.init) ?? 0.9,
            nesterov: (hyperParameters["nesterov"] ?? 0) != 0,
            beta1: hyperParameters["beta1"].map(Float.init) ?? 0.9,
            beta2: hyperParameters["beta2"].map(Float.init) ?? 0.999,
            epsilon: hyperParameters["epsilon"].map(Float.init),
            weightDecay: hyperParameters["weight_decay"].map(Float.init) ?? 0,
            clipValue: hyperParameters["clip_value"].map(Float.init))
        try validate()
    }
}

/// Optimizer state for one contiguous slice of parameters (one shard): the step count and the state tensors.
///
/// A value type; the shard that owns it keeps it under its lock. `apply` uses BLAS for sgd and momentum and tight
/// loops over unsafe buffers for Adam and AdaGrad, so it stays fast in debug builds too.
///
/// ```swift
/// var state = OptimizerState(config: config, count: weights.count)   // zero moments
/// weights.withUnsafeMutableBufferPointer { w in
///     gradient.withUnsafeMutableBufferPointer { g in state.apply(weights: w, gradient: g) }
/// }
/// ```
public struct OptimizerState: Sendable, Equatable {
    /// The optimizer and its hyper-parameters.
    public let config: OptimizerConfig
    /// The number of updates applied so far (Adam's `t` after the next update is `step + 1`).
    public var step: UInt64
    /// One array per `config.stateSlotNames` entry, each as long as the parameter slice.
    public var slots: [[Float]]

    /// Fresh state (step 0, every slot zero) for `count` parameters.
    public init(config: OptimizerConfig, count: Int) {
        precondition(count >= 0, "negative parameter count \(count)")
        self.config = config
        self.step = 0
        self.slots = config.stateSlotNames.map { _ in [Float](repeating: 0, count: count) }
    }

    /// Restores state saved in a checkpoint; throws unless there is one slot per `stateSlotNames` entry, all of
    /// the same length, equal to `count` when given.
    public init(config: OptimizerConfig, step: UInt64, slots: [[Float]], count: Int? = nil) throws(OptimizerError) {
        let names = config.stateSlotNames
        guard slots.count == names.count else {
            throw OptimizerError(
                field: "slots",
                message: "optimizer \(config.kind) needs \(names.count) state tensors \(names), got \(slots.count)")
        }
        let expected = count ?? slots.first?.count ?? 0
        for (name, slot) in zip(names, slots) where slot.count != expected {
            throw OptimizerError(
                field: "slots", message: "optimizer state '\(name)' has \(slot.count) elements, expected \(expected)")
        }
        self.config = config
        self.step = step
        self.slots = slots
    }

    /// Whether `applyMean(weights:sources:lrScale:)` may run: plain SGD without clipping or weight decay, on a
    /// machine where the one-pass mean and update is bitwise the two passes (`FusedMeanSGD.isExact`).
    public var appliesMeanInOnePass: Bool {
        config.kind == .sgd && config.clipValue == nil && config.weightDecay == 0 && FusedMeanSGD.isExact
    }

    /// One update whose gradient is the mean of `sources` (two or more, summed in order, as `GradientMean.average`
    /// computes it), in one pass over the sources and the weights: bitwise that mean followed by `apply`. Only when
    /// `appliesMeanInOnePass`.
    public mutating func applyMean(
        weights: UnsafeMutableBufferPointer<Float>, sources: [UnsafeBufferPointer<Float>], lrScale: Float = 1
    ) {
        precondition(appliesMeanInOnePass, "applyMean needs plain SGD and an exact one-pass kernel")
        step += 1
        FusedMeanSGD.apply(sources, into: weights, alpha: -(config.learningRate * lrScale))
    }

    /// Applies one update: `weights -= update(gradient)`; `gradient` is scratch and may be overwritten.
    ///
    /// Order: clip every gradient element to `[-clipValue, clipValue]` (if set), then `g += weightDecay * w`, then
    /// the rule of `config.kind` with learning rate `config.learningRate * lrScale` (`lrScale` is the stale-gradient
    /// "scale" policy's factor); `step` counts the update. The slice length must equal each slot's length.
    ///
    /// SGD is BLAS `saxpy` calls (as before, so plain-SGD trajectories stay bitwise those of the reference).
    /// Momentum, Adam and AdaGrad are one fused pass over the slice (`FusedUpdate`): each element is read once,
    /// clipped, decayed and updated in registers, with no fused multiply-add and no reassociation, so the compiler
    /// vectorises it and every element's result is bitwise that of the scalar formula, run to run.
    public mutating func apply(
        weights: UnsafeMutableBufferPointer<Float>, gradient: UnsafeMutableBufferPointer<Float>, lrScale: Float = 1
    ) {
        let count = weights.count
        precondition(gradient.count == count, "gradient of \(gradient.count) elements for \(count) weights")
        precondition(slots.allSatisfy { $0.count == count }, "optimizer state sized for another slice")
        guard count > 0, let w = weights.baseAddress, let g = gradient.baseAddress else {
            step += 1
            return
        }
        let lr = config.learningRate * lrScale
        step += 1
        if config.kind == .sgd {
            if let clip = config.clipValue {
                for i in 0..<count {
                    g[i] = min(max(g[i], -clip), clip)
                }
            }
            if config.weightDecay != 0 {
                BLAS.saxpy(count: count, alpha: config.weightDecay, x: w, y: g)
            }
            BLAS.saxpy(count: count, alpha: -lr, x: g, y: w)
            return
        }
        let prelude = FusedUpdate.Prelude(config: config)
        switch config.kind {
        case .sgd:
            break
        case .momentum:
            slots[0].withUnsafeMutableBufferPointer { velocity in
                FusedUpdate.momentum(
                    w: w, g: g, v: velocity.baseAddress!, count: count, prelude: prelude, lr: lr, mu: config.momentum,
                    nesterov: config.nesterov)
            }
        case .adam:
            let t = Double(step)
            let stepSize = Float(Double(lr) / (1 - pow(Double(config.beta1), t)))
            let inverseRootCorrection2 = Float(1 / (1 - pow(Double(config.beta2), t)).squareRoot())
            // Move the two slots out so that both can be borrowed mutably at once; moved back below.
            var first: [Float] = []
            var second: [Float] = []
            swap(&first, &slots[0])
            swap(&second, &slots[1])
            first.withUnsafeMutableBufferPointer { m in
                second.withUnsafeMutableBufferPointer { v in
                    FusedUpdate.adam(
                        w: w, g: g, m: m.baseAddress!, v: v.baseAddress!, count: count, prelude: prelude,
                        beta1: config.beta1, beta2: config.beta2, stepSize: stepSize,
                        inverseRootCorrection2: inverseRootCorrection2, epsilon: config.epsilon)
                }
            }
            swap(&first, &slots[0])
            swap(&second, &slots[1])
        case .adagrad:
            slots[0].withUnsafeMutableBufferPointer { sum in
                FusedUpdate.adagrad(
                    w: w, g: g, s: sum.baseAddress!, count: count, prelude: prelude, lr: lr, epsilon: config.epsilon)
            }
        }
    }
}

/// The fused single-pass element loops behind `OptimizerState.apply` for momentum, Adam and AdaGrad.
///
/// Each loop body is straight-line code over one element (clip and weight decay are selects, not branches), so
/// LLVM's loop vectoriser turns it into SIMD code with a scalar tail; element-wise IEEE operations give the same
/// bits in a vector lane as in the scalar formula, so the result does not depend on the vector width or the
/// slice's alignment. A generic x86-64 build vectorises these Swift loops with 128-bit SSE only, where Adam and
/// AdaGrad are bound by `sqrtps`/`divps`; on a CPU with AVX2 the same loops run from `CFusedUpdate`, compiled for
/// AVX2 with the same operations in the same order (``VectorPath``). `psbench server`'s apply rows measure them
/// against memcpy.
///
/// ```swift
/// // What OptimizerState.apply does for AdaGrad on one shard's slice:
/// FusedUpdate.adagrad(w: weights, g: gradient, s: squares, count: n,
///                     prelude: FusedUpdate.Prelude(config: config), lr: 0.01, epsilon: 1e-10)
/// ```
public enum FusedUpdate {
    /// Which build of the loops runs: both give the same bits (`FusedUpdateTests` compares them).
    public enum VectorPath: Sendable {
        /// The Swift loops, as the compiler vectorised them for the module's target (SSE on generic x86-64).
        case portable
        /// `CFusedUpdate`'s AVX2 loops; only where ``avx2Available`` is true.
        case avx2

        /// The fastest path this CPU supports (checked once).
        public static let fastest: VectorPath = avx2Available ? .avx2 : .portable

        /// Whether this CPU and OS support AVX2 (always false off x86-64).
        public static let avx2Available = cfused_avx2_available() != 0
    }

    /// Clip and coupled weight decay, applied to each gradient element before the rule.
    ///
    /// ```swift
    /// let prelude = FusedUpdate.Prelude(config: OptimizerConfig(kind: .momentum, learningRate: 0.1))
    /// ```
    public struct Prelude: Sendable {
        /// The clip bound (`infinity` when clipping is off; a select then keeps `g` exactly, NaN included).
        public let clip: Float
        /// Whether `clip` applies.
        public let clips: Bool
        /// The weight-decay coefficient (the term is skipped, not added as zero, when it is 0).
        public let weightDecay: Float

        /// The prelude of `config`.
        public init(config: OptimizerConfig) {
            clip = config.clipValue ?? .infinity
            clips = config.clipValue != nil
            weightDecay = config.weightDecay
        }

        /// `g` clipped, then plus `weightDecay * w`.
        @inline(__always)
        func gradient(_ g: Float, weight: Float) -> Float {
            let clipped = clips ? min(max(g, -clip), clip) : g
            return weightDecay != 0 ? clipped + weightDecay * weight : clipped
        }
    }

    /// Heavy-ball momentum: `v = mu * v + g`, `w -= lr * (nesterov ? g + mu * v : v)`.
    public static func momentum(
        w: UnsafeMutablePointer<Float>, g: UnsafePointer<Float>, v: UnsafeMutablePointer<Float>, count: Int,
        prelude: Prelude, lr: Float, mu: Float, nesterov: Bool, path: VectorPath = .fastest
    ) {
        if path == .avx2 {
            cfused_momentum_avx2(
                w, g, v, count, prelude.clip, prelude.clips ? 1 : 0, prelude.weightDecay, lr, mu, nesterov ? 1 : 0)
            return
        }
        if nesterov {
            for i in 0..<count {
                let weight = w[i]
                let gi = prelude.gradient(g[i], weight: weight)
                let vi = mu * v[i] + gi
                v[i] = vi
                w[i] = weight - lr * (gi + mu * vi)
            }
        } else {
            for i in 0..<count {
                let weight = w[i]
                let gi = prelude.gradient(g[i], weight: weight)
                let vi = mu * v[i] + gi
                v[i] = vi
                w[i] = weight - lr * vi
            }
        }
    }

    /// Adam with bias correction folded into `stepSize = lr / (1 - beta1^t)` and
    /// `inverseRootCorrection2 = 1 / sqrt(1 - beta2^t)`: `w -= stepSize * m / (sqrt(v) * inverseRootCorrection2 + eps)`.
    public static func adam(
        w: UnsafeMutablePointer<Float>, g: UnsafePointer<Float>, m: UnsafeMutablePointer<Float>,
        v: UnsafeMutablePointer<Float>, count: Int, prelude: Prelude, beta1: Float, beta2: Float, stepSize: Float,
        inverseRootCorrection2: Float, epsilon: Float, path: VectorPath = .fastest
    ) {
        if path == .avx2 {
            cfused_adam_avx2(
                w, g, m, v, count, prelude.clip, prelude.clips ? 1 : 0, prelude.weightDecay, beta1, beta2, stepSize,
                inverseRootCorrection2, epsilon)
            return
        }
        let oneMinusBeta1 = 1 - beta1
        let oneMinusBeta2 = 1 - beta2
        for i in 0..<count {
            let weight = w[i]
            let gi = prelude.gradient(g[i], weight: weight)
            let mi = beta1 * m[i] + oneMinusBeta1 * gi
            let vi = beta2 * v[i] + oneMinusBeta2 * (gi * gi)
            m[i] = mi
            v[i] = vi
            w[i] = weight - stepSize * mi / (vi.squareRoot() * inverseRootCorrection2 + epsilon)
        }
    }

    /// AdaGrad: `s += g^2`, `w -= lr * g / (sqrt(s) + eps)`.
    public static func adagrad(
        w: UnsafeMutablePointer<Float>, g: UnsafePointer<Float>, s: UnsafeMutablePointer<Float>, count: Int,
        prelude: Prelude, lr: Float, epsilon: Float, path: VectorPath = .fastest
    ) {
        if path == .avx2 {
            cfused_adagrad_avx2(w, g, s, count, prelude.clip, prelude.clips ? 1 : 0, prelude.weightDecay, lr, epsilon)
            return
        }
        for i in 0..<count {
            let weight = w[i]
            let gi = prelude.gradient(g[i], weight: weight)
            let si = s[i] + gi * gi
            s[i] = si
            w[i] = weight - lr * gi / (si.squareRoot() + epsilon)
        }
    }
}

/// Upper bounds on the magnitudes an update reads, from which `afterUpdate` proves that one more update cannot make
/// a weight non-finite, so that the server's non-finite check costs O(1) per update instead of a pass over the
/// weights (see `psbench server`'s "apply + non-finite check" rows).
///
/// The proof is conservative: when it cannot prove the update safe (some bound above `limit`), the caller applies
/// the update on a copy-on-write backup, measures the result exactly (`measure`) and keeps the backup if a weight
/// became NaN or infinite. Every bound is an upper bound on the float result, with a generous margin for rounding.
///
/// ```swift
/// var bounds = MagnitudeBounds.measure(weights: w, state: state)        // one pass, once
/// if let next = bounds.afterUpdate(config: config, gradient: maxAbsG, lrScale: 1) { apply(); bounds = next }
/// ```
public struct MagnitudeBounds: Sendable, Equatable {
    /// At least the largest `|w|` (infinity when a weight is not finite).
    public var weights: Double
    /// At least the largest `|v|` of momentum's velocity or `|m|` of Adam's first moment (0 for other kinds).
    public var state: Double
    /// Adam: at least the largest `|m| / sqrt(v)` (0 where both are 0; infinity when unknown). Unlike `state` it
    /// does not grow with the gradient, so Adam's proof does not loosen with weight decay.
    public var ratio: Double

    /// No bound may exceed this for an update to count as provably finite (float32's largest is about 3.4e38).
    public static let limit: Double = 1e36

    /// Bounds given as they are.
    public init(weights: Double, state: Double, ratio: Double = .infinity) {
        self.weights = weights
        self.state = state
        self.ratio = ratio
    }

    /// Exact bounds: the largest magnitudes in `weights` and in the state slot the proof uses (infinity for a
    /// non-finite value).
    public static func measure(weights: UnsafeBufferPointer<Float>, state: OptimizerState) -> MagnitudeBounds {
        var tracked = 0.0
        var ratio = Double.infinity
        switch state.config.kind {
        case .momentum:
            tracked = state.slots[0].withUnsafeBufferPointer { maxMagnitude($0) }
        case .adam:
            tracked = state.slots[0].withUnsafeBufferPointer { maxMagnitude($0) }
            ratio = 0
            for (m, v) in zip(state.slots[0], state.slots[1]) {
                guard m != 0 else { continue }
                let root = Double(v).squareRoot()
                ratio = root > 0 ? max(ratio, abs(Double(m)) / root) : .infinity  // NaN ends up infinite below
            }
            if !ratio.isFinite || ratio.isNaN { ratio = .infinity }
        case .sgd, .adagrad:
            break
        }
        return MagnitudeBounds(weights: maxMagnitude(weights), state: tracked, ratio: ratio)
    }

    /// The largest `|x|` over `values` (0 when empty), or infinity when one of them is NaN or infinite. One pass,
    /// explicitly vectorised (a plain loop's float reductions stay scalar without reassociation): with AVX2,
    /// `CFusedUpdate`'s loop (8 lanes with an integer maximum, about 0.4 instructions per element); otherwise the
    /// Swift loop, which generic x86-64's SSE2 (no packed 32-bit maximum) makes about 3 per element. Both give
    /// the same result (`MagnitudeBoundsTests`).
    public static func maxMagnitude(
        _ values: UnsafeBufferPointer<Float>, path: FusedUpdate.VectorPath = .fastest
    ) -> Double {
        if path == .avx2, let base = values.baseAddress {
            let largest = Float(bitPattern: cfused_max_magnitude_bits_avx2(base, values.count))
            return largest.isFinite ? Double(largest) : .infinity
        }
        let scan = scan(values, magnitudes: true)
        return scan.finite ? Double(scan.largest) : .infinity
    }

    /// Whether every element of `values` is finite: `maxMagnitude`'s pass without the maximum (what the
    /// gradient check costs on its own, for the benchmark's baseline).
    public static func allFinite(_ values: UnsafeBufferPointer<Float>) -> Bool {
        scan(values, magnitudes: false).finite
    }

    @inline(__always)
    private static func scan(_ values: UnsafeBufferPointer<Float>, magnitudes: Bool) -> (largest: Float, finite: Bool) {
        guard let base = values.baseAddress else { return (0, true) }
        #if DEBUG
            // Unoptimised SIMD types cost a call per operation: debug builds (the tests) take the plain loop.
            var largestSoFar: Float = 0
            var poisonSoFar: Float = 0
            for index in 0..<values.count {
                let value = base[index]
                let magnitude = value < 0 ? -value : value
                if magnitude > largestSoFar { largestSoFar = magnitude }
                poisonSoFar += value * 0
            }
            return (largestSoFar, poisonSoFar.isFinite && largestSoFar.isFinite)
        #else
            return scanVectorised(base: base, count: values.count, magnitudes: magnitudes)
        #endif
    }

    @inline(__always)
    private static func scanVectorised(
        base: UnsafePointer<Float>, count: Int, magnitudes: Bool
    ) -> (largest: Float, finite: Bool) {
        let width = 16
        let raw = UnsafeRawPointer(base)
        var index = 0
        var tailLargest: Float = 0
        var tailPoison: Float = 0  // x * 0 is 0 for a finite x and NaN otherwise
        if magnitudes {
            // The largest bit pattern with the sign cleared, compared as integers: for non-negative floats that
            // order is the numeric one, infinity and NaN (0x7f800000 and above) come out on top, and integer
            // compares vectorise where `pointwiseMax` on floats (with its NaN rules) does not. Two accumulators
            // keep the loop off a single dependency chain.
            var largest = (SIMD16<Int32>(), SIMD16<Int32>())
            let magnitude = SIMD16<Int32>(repeating: 0x7fff_ffff)
            while index + 2 * width <= count {
                let a = raw.loadUnaligned(fromByteOffset: index * 4, as: SIMD16<Int32>.self) & magnitude
                let b = raw.loadUnaligned(fromByteOffset: (index + width) * 4, as: SIMD16<Int32>.self) & magnitude
                largest.0.replace(with: a, where: a .> largest.0)
                largest.1.replace(with: b, where: b .> largest.1)
                index += 2 * width
            }
            while index < count {
                tailLargest = Swift.max(tailLargest, abs(base[index]))
                tailPoison += base[index] * 0
                index += 1
            }
            let vectorLargest = Float(bitPattern: UInt32(pointwiseMax(largest.0, largest.1).max()))
            let maximum = Swift.max(vectorLargest, tailLargest)
            return (maximum, maximum.isFinite && tailPoison.isFinite)
        }
        var poison = (SIMD16<Float>(), SIMD16<Float>())
        while index + 2 * width <= count {
            poison.0 += raw.loadUnaligned(fromByteOffset: index * 4, as: SIMD16<Float>.self) * 0
            poison.1 += raw.loadUnaligned(fromByteOffset: (index + width) * 4, as: SIMD16<Float>.self) * 0
            index += 2 * width
        }
        while index < count {
            tailPoison += base[index] * 0
            index += 1
        }
        return (0, ((poison.0 + poison.1).sum() + tailPoison).isFinite)
    }

    /// The bounds after one update of `config` with every gradient element at most `gradient` in magnitude and
    /// learning-rate factor `lrScale` (at most 1), or nil when they cannot prove every new weight finite.
    ///
    /// With `G` the bound on the gradient after clipping and weight decay (`min(gradient, clip) + wd * W`):
    /// sgd moves a weight by at most `lr * G`; momentum's velocity is at most `mu * V + G` and the step `lr` times
    /// that (Nesterov: `lr * (G + mu * V')`); Adam's step is at most `lr / (1 - beta1)` times the smaller of
    /// `M' / eps` (`M' = beta1 * M + (1 - beta1) * G` bounds the first moment) and the bound on `|m| / sqrt(v)`,
    /// which follows `R' = beta1 / sqrt(beta2) * R + (1 - beta1) / sqrt(1 - beta2)` and so stays small whatever the
    /// gradient (an overflowing second moment only turns a step to 0); AdaGrad's step is at most `lr` (|g| / sqrt(s + g^2) <= 1), or `lr * G / eps` for a tiny `eps`.
    public func afterUpdate(config: OptimizerConfig, gradient: Double, lrScale: Float) -> MagnitudeBounds? {
        // Float32 rounds each operation by at most 2^-24 relative; a handful of them per element stays far inside
        // these margins, which grow the bounds slowly enough to last tens of millions of updates between measures.
        let margin = 1 + 1e-6
        let lr = Double(config.learningRate) * Double(max(lrScale, 0))
        var g = gradient * margin
        if let clip = config.clipValue { g = min(g, Double(clip)) }
        g += Double(config.weightDecay) * weights
        var state = 0.0
        var ratio = Double.infinity
        let step: Double
        switch config.kind {
        case .sgd:
            step = lr * g
        case .momentum:
            state = Double(config.momentum) * self.state + g
            step = lr * (config.nesterov ? g + Double(config.momentum) * state : state)
        case .adam:
            let beta1 = Double(config.beta1)
            let beta2 = Double(config.beta2)
            state = beta1 * self.state + (1 - beta1) * g
            let stepSize = lr / (1 - beta1)  // lr / (1 - beta1^t) for every t >= 1
            guard stepSize * state <= Self.limit else { return nil }
            // |m'| <= beta1 |m| + (1 - beta1) |g| and sqrt(v') >= max(sqrt(beta2 v), sqrt(1 - beta2) |g|), so
            // |m'| / sqrt(v') <= beta1 / sqrt(beta2) * ratio + (1 - beta1) / sqrt(1 - beta2); the step divides by
            // sqrt(v') / sqrt(1 - beta2^t) >= sqrt(v'). A g^2 that underflows adds at most (1 - beta1) 1e-19 / eps.
            ratio =
                (beta1 / beta2.squareRoot() * self.ratio + (1 - beta1) / (1 - beta2).squareRoot()
                    + (1 - beta1) * 1.1e-19 / Double(config.epsilon)) * 1.0001
            step = stepSize * min(state / Double(config.epsilon), ratio.isFinite ? ratio : .infinity)
        case .adagrad:
            step = config.epsilon >= 1e-18 ? lr * 1.01 : lr * g / Double(config.epsilon)
            guard lr * g <= Self.limit else { return nil }
        }
        let next = MagnitudeBounds(weights: (weights + step * 1.001) * margin, state: state * margin, ratio: ratio)
        let largest = [g, step, next.weights, next.state].max() ?? .infinity
        guard largest.isFinite, largest <= Self.limit else { return nil }
        return next
    }
}
