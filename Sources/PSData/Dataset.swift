/// A data set held in memory: dense float32 features, one label per row.
public struct Dataset: Sendable, Equatable {
    /// A name for messages: the file path it was read from, or `digits`, `synthetic:…`.
    public let name: String
    /// The number of rows (examples).
    public let rowCount: Int
    /// The number of features per row.
    public let featureCount: Int
    /// The features, row-major `[rowCount][featureCount]`.
    public let features: [Float]
    /// One label per row: a class index as Float, or a regression target.
    public let labels: [Float]
    /// The number of classes (max label + 1) for classification data, 0 for regression data.
    public let classCount: Int

    /// Creates a data set; `features.count` must be `labels.count * featureCount`.
    public init(name: String, featureCount: Int, features: [Float], labels: [Float], classCount: Int) {
        precondition(featureCount > 0, "Dataset: featureCount must be positive")
        precondition(features.count == labels.count * featureCount, "Dataset: features do not match labels")
        precondition(classCount >= 0, "Dataset: classCount must not be negative")
        self.name = name
        self.rowCount = labels.count
        self.featureCount = featureCount
        self.features = features
        self.labels = labels
        self.classCount = classCount
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
        self.features.withUnsafeBufferPointer { source in
            self.labels.withUnsafeBufferPointer { sourceLabels in
                var slot = 0
                for row in rows {
                    precondition(row >= 0 && row < rowCount, "gather: row \(row) out of range 0..<\(rowCount)")
                    let from = UnsafeBufferPointer(rebasing: source[(row * width)..<((row + 1) * width)])
                    let to = UnsafeMutableBufferPointer(rebasing: features[(slot * width)..<((slot + 1) * width)])
                    _ = to.update(fromContentsOf: from)
                    labels[slot] = sourceLabels[row]
                    slot += 1
                }
            }
        }
    }

    /// A copy of this data set with another class count (used to make a train/test pair agree).
    func with(classCount: Int) -> Dataset {
        Dataset(name: name, featureCount: featureCount, features: features, labels: labels, classCount: classCount)
    }

    static func isClassIndex(_ label: Float) -> Bool {
        label >= 0 && label == label.rounded(.towardZero) && label < 16_777_216
    }
}

/// A data file that cannot be used: names the file, where in it (line, byte offset, row) and what is wrong.
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
