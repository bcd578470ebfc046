import Foundation

/// Which CSV column holds the label.
///
/// ```swift
/// let source = try DataSource(parsing: "data.csv", labelColumn: .last)
/// ```
public enum LabelColumn: String, Sendable, Codable {
    case first
    case last
}

/// Where a data set comes from: the value of `--data`, parsed once and sent to workers as Codable.
///
/// ```swift
/// let source = try DataSource(parsing: "fashion-mnist")
/// let (train, test) = try source.loadSplits()   // 60000 and 10000 rows of 784 features
/// ```
public enum DataSource: Sendable, Equatable, Codable, CustomStringConvertible {
    /// scikit-learn's digits, bundled with PSData: 1347 train and 450 test rows, 64 features, 10 classes.
    case digits
    /// Fashion-MNIST in IDX files (`train-…` and `t10k-…`, gzip or plain) in a directory.
    case fashionMNIST(directory: String)
    /// An IDX images file (u8 `[count][rows][columns]`) and its IDX labels file, plain or gzip.
    case idx(images: String, labels: String)
    /// A CSV file, plain or gzip, with the label in the first or last column.
    case csv(path: String, labelColumn: LabelColumn)
    /// A LIBSVM file, plain or gzip; `featureCount` nil means the largest index in the file.
    case libsvm(path: String, featureCount: Int?)
    /// A 2-d features `.npy` and a 1-d labels `.npy`.
    case npy(features: String, labels: String)
    /// A deterministic gaussian-blob classification problem (see `loadTrain`).
    case synthetic(rows: Int, features: Int, classes: Int, seed: UInt64)

    /// Where Debian's `dataset-fashion-mnist` package installs Fashion-MNIST.
    public static let defaultFashionMNISTDirectory = "/usr/share/datasets/fashion-mnist"
    /// The seed of `synthetic:ROWS,FEATURES,CLASSES` when none is given.
    public static let defaultSyntheticSeed: UInt64 = 1

    /// Parses a `--data` value.
    ///
    /// Spellings: `digits`; `fashion-mnist` (Debian's directory) or `fashion-mnist:DIR`;
    /// `synthetic:ROWS,FEATURES,CLASSES` or `synthetic:ROWS,FEATURES,CLASSES,SEED`; `idx:IMAGES,LABELS`;
    /// `npy:X.npy,Y.npy`; `csv:PATH`; `libsvm:PATH` or `libsvm:PATH,FEATURES`; or a path ending in `.csv`,
    /// `.svm`, `.libsvm` (each optionally followed by `.gz`) or `.npy` (labels from `<stem>.labels.npy`).
    /// Files are not opened here; `loadTrain` reports missing ones.
    public init(parsing text: String, labelColumn: LabelColumn = .first) throws(DataError) {
        func fail(_ message: String) -> DataError { DataError(file: text, message: message) }
        func pair(_ rest: Substring, _ names: String) throws(DataError) -> (String, String) {
            let parts = rest.split(separator: ",", omittingEmptySubsequences: false)
            guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else {
                throw fail("expected \(names): two paths separated by a comma")
            }
            return (String(parts[0]), String(parts[1]))
        }
        if text == "digits" {
            self = .digits
        } else if text == "fashion-mnist" {
            self = .fashionMNIST(directory: Self.defaultFashionMNISTDirectory)
        } else if let directory = text.dropPrefix("fashion-mnist:") {
            guard !directory.isEmpty else { throw fail("expected fashion-mnist:DIRECTORY") }
            self = .fashionMNIST(directory: String(directory))
        } else if let rest = text.dropPrefix("synthetic:") {
            self = try Self.parseSynthetic(rest, spelling: text)
        } else if let rest = text.dropPrefix("idx:") {
            let (images, labels) = try pair(rest, "idx:IMAGES,LABELS")
            self = .idx(images: images, labels: labels)
        } else if let rest = text.dropPrefix("npy:") {
            let (features, labels) = try pair(rest, "npy:FEATURES.npy,LABELS.npy")
            self = .npy(features: features, labels: labels)
        } else if let path = text.dropPrefix("csv:") {
            guard !path.isEmpty else { throw fail("expected csv:PATH") }
            self = .csv(path: String(path), labelColumn: labelColumn)
        } else if let rest = text.dropPrefix("libsvm:") {
            self = try Self.parseLIBSVM(rest, spelling: text)
        } else if text.hasSuffix(".csv") || text.hasSuffix(".csv.gz") {
            self = .csv(path: text, labelColumn: labelColumn)
        } else if [".svm", ".libsvm", ".svm.gz", ".libsvm.gz"].contains(where: { text.hasSuffix($0) }) {
            self = .libsvm(path: text, featureCount: nil)
        } else if text.hasSuffix(".npy") {
            self = .npy(features: text, labels: String(text.dropLast(4)) + ".labels.npy")
        } else if text.hasPrefix("synthetic-sparse:") {
            throw fail("synthetic-sparse data is for the row-sparse models: --model sparse-lr or sparse-mlp:E,H")
        } else {
            throw fail(
                "unknown data source; expected digits, fashion-mnist[:DIR], synthetic:ROWS,FEATURES,CLASSES[,SEED], "
                    + "idx:IMAGES,LABELS, npy:X.npy,Y.npy, csv:PATH, libsvm:PATH[,FEATURES] "
                    + "or a path ending in .csv, .svm, .libsvm or .npy")
        }
    }

    private static func parseSynthetic(_ rest: Substring, spelling: String) throws(DataError) -> DataSource {
        let parts = rest.split(separator: ",", omittingEmptySubsequences: false)
        guard parts.count == 3 || parts.count == 4 else {
            throw DataError(file: spelling, message: "expected synthetic:ROWS,FEATURES,CLASSES[,SEED]")
        }
        var numbers: [Int] = []
        for (name, part) in zip(["ROWS", "FEATURES", "CLASSES"], parts) {
            guard let value = Int(part) else {
                throw DataError(file: spelling, message: "\(name) '\(part)' is not an integer")
            }
            numbers.append(value)
        }
        var seed = defaultSyntheticSeed
        if parts.count == 4 {
            guard let value = UInt64(parts[3]) else {
                throw DataError(file: spelling, message: "SEED '\(parts[3])' is not a non-negative integer")
            }
            seed = value
        }
        try Synthetic.validate(rows: numbers[0], features: numbers[1], classes: numbers[2], spelling: spelling)
        return .synthetic(rows: numbers[0], features: numbers[1], classes: numbers[2], seed: seed)
    }

    private static func parseLIBSVM(_ rest: Substring, spelling: String) throws(DataError) -> DataSource {
        if let comma = rest.lastIndex(of: ","), let count = Int(rest[rest.index(after: comma)...]) {
            guard count >= 1 else {
                throw DataError(file: spelling, message: "FEATURES must be at least 1, got \(count)")
            }
            guard comma > rest.startIndex else {
                throw DataError(file: spelling, message: "expected libsvm:PATH[,FEATURES]")
            }
            return .libsvm(path: String(rest[..<comma]), featureCount: count)
        }
        guard !rest.isEmpty else { throw DataError(file: spelling, message: "expected libsvm:PATH[,FEATURES]") }
        return .libsvm(path: String(rest), featureCount: nil)
    }

    /// A spelling that `init(parsing:)` reads back to this source (the CSV label column aside).
    public var description: String {
        switch self {
        case .digits:
            return "digits"
        case .fashionMNIST(let directory):
            return directory == Self.defaultFashionMNISTDirectory ? "fashion-mnist" : "fashion-mnist:\(directory)"
        case .idx(let images, let labels):
            return "idx:\(images),\(labels)"
        case .csv(let path, let labelColumn):
            let spelling = path.hasSuffix(".csv") || path.hasSuffix(".csv.gz") ? path : "csv:\(path)"
            return labelColumn == .first ? spelling : "\(spelling) (label in the last column)"
        case .libsvm(let path, let featureCount):
            if let featureCount { return "libsvm:\(path),\(featureCount)" }
            return "libsvm:\(path)"
        case .npy(let features, let labels):
            if features.hasSuffix(".npy"), labels == String(features.dropLast(4)) + ".labels.npy" { return features }
            return "npy:\(features),\(labels)"
        case .synthetic(let rows, let features, let classes, let seed):
            return "synthetic:\(rows),\(features),\(classes),\(seed)"
        }
    }

    /// Loads the training split.
    ///
    /// Synthetic data: class centroids from the seed, `rows` rows drawn with the seed (see `Synthetic`).
    public func loadTrain() throws(DataError) -> Dataset {
        switch self {
        case .digits:
            return try BundledDigits.load(split: "train")
        case .fashionMNIST(let directory):
            let (images, labels) = try Self.fashionFiles(directory: directory, prefix: "train")
            return try IDX.load(images: images, labels: labels)
        case .idx(let images, let labels):
            return try IDX.load(images: images, labels: labels)
        case .csv(let path, let labelColumn):
            return try CSV.load(path: path, labelColumn: labelColumn)
        case .libsvm(let path, let featureCount):
            return try LIBSVM.load(path: path, featureCount: featureCount)
        case .npy(let features, let labels):
            return try NPYSource.load(features: features, labels: labels)
        case .synthetic(let rows, let features, let classes, let seed):
            try Synthetic.validate(rows: rows, features: features, classes: classes, spelling: description)
            return Synthetic.make(
                rows: rows, features: features, classes: classes, seed: seed, rowSeed: seed, name: description)
        }
    }

    /// The test split: digits test, fashion t10k, synthetic with seed+1 (1/5 of rows); nil if the source has none.
    ///
    /// File sources have a test split when a companion file exists: the file name with its last `train` replaced
    /// by `test` (`digits_train.csv` → `digits_test.csv`; for IDX by `t10k`), and for LIBSVM also `<path>.t`.
    /// Such a split is checked against the train split (same feature count), which is loaded for it; use
    /// `loadSplits()` to get both without reading the train files twice.
    public func loadTest() throws(DataError) -> Dataset? {
        switch self {
        case .digits:
            return try BundledDigits.load(split: "test")
        case .fashionMNIST(let directory):
            let (images, labels) = try Self.fashionFiles(directory: directory, prefix: "t10k")
            return try IDX.load(images: images, labels: labels)
        case .synthetic(let rows, let features, let classes, let seed):
            try Synthetic.validate(rows: rows, features: features, classes: classes, spelling: description)
            return Synthetic.make(
                rows: max(1, rows / 5), features: features, classes: classes, seed: seed, rowSeed: seed &+ 1,
                name: description + " (test)")
        case .idx, .csv, .libsvm, .npy:
            guard testCompanion() != nil else { return nil }
            return try loadSplits().test
        }
    }

    /// Both splits, checked against each other: equal feature counts, and one class count for both when both
    /// are classification data.
    public func loadSplits() throws(DataError) -> (train: Dataset, test: Dataset?) {
        let train = try loadTrain()
        let test: Dataset?
        switch self {
        case .digits, .fashionMNIST, .synthetic:
            test = try loadTest()
        case .idx, .csv, .npy, .libsvm:
            test = try loadCompanion(train: train)
        }
        guard var test else { return (train, nil) }
        guard test.featureCount == train.featureCount else {
            throw DataError(
                file: test.name,
                message: "feature count mismatch: the test split has \(test.featureCount) features, "
                    + "the train split \(train.name) has \(train.featureCount)")
        }
        if train.classCount > 0, test.classCount > 0, train.classCount != test.classCount {
            let classCount = max(train.classCount, test.classCount)
            test = test.with(classCount: classCount)
            return (train.with(classCount: classCount), test)
        }
        return (train, test)
    }

    private func loadCompanion(train: Dataset) throws(DataError) -> Dataset? {
        guard let companion = testCompanion() else { return nil }
        if case .libsvm(let path, .none) = companion {
            // A LIBSVM test file may simply not use the last features: pad it to the train width.
            let test = try LIBSVM.load(path: path, featureCount: nil)
            return test.featureCount < train.featureCount ? test.padded(to: train.featureCount) : test
        }
        return try companion.loadTrain()
    }

    /// The source of the test split's files, if they exist.
    func testCompanion() -> DataSource? {
        switch self {
        case .digits, .fashionMNIST, .synthetic:
            return nil
        case .idx(let images, let labels):
            guard let testImages = Self.companion(images, "t10k"), let testLabels = Self.companion(labels, "t10k")
            else { return nil }
            return .idx(images: testImages, labels: testLabels)
        case .csv(let path, let labelColumn):
            return Self.companion(path, "test").map { .csv(path: $0, labelColumn: labelColumn) }
        case .npy(let features, let labels):
            guard let testFeatures = Self.companion(features, "test"), let testLabels = Self.companion(labels, "test")
            else { return nil }
            return .npy(features: testFeatures, labels: testLabels)
        case .libsvm(let path, let featureCount):
            if FileManager.default.fileExists(atPath: path + ".t") {
                return .libsvm(path: path + ".t", featureCount: featureCount)
            }
            return Self.companion(path, "test").map { .libsvm(path: $0, featureCount: featureCount) }
        }
    }

    /// `path` with the last `train` of its file name replaced by `replacement`, if that file exists.
    private static func companion(_ path: String, _ replacement: String) -> String? {
        let slash = path.lastIndex(of: "/").map { path.index(after: $0) } ?? path.startIndex
        guard let range = path[slash...].range(of: "train", options: .backwards) else { return nil }
        let candidate = path.replacingCharacters(in: range, with: replacement)
        return FileManager.default.fileExists(atPath: candidate) ? candidate : nil
    }

    /// The images and labels files of a Fashion-MNIST split (gzip preferred), or the install hint.
    private static func fashionFiles(directory: String, prefix: String) throws(DataError) -> (String, String) {
        func find(_ name: String) -> String? {
            let base = "\(directory)/\(prefix)-\(name)"
            return [base + ".gz", base].first { FileManager.default.fileExists(atPath: $0) }
        }
        guard let images = find("images-idx3-ubyte"), let labels = find("labels-idx1-ubyte") else {
            throw DataError(
                file: directory,
                message:
                    "Fashion-MNIST not found (no \(prefix)-images-idx3-ubyte.gz and \(prefix)-labels-idx1-ubyte.gz); "
                    + "install with `apt-get install dataset-fashion-mnist`")
        }
        return (images, labels)
    }
}

extension Dataset {
    /// This data set with zero features appended to every row up to `width`.
    func padded(to width: Int) -> Dataset {
        var wide = [Float](repeating: 0, count: rowCount * width)
        let values = features  // built once when stored as bytes
        for row in 0..<rowCount {
            for feature in 0..<featureCount {
                wide[row * width + feature] = values[row * featureCount + feature]
            }
        }
        return Dataset(name: name, featureCount: width, features: wide, labels: labels, classCount: classCount)
    }
}

extension String {
    /// The rest of the string after `prefix`, or nil if it does not start with it.
    func dropPrefix(_ prefix: String) -> Substring? {
        hasPrefix(prefix) ? dropFirst(prefix.count) : nil
    }
}
