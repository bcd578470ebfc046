import PSMath

/// A model description that a user or a data set got wrong, with a sentence that names the offending text.
public struct ModelError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The whole sentence.
    public let message: String

    /// Creates an error with the given sentence.
    public init(_ message: String) {
        self.message = message
    }

    public var description: String { message }
}

/// The model families SwiftPS trains: softmax regression, linear regression, and ReLU multi-layer perceptrons.
///
/// The text form (`--model`) is `softmax`, `linear`, or `mlp:H1,H2,...` with positive hidden-layer widths; it is
/// also the `Codable` form (a single JSON string).
public enum ModelKind: Sendable, Equatable, Codable, CustomStringConvertible {
    /// Softmax regression: one linear layer, softmax cross-entropy loss.
    case softmax
    /// Linear regression: one linear layer to one output, squared-error loss.
    case linear
    /// Linear layers of the given hidden widths with ReLU between them, then a softmax cross-entropy output layer.
    case mlp(hidden: [Int])

    /// Parses `softmax`, `linear`, `mlp:128` or `mlp:256,128`; the error names the text.
    public init(parsing text: String) throws(ModelError) {
        switch text {
        case "softmax":
            self = .softmax
        case "linear":
            self = .linear
        default:
            guard text.hasPrefix("mlp:") else {
                throw ModelError("unknown model '\(text)' (expected softmax, linear or mlp:H1,H2,... e.g. mlp:128,64)")
            }
            let fields = text.dropFirst(4).split(separator: ",", omittingEmptySubsequences: false)
            var hidden: [Int] = []
            for field in fields {
                guard let width = Int(field), width > 0 else {
                    throw ModelError(
                        "invalid model '\(text)': hidden layer widths must be positive integers, got '\(field)'")
                }
                hidden.append(width)
            }
            self = .mlp(hidden: hidden)
        }
    }

    /// The text form, which `init(parsing:)` reads back.
    public var description: String {
        switch self {
        case .softmax: return "softmax"
        case .linear: return "linear"
        case .mlp(let hidden): return "mlp:" + hidden.map(String.init).joined(separator: ",")
        }
    }

    /// Decodes the text form.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let text = try container.decode(String.self)
        do {
            self = try ModelKind(parsing: text)
        } catch {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: error.message)
        }
    }

    /// Encodes the text form.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}

/// One parameter tensor of a model: its name, its row-major shape and how the server initialises it.
public struct ParameterSpec: Sendable, Equatable {
    /// `fc<layer>.weight` or `fc<layer>.bias`, layers numbered from 1.
    public var name: String
    /// `[fanIn, fanOut]` for weights, `[fanOut]` for biases.
    public var shape: [Int]
    /// The initial values.
    public var initializer: Initializer

    /// Creates a parameter description.
    public init(name: String, shape: [Int], initializer: Initializer) {
        self.name = name
        self.shape = shape
        self.initializer = initializer
    }

    /// The number of elements (the product of `shape`).
    public var elementCount: Int { shape.reduce(1, *) }
}

/// A whole model: its kind, input and output widths and the seed of its initial weights.
public struct ModelSpec: Sendable, Equatable, Codable {
    /// The model family.
    public var kind: ModelKind
    /// Features per row.
    public var inputCount: Int
    /// Classes for softmax and mlp; 1 for linear.
    public var outputCount: Int
    /// The seed of the Glorot-initialised weights (layer `l` uses `seed * 1000 + l`).
    public var seed: UInt64

    /// Creates a model description; `validate()` checks it.
    public init(kind: ModelKind, inputCount: Int, outputCount: Int, seed: UInt64 = 1) {
        self.kind = kind
        self.inputCount = inputCount
        self.outputCount = outputCount
        self.seed = seed
    }

    /// Checks the widths: at least one input, at least one output (exactly one for linear), positive hidden widths.
    public func validate() throws(ModelError) {
        guard inputCount >= 1 else {
            throw ModelError("model \(kind) needs at least one input feature, got \(inputCount)")
        }
        switch kind {
        case .linear:
            guard outputCount == 1 else {
                throw ModelError("model linear has exactly one output (a regression target), got \(outputCount)")
            }
        case .softmax, .mlp:
            guard outputCount >= 1 else {
                throw ModelError("model \(kind) needs at least one class, got \(outputCount)")
            }
        }
        if case .mlp(let hidden) = kind, hidden.isEmpty || hidden.contains(where: { $0 < 1 }) {
            throw ModelError("model \(kind) needs one or more positive hidden layer widths")
        }
        let widths = layerWidths
        var total = 0
        for layer in 1..<widths.count {
            let (fanIn, inOverflow) = widths[layer - 1].addingReportingOverflow(1)
            let (count, countOverflow) = fanIn.multipliedReportingOverflow(by: widths[layer])
            let (sum, sumOverflow) = total.addingReportingOverflow(count)
            guard !inOverflow, !countOverflow, !sumOverflow, sum <= Self.maxParameterCount else {
                throw ModelError(
                    "model \(kind) with \(inputCount) inputs and \(outputCount) outputs has more than "
                        + "\(Self.maxParameterCount) parameters")
            }
            total = sum
        }
    }

    /// The most parameters a model may have, 2^31 - 1: OpenBLAS takes 32-bit sizes, and the flat vector (and each
    /// width in it) must fit them; `validate()` refuses a larger model, so `parameterCount` cannot overflow.
    public static let maxParameterCount = Int(Int32.max)

    /// The widths of every layer boundary: `[inputCount, hidden..., outputCount]`.
    public var layerWidths: [Int] {
        switch kind {
        case .softmax, .linear: return [inputCount, outputCount]
        case .mlp(let hidden): return [inputCount] + hidden + [outputCount]
        }
    }

    /// The parameter tensors in order: `fc1.weight`, `fc1.bias`, `fc2.weight`, ... (the flat-vector order).
    ///
    /// Layer `l` (1-based) has `fc<l>.weight` of shape `[width(l-1)][width(l)]` and `fc<l>.bias` of shape
    /// `[width(l)]`. Softmax and linear start all zero (as the reference); mlp weights are
    /// `glorotUniform(seed: seed * 1000 + l)` (wrapping arithmetic) and biases zero.
    public var parameters: [ParameterSpec] {
        let widths = layerWidths
        var result: [ParameterSpec] = []
        for layer in 1..<widths.count {
            let weightInit: Initializer
            switch kind {
            case .softmax, .linear: weightInit = .zeros
            case .mlp: weightInit = .glorotUniform(seed: seed &* 1000 &+ UInt64(layer))
            }
            result.append(
                ParameterSpec(
                    name: "fc\(layer).weight", shape: [widths[layer - 1], widths[layer]], initializer: weightInit))
            result.append(ParameterSpec(name: "fc\(layer).bias", shape: [widths[layer]], initializer: .zeros))
        }
        return result
    }

    /// The length of the flat parameter vector.
    public var parameterCount: Int {
        let widths = layerWidths
        return (1..<widths.count).reduce(0) { $0 + (widths[$1 - 1] + 1) * widths[$1] }
    }

    /// The initial flat parameter vector: every tensor of `parameters` filled by its initializer, concatenated.
    public func initialParameters() -> [Float] {
        var values: [Float] = []
        values.reserveCapacity(parameterCount)
        for parameter in parameters {
            values += parameter.initializer.values(shape: parameter.shape)
        }
        return values
    }
}
