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

    /// Applies one update: `weights -= update(gradient)`; `gradient` is scratch and may be overwritten.
    ///
    /// Order: clip every gradient element to `[-clipValue, clipValue]` (if set), then `g += weightDecay * w`, then
    /// the rule of `config.kind` with learning rate `config.learningRate * lrScale` (`lrScale` is the stale-gradient
    /// "scale" policy's factor); `step` counts the update. The slice length must equal each slot's length.
    public mutating func apply(
        weights: UnsafeMutableBufferPointer<Float>, gradient: UnsafeMutableBufferPointer<Float>, lrScale: Float = 1
    ) {
        let count = weights.count
        precondition(gradient.count == count, "gradient of \(gradient.count) elements for \(count) weights")
        precondition(slots.allSatisfy { $0.count == count }, "optimizer state sized for another slice")
        guard let w = weights.baseAddress, let g = gradient.baseAddress else {
            step += 1
            return
        }
        if let clip = config.clipValue {
            for i in 0..<count {
                gradient[i] = min(max(gradient[i], -clip), clip)
            }
        }
        if config.weightDecay != 0 {
            BLAS.saxpy(count: count, alpha: config.weightDecay, x: w, y: g)
        }
        let lr = config.learningRate * lrScale
        step += 1
        switch config.kind {
        case .sgd:
            BLAS.saxpy(count: count, alpha: -lr, x: g, y: w)
        case .momentum:
            applyMomentum(w: w, g: g, count: count, lr: lr)
        case .adam:
            applyAdam(weights: weights, gradient: gradient, lr: lr)
        case .adagrad:
            applyAdaGrad(weights: weights, gradient: gradient, lr: lr)
        }
    }

    private mutating func applyMomentum(
        w: UnsafeMutablePointer<Float>, g: UnsafeMutablePointer<Float>, count: Int, lr: Float
    ) {
        let mu = config.momentum
        let nesterov = config.nesterov
        slots[0].withUnsafeMutableBufferPointer { velocity in
            guard let v = velocity.baseAddress else { return }
            BLAS.sscal(count: count, alpha: mu, x: v)
            BLAS.saxpy(count: count, alpha: 1, x: g, y: v)
            if nesterov {
                BLAS.saxpy(count: count, alpha: mu, x: v, y: g)
                BLAS.saxpy(count: count, alpha: -lr, x: g, y: w)
            } else {
                BLAS.saxpy(count: count, alpha: -lr, x: v, y: w)
            }
        }
    }

    private mutating func applyAdam(
        weights: UnsafeMutableBufferPointer<Float>, gradient: UnsafeMutableBufferPointer<Float>, lr: Float
    ) {
        let beta1 = config.beta1
        let beta2 = config.beta2
        let epsilon = config.epsilon
        let t = Double(step)
        let stepSize = Float(Double(lr) / (1 - pow(Double(beta1), t)))
        let inverseRootCorrection2 = Float(1 / (1 - pow(Double(beta2), t)).squareRoot())
        // Move the two slots out so that both can be borrowed mutably at once; moved back below.
        var first: [Float] = []
        var second: [Float] = []
        swap(&first, &slots[0])
        swap(&second, &slots[1])
        first.withUnsafeMutableBufferPointer { m in
            second.withUnsafeMutableBufferPointer { v in
                for i in 0..<weights.count {
                    let g = gradient[i]
                    let mi = beta1 * m[i] + (1 - beta1) * g
                    let vi = beta2 * v[i] + (1 - beta2) * (g * g)
                    m[i] = mi
                    v[i] = vi
                    weights[i] -= stepSize * mi / (vi.squareRoot() * inverseRootCorrection2 + epsilon)
                }
            }
        }
        swap(&first, &slots[0])
        swap(&second, &slots[1])
    }

    private mutating func applyAdaGrad(
        weights: UnsafeMutableBufferPointer<Float>, gradient: UnsafeMutableBufferPointer<Float>, lr: Float
    ) {
        let epsilon = config.epsilon
        slots[0].withUnsafeMutableBufferPointer { sum in
            for i in 0..<weights.count {
                let g = gradient[i]
                let s = sum[i] + g * g
                sum[i] = s
                weights[i] -= lr * g / (s.squareRoot() + epsilon)
            }
        }
    }
}
