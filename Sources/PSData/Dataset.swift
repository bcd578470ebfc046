import PSMath

/// A data set held in memory: dense float32 features, one label per row.
///
/// Features are stored as floats, or (IDX images) as their bytes with the divisor that makes each byte its float
/// feature, a quarter of the memory; `gather` converts the rows it copies, with the same arithmetic as a float
/// data set's loader, so both give the same floats.
///
/// ```swift
/// let xor = Dataset(
///     name: "xor", featureCount: 2, features: [0, 0, 0, 1, 1, 0, 1, 1], labels: [0, 1, 1, 0], classCount: 2)
/// var features = [Float](repeating: 0, count: 4)
/// var labels = [Float](repeating: 0, count: 2)
/// features.withUnsafeMutableBufferPointer { f in
///     labels.withUnsafeMutableBufferPointer { l in xor.gather(rows: [3, 1], into: f, labels: l) }
/// }
/// ```
public struct Dataset: Sendable {
    /// A name for messages: the file path it was read from, or `digits`, `synthetic:…`.
    public let name: String
    /// The number of rows (examples).
    public let rowCount: Int
    /// The number of features per row.
    public let featureCount: Int
    /// The features, row-major `[rowCount][featureCount]`. For a data set stored as bytes this builds the whole
    /// float array on each access: read rows with `gather` or `feature(row:column:)` in loops.
    public var features: [Float] {
        switch storage {
        case .floats(let values): return values
        case .scaledBytes(let bytes, let divisor):
            guard !bytes.isEmpty else { return [] }
            return [Float](unsafeUninitializedCapacity: bytes.count) { out, initialized in
                bytes.withUnsafeBufferPointer { ByteFeatures.scale($0, divisor: divisor, into: out.baseAddress!) }
                initialized = bytes.count
            }
        }
    }
    /// One label per row: a class index as Float, or a regression target.
    public let labels: [Float]
    /// The number of classes (max label + 1) for classification data, 0 for regression data.
    public private(set) var classCount: Int
    private let storage: Storage

    /// How the features are held.
    private enum Storage: Sendable {
        case floats([Float])
        /// Each feature is `Float(byte) / divisor`.
        case scaledBytes([UInt8], divisor: Float)
    }

    /// Creates a data set; `features.count` must be `labels.count * featureCount`.
    public init(name: String, featureCount: Int, features: [Float], labels: [Float], classCount: Int) {
        self.init(
            name: name, featureCount: featureCount, storage: .floats(features), storedCount: features.count,
            labels: labels, classCount: classCount)
    }

    /// Creates a data set whose features are `Float(byte) / divisor` (IDX images: divisor 255), kept as the bytes;
    /// `bytes.count` must be `labels.count * featureCount`.
    init(name: String, featureCount: Int, bytes: [UInt8], divisor: Float, labels: [Float], classCount: Int) {
        self.init(
            name: name, featureCount: featureCount, storage: .scaledBytes(bytes, divisor: divisor),
            storedCount: bytes.count, labels: labels, classCount: classCount)
    }

    private init(name: String, featureCount: Int, storage: Storage, storedCount: Int, labels: [Float], classCount: Int)
    {
        precondition(featureCount > 0, "Dataset: featureCount must be positive")
        precondition(storedCount == labels.count * featureCount, "Dataset: features do not match labels")
        precondition(classCount >= 0, "Dataset: classCount must not be negative")
        self.name = name
        self.rowCount = labels.count
        self.featureCount = featureCount
        self.storage = storage
        self.labels = labels
        self.classCount = classCount
    }

    /// Feature `column` of row `row`.
    public func feature(row: Int, column: Int) -> Float {
        precondition(row >= 0 && row < rowCount && column >= 0 && column < featureCount, "feature index out of range")
        switch storage {
        case .floats(let values): return values[row * featureCount + column]
        case .scaledBytes(let bytes, let divisor): return Float(bytes[row * featureCount + column]) / divisor
        }
    }

    /// This data set with its features stored as floats (itself when they are): for data read whole many times,
    /// like a test set evaluated every epoch.
    public func storingFloats() -> Dataset {
        guard case .scaledBytes = storage else { return self }
        return Dataset(
            name: name, featureCount: featureCount, features: features, labels: labels, classCount: classCount)
    }

    /// The class count inferred from labels: max + 1 if every label is a non-negative integer, otherwise 0.
    public static func inferredClassCount(labels: [Float]) -> Int {
        var maximum: Float = -1
        for label in labels {
            guard isClassIndex(label) else { return 0 }
            maximum = max(maximum, label)
        }
        return maximum < 0 ? 0 : Int(maximum) + 1
    }

    /// Checks that every label is a class index below `classCount`; the error names the first bad row (0-based).
    public func requireClassification(classCount: Int) throws(DataError) {
        for (row, label) in labels.enumerated() {
            guard Self.isClassIndex(label) else {
                throw DataError(file: name, location: "row \(row)", message: "label \(label) is not a class index")
            }
            guard Int(label) < classCount else {
                throw DataError(
                    file: name, location: "row \(row)",
                    message: "label \(Int(label)) is not a class index below the class count \(classCount)")
            }
        }
    }

    /// Checks that this data set fits a model of `featureCount` inputs and `classCount` classes (0: a regression
    /// model); the error names the file and, for a label, the first bad row (0-based).
    ///
    /// The feature count must be equal; a class index must be an integer in `0..<classCount`, a regression target
    /// finite. Call it on every data set before it reaches a model, whose compute calls treat a row of the wrong
    /// width or a bad label as a programmer error.
    public func requireModelShape(featureCount expectedFeatures: Int, classCount: Int) throws(DataError) {
        guard featureCount == expectedFeatures else {
            throw DataError(
                file: name, message: "has \(featureCount) features per row, the model expects \(expectedFeatures)")
        }
        if classCount > 0 {
            try requireClassification(classCount: classCount)
            return
        }
        if let row = labels.firstIndex(where: { !$0.isFinite }) {
            throw DataError(
                file: name, location: "row \(row)", message: "regression target \(labels[row]) is not finite")
        }
    }

    /// Copies the given rows, in order, into preallocated batch buffers without allocating.
    ///
    /// `features` must hold at least `rows.count * featureCount` values and `labels` at least `rows.count`;
    /// every row index must be in `0..<rowCount` (both are programmer errors, checked by `precondition`).
    public func gather(
        rows: some Collection<Int>, into features: UnsafeMutableBufferPointer<Float>,
        labels: UnsafeMutableBufferPointer<Float>
    ) {
        precondition(features.count >= rows.count * featureCount, "gather: feature buffer too small")
        precondition(labels.count >= rows.count, "gather: label buffer too small")
        let width = featureCount
        self.labels.withUnsafeBufferPointer { sourceLabels in
            var slot = 0
            for row in rows {
                precondition(row >= 0 && row < rowCount, "gather: row \(row) out of range 0..<\(rowCount)")
                labels[slot] = sourceLabels[row]
                slot += 1
            }
        }
        switch storage {
        case .floats(let values):
            values.withUnsafeBufferPointer { source in
                for (slot, row) in rows.enumerated() {
                    (features.baseAddress! + slot * width).update(from: source.baseAddress! + row * width, count: width)
                }
            }
        case .scaledBytes(let bytes, let divisor):
            bytes.withUnsafeBufferPointer { source in
                // The rows are random lines of a large array: their cache misses overlap when every row is touched
                // first, instead of coming one row after another as the conversion reads them.
                if let base = source.baseAddress {
                    _ = rows.withContiguousStorageIfAvailable {
                        ByteFeatures.touchRows(base, rowBytes: width, rows: $0)
                    }
                }
                for (slot, row) in rows.enumerated() {
                    ByteFeatures.scale(
                        UnsafeBufferPointer(rebasing: source[(row * width)..<((row + 1) * width)]), divisor: divisor,
                        into: features.baseAddress! + slot * width)
                }
            }
        }
    }

    /// A copy of this data set with another class count (used to make a train/test pair agree).
    func with(classCount: Int) -> Dataset {
        var copy = self
        copy.classCount = classCount
        return copy
    }

    static func isClassIndex(_ label: Float) -> Bool {
        label >= 0 && label == label.rounded(.towardZero) && label < 16_777_216
    }
}

extension Dataset: Equatable {
    /// Equal when names, shapes, labels, class counts and feature values agree, however the features are stored.
    public static func == (left: Dataset, right: Dataset) -> Bool {
        guard left.name == right.name, left.featureCount == right.featureCount, left.labels == right.labels,
            left.classCount == right.classCount
        else { return false }
        switch (left.storage, right.storage) {
        case (.floats(let a), .floats(let b)): return a == b
        case (.scaledBytes(let a, let x), .scaledBytes(let b, let y)) where x == y: return a == b
        default: return left.features == right.features
        }
    }
}

/// A data file that cannot be used: names the file, where in it (line, byte offset, row) and what is wrong.
///
/// ```swift
/// do {
///     _ = try DataSource(parsing: "missing.csv").loadTrain()
/// } catch {
///     print(error)   // "missing.csv: …": the file, where in it, and what is wrong
/// }
/// ```
public struct DataError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The file (or the `--data` text, for a spelling that cannot be parsed).
    public let file: String
    /// Where in the file, e.g. `line 17`, `line 17, column 3`, `byte offset 16`, `row 3`; nil for the whole file.
    public let location: String?
    /// What is wrong.
    public let message: String

    /// Creates an error.
    public init(file: String, location: String? = nil, message: String) {
        self.file = file
        self.location = location
        self.message = message
    }

    /// `file: location: message`, or `file: message` without a location.
    public var description: String {
        if let location { return "\(file): \(location): \(message)" }
        return "\(file): \(message)"
    }
}
