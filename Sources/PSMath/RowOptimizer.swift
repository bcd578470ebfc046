import Foundation

/// The update rules for row-sparse tensors, applied lazily: only to the rows a push touches.
///
/// ```swift
/// let kind = RowOptimizerKind(rawValue: "ftrl")   // .ftrl
/// ```
public enum RowOptimizerKind: String, Sendable, Codable, CaseIterable {
    /// `w -= lr * g` on the touched rows (equal to dense SGD, whose other rows get a zero gradient).
    case sgd
    /// `s += g^2`, `w -= lr * g / (sqrt(s) + eps)` on the touched rows (equal to dense AdaGrad).
    case adagrad
    /// Lazy Adam (TensorFlow's LazyAdam): the touched rows' moments and weights follow Adam with the table's step
    /// count `t` for the bias correction; untouched rows keep their moments and weights (dense Adam would decay
    /// the moments and keep moving those weights).
    case adam
    /// FTRL-Proximal (McMahan et al. 2013), per-coordinate learning rates, L1 and L2: weights exactly 0 unless a
    /// coordinate's accumulated gradient exceeds `l1`.
    case ftrl
}

/// A row-sparse optimizer and its hyper-parameters; `validate()` names the flag at fault.
///
/// FTRL uses `learningRate` as its `alpha`, `ftrlBeta` as its `beta`, and `l1`, `l2`; Adam `beta1`, `beta2`,
/// `epsilon`; AdaGrad `epsilon`.
///
/// ```swift
/// let ftrl = RowOptimizerConfig(kind: .ftrl, learningRate: 1, l1: 0.5, l2: 0.1)
/// try ftrl.validate()
/// ```
public struct RowOptimizerConfig: Sendable, Codable, Equatable {
    /// Which update rule.
    public var kind: RowOptimizerKind
    /// The learning rate (FTRL's `alpha`), > 0.
    public var learningRate: Float
    /// Adam's first-moment decay in [0, 1).
    public var beta1: Float
    /// Adam's second-moment decay in [0, 1).
    public var beta2: Float
    /// The denominator term (> 0): 1e-8 for Adam, 1e-10 for AdaGrad by default.
    public var epsilon: Float
    /// FTRL's `beta` (>= 0), default 1.
    public var ftrlBeta: Float
    /// FTRL's L1 strength (>= 0).
    public var l1: Float
    /// FTRL's L2 strength (>= 0).
    public var l2: Float

    /// Creates a configuration; `epsilon` nil takes the kind's default.
    public init(
        kind: RowOptimizerKind, learningRate: Float, beta1: Float = 0.9, beta2: Float = 0.999, epsilon: Float? = nil,
        ftrlBeta: Float = 1, l1: Float = 0, l2: Float = 0
    ) {
        self.kind = kind
        self.learningRate = learningRate
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon ?? (kind == .adagrad ? 1e-10 : 1e-8)
        self.ftrlBeta = ftrlBeta
        self.l1 = l1
        self.l2 = l2
    }

    /// The row-sparse counterpart of a dense configuration (sgd, adagrad, adam); nil for momentum, which has no
    /// lazy form here.
    public init?(dense config: OptimizerConfig) {
        let kind: RowOptimizerKind
        switch config.kind {
        case .sgd: kind = .sgd
        case .adagrad: kind = .adagrad
        case .adam: kind = .adam
        case .momentum: return nil
        }
        self.init(
            kind: kind, learningRate: config.learningRate, beta1: config.beta1, beta2: config.beta2,
            epsilon: config.epsilon)
    }

    /// Checks every hyper-parameter; the message names the flag.
    public func validate() throws(OptimizerError) {
        func require(_ ok: Bool, _ flag: String, _ what: String, _ value: Float) throws(OptimizerError) {
            if !ok { throw OptimizerError(field: flag, message: "\(flag) must be \(what), got \(value)") }
        }
        try require(learningRate.isFinite && learningRate > 0, "--lr", "a positive finite number", learningRate)
        try require(beta1.isFinite && beta1 >= 0 && beta1 < 1, "--beta1", "in [0, 1)", beta1)
        try require(beta2.isFinite && beta2 >= 0 && beta2 < 1, "--beta2", "in [0, 1)", beta2)
        try require(epsilon.isFinite && epsilon > 0, "--epsilon", "a positive finite number", epsilon)
        try require(ftrlBeta.isFinite && ftrlBeta >= 0, "--ftrl-beta", "a non-negative finite number", ftrlBeta)
        try require(l1.isFinite && l1 >= 0, "--l1", "a non-negative finite number", l1)
        try require(l2.isFinite && l2 >= 0, "--l2", "a non-negative finite number", l2)
    }

    /// The names of the per-element state tensors, in `RowOptimizerState.slots` order.
    ///
    /// sgd: none; adagrad: `["adagrad_sum"]`; adam: `["adam_m", "adam_v"]`; ftrl: `["ftrl_z", "ftrl_n"]`.
    public var stateSlotNames: [String] {
        switch kind {
        case .sgd: return []
        case .adagrad: return ["adagrad_sum"]
        case .adam: return ["adam_m", "adam_v"]
        case .ftrl: return ["ftrl_z", "ftrl_n"]
        }
    }
}

/// The optimizer state of one row-sparse table (or of one shard's rows of it): the step count and one
/// `rows x width` slot per `stateSlotNames` entry.
///
/// ```swift
/// var state = RowOptimizerState(config: RowOptimizerConfig(kind: .ftrl, learningRate: 0.1, l1: 1),
///                               rows: 1000, width: 1)
/// state.apply(rows: [3, 17], gradient: g, weights: &table)   // g holds 2 x width values
/// ```
public struct RowOptimizerState: Sendable, Equatable {
    /// The optimizer and its hyper-parameters.
    public let config: RowOptimizerConfig
    /// The row width.
    public let width: Int
    /// The number of updates applied (lazy Adam's `t` after the next update is `step + 1`).
    public var step: UInt64
    /// One `rows x width` array per `config.stateSlotNames` entry.
    public var slots: [[Float]]

    /// Fresh state (step 0, zero slots) for a table of `rows x width`.
    public init(config: RowOptimizerConfig, rows: Int, width: Int) {
        precondition(rows >= 0 && width >= 1, "RowOptimizerState: bad shape \(rows) x \(width)")
        self.config = config
        self.width = width
        self.step = 0
        self.slots = config.stateSlotNames.map { _ in [Float](repeating: 0, count: rows * width) }
    }

    /// Restores saved state; throws unless there is one slot per name, each of `rows * width` elements.
    public init(
        config: RowOptimizerConfig, rows: Int, width: Int, step: UInt64, slots: [[Float]]
    ) throws(OptimizerError) {
        let names = config.stateSlotNames
        guard slots.count == names.count else {
            throw OptimizerError(
                field: "slots",
                message: "optimizer \(config.kind) needs \(names.count) state tensors \(names), got \(slots.count)")
        }
        for (name, slot) in zip(names, slots) where slot.count != rows * width {
            throw OptimizerError(
                field: "slots",
                message: "optimizer state '\(name)' has \(slot.count) elements, expected \(rows * width)")
        }
        self.config = config
        self.width = width
        self.step = step
        self.slots = slots
    }

    /// Applies one update to the given local rows: `gradient` holds `rows.count x width` values in the order of
    /// `rows` (which must be distinct and in range: the caller validated them); `step` counts the update.
    public mutating func apply(rows: [Int], gradient: UnsafeBufferPointer<Float>, weights: inout [Float]) {
        precondition(gradient.count == rows.count * width, "gradient of \(gradient.count) for \(rows.count) rows")
        step += 1
        let width = self.width
        let lr = config.learningRate
        switch config.kind {
        case .sgd:
            for (slot, row) in rows.enumerated() {
                for column in 0..<width {
                    weights[row * width + column] -= lr * gradient[slot * width + column]
                }
            }
        case .adagrad:
            let epsilon = config.epsilon
            for (slot, row) in rows.enumerated() {
                for column in 0..<width {
                    let index = row * width + column
                    let g = gradient[slot * width + column]
                    let s = slots[0][index] + g * g
                    slots[0][index] = s
                    weights[index] = weights[index] - lr * g / (s.squareRoot() + epsilon)
                }
            }
        case .adam:
            // The dense rule's arithmetic (FusedUpdate.adam), element by element, on the touched rows only.
            let t = Double(step)
            let stepSize = Float(Double(lr) / (1 - pow(Double(config.beta1), t)))
            let inverseRootCorrection2 = Float(1 / (1 - pow(Double(config.beta2), t)).squareRoot())
            let beta1 = config.beta1
            let beta2 = config.beta2
            let oneMinusBeta1 = 1 - beta1
            let oneMinusBeta2 = 1 - beta2
            let epsilon = config.epsilon
            for (slot, row) in rows.enumerated() {
                for column in 0..<width {
                    let index = row * width + column
                    let g = gradient[slot * width + column]
                    let m = beta1 * slots[0][index] + oneMinusBeta1 * g
                    let v = beta2 * slots[1][index] + oneMinusBeta2 * (g * g)
                    slots[0][index] = m
                    slots[1][index] = v
                    weights[index] =
                        weights[index] - stepSize * m / (v.squareRoot() * inverseRootCorrection2 + epsilon)
                }
            }
        case .ftrl:
            for (slot, row) in rows.enumerated() {
                for column in 0..<width {
                    let index = row * width + column
                    let g = gradient[slot * width + column]
                    let (w, z, n) = Self.ftrl(
                        weight: weights[index], z: slots[0][index], n: slots[1][index], gradient: g, config: config)
                    weights[index] = w
                    slots[0][index] = z
                    slots[1][index] = n
                }
            }
        }
    }

    /// One FTRL-Proximal coordinate update (McMahan et al. 2013, algorithm 1):
    /// `sigma = (sqrt(n + g^2) - sqrt(n)) / alpha`, `z += g - sigma * w`, `n += g^2`, then
    /// `w = 0` if `|z| <= l1`, else `-(z - sign(z) * l1) / ((beta + sqrt(n)) / alpha + l2)`.
    @inline(__always)
    public static func ftrl(
        weight: Float, z: Float, n: Float, gradient g: Float, config: RowOptimizerConfig
    ) -> (weight: Float, z: Float, n: Float) {
        let alpha = config.learningRate
        let newN = n + g * g
        let sigma = (newN.squareRoot() - n.squareRoot()) / alpha
        let newZ = z + g - sigma * weight
        guard abs(newZ) > config.l1 else { return (0, newZ, newN) }
        let shrunk = newZ > 0 ? newZ - config.l1 : newZ + config.l1
        let newWeight = -shrunk / ((config.ftrlBeta + newN.squareRoot()) / alpha + config.l2)
        return (newWeight, newZ, newN)
    }
}
