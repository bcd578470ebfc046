import Foundation
import PSMath

/// A synthetic sparse binary classification problem (`--data synthetic-sparse:ROWS,FEATURES,NNZ[,SEED]`).
///
/// Each row has `nnz` distinct feature ids, each drawn from a Zipf(1) law over `0..<features` (id `k` with
/// probability about `1 / (k + 1)`: `k = floor((features + 1)^u) - 1` for a uniform `u`, redrawn on a repeat), all
/// with value 1, like one-hot categorical click-log features. Labels come from a planted sparse linear model: the
/// weight of feature `k` is non-zero for one id in `plantedDensityInverse` (chosen by hashing `k` with the seed),
/// then standard normal times `weightScale`; a row's label is 1 when `sum(w[k]) + noise * N(0, 1) > 0`, else 0.
/// Nothing about the model is stored densely, so `features` can be 2^32. Rows are drawn from splitmix64 with
/// `rowSeed` (the seed for the train split, seed + 1 for the test split, which has a fifth of the rows); the model
/// depends on the seed alone, so both splits share it.
enum SyntheticSparse {
    static let plantedDensityInverse: UInt64 = 4
    static let weightScale = 1.0
    static let noise = 0.5
    static let modelSalt: UInt64 = 0x5BA2_5E00_D1CE_0001
    static let maximumEntries = 1 << 30

    /// Checks the sizes; the error names `spelling` as the file.
    static func validate(rows: Int, features: Int, nnz: Int, spelling: String) throws(DataError) {
        guard rows >= 1 else { throw DataError(file: spelling, message: "ROWS must be at least 1, got \(rows)") }
        guard features >= 1, features <= 1 << 32 else {
            throw DataError(file: spelling, message: "FEATURES must be in 1...2^32, got \(features)")
        }
        guard nnz >= 1, nnz <= features, nnz <= 4096 else {
            throw DataError(
                file: spelling, message: "NNZ must be in 1...min(FEATURES, 4096), got \(nnz) for \(features) features")
        }
        let (total, overflow) = rows.multipliedReportingOverflow(by: nnz)
        guard !overflow, total <= maximumEntries else {
            throw DataError(
                file: spelling, message: "\(rows) rows x \(nnz) non-zeros is more than \(maximumEntries) entries")
        }
    }

    /// The planted weight of feature `id` (0 for most ids).
    static func plantedWeight(id: UInt64, seed: UInt64) -> Double {
        var generator = SplitMix64(seed: (seed ^ modelSalt) &+ id &* 0x9E37_79B9_7F4A_7C15)
        guard generator.next() % plantedDensityInverse == 0 else { return 0 }
        return weightScale * Synthetic.standardNormal(&generator)
    }

    /// Generates `rows` rows of the problem of `seed`, drawing them with `rowSeed`; with `hashRows`, each row's
    /// feature ids are then hashed into that many rows (`FeatureHashing`; the labels come from the unhashed ids).
    static func make(
        rows: Int, features: Int, nnz: Int, seed: UInt64, rowSeed: UInt64, name: String, hashRows: Int? = nil
    ) -> SparseDataset {
        var generator = SplitMix64(seed: rowSeed)
        var rowStarts = [Int](repeating: 0, count: rows + 1)
        var ids: [UInt32] = []
        ids.reserveCapacity(rows * nnz)
        var values: [Float] = []
        if hashRows != nil { values.reserveCapacity(rows * nnz) }
        var labels = [Float](repeating: 0, count: rows)
        let logSpan = log(Double(features) + 1)
        var row: [UInt32] = []
        for index in 0..<rows {
            row.removeAll(keepingCapacity: true)
            var attempts = 0
            while row.count < nnz {
                attempts += 1
                let id: UInt32
                if attempts > 64 * nnz {
                    // Only when nnz is close to features: fill with the smallest unused ids.
                    id = UInt32((0..<features).first { !row.contains(UInt32($0)) }!)
                } else {
                    let rank = exp(generator.nextUnitDouble() * logSpan) - 1
                    id = UInt32(min(max(Int(rank), 0), features - 1))
                }
                if !row.contains(id) { row.append(id) }
            }
            row.sort()
            var margin = 0.0
            for id in row {
                margin += plantedWeight(id: UInt64(id), seed: seed)
            }
            margin += noise * Synthetic.standardNormal(&generator)
            labels[index] = margin > 0 ? 1 : 0
            let rowStart = ids.count
            ids.append(contentsOf: row)
            if let hashRows {
                values.append(contentsOf: repeatElement(1, count: row.count))
                FeatureHashing.foldRow(ids: &ids, values: &values, from: rowStart, rows: hashRows)
            }
            rowStarts[index + 1] = ids.count
        }
        if hashRows == nil { values = [Float](repeating: 1, count: ids.count) }
        return SparseDataset(
            name: name, featureCount: hashRows ?? features, rowStarts: rowStarts, featureIds: ids, values: values,
            labels: labels, classCount: 2)
    }
}

/// Where a sparse data set comes from: the value of `--data` for a sparse model, parsed once.
///
/// ```swift
/// let source = try SparseDataSource(parsing: "synthetic-sparse:20000,100000,20")
/// let (train, test) = try source.loadSplits()
/// ```
public enum SparseDataSource: Sendable, Equatable, Codable, CustomStringConvertible {
    /// A LIBSVM file, plain or gzip, read into CSR form; `featureCount` nil means the largest index in the file.
    case libsvm(path: String, featureCount: Int?)
    /// The Zipf / planted-model generator (see `SyntheticSparse`).
    case syntheticSparse(rows: Int, features: Int, nnz: Int, seed: UInt64)

    /// Parses `synthetic-sparse:ROWS,FEATURES,NNZ[,SEED]`, `libsvm:PATH[,FEATURES]` or a path ending in `.svm`,
    /// `.libsvm` (optionally `.gz`).
    public init(parsing text: String) throws(DataError) {
        if let rest = text.dropPrefix("synthetic-sparse:") {
            let parts = rest.split(separator: ",", omittingEmptySubsequences: false)
            guard parts.count == 3 || parts.count == 4 else {
                throw DataError(file: text, message: "expected synthetic-sparse:ROWS,FEATURES,NNZ[,SEED]")
            }
            var numbers: [Int] = []
            for (name, part) in zip(["ROWS", "FEATURES", "NNZ"], parts) {
                guard let value = Int(part) else {
                    throw DataError(file: text, message: "\(name) '\(part)' is not an integer")
                }
                numbers.append(value)
            }
            var seed = DataSource.defaultSyntheticSeed
            if parts.count == 4 {
                guard let value = UInt64(parts[3]) else {
                    throw DataError(file: text, message: "SEED '\(parts[3])' is not a non-negative integer")
                }
                seed = value
            }
            try SyntheticSparse.validate(rows: numbers[0], features: numbers[1], nnz: numbers[2], spelling: text)
            self = .syntheticSparse(rows: numbers[0], features: numbers[1], nnz: numbers[2], seed: seed)
            return
        }
        switch try DataSource(parsing: text) {
        case .libsvm(let path, let featureCount):
            self = .libsvm(path: path, featureCount: featureCount)
        default:
            throw DataError(
                file: text,
                message: "a sparse model reads synthetic-sparse:ROWS,FEATURES,NNZ[,SEED], libsvm:PATH[,FEATURES] "
                    + "or a path ending in .svm or .libsvm")
        }
    }

    /// Refuses a hashed table size outside 1...`FeatureHashing.maximumRows`.
    static func checkHashRows(_ rows: Int?, spelling: String) throws(DataError) {
        guard let rows else { return }
        guard rows >= 1, rows <= FeatureHashing.maximumRows else {
            throw DataError(file: spelling, message: "cannot hash features into \(rows) rows, expected 1...2^31")
        }
    }

    /// Whether `text` names a sparse-only source (`synthetic-sparse:…`).
    public static func isSparseOnly(_ text: String) -> Bool {
        text.hasPrefix("synthetic-sparse:")
    }

    /// A spelling that `init(parsing:)` reads back to this source.
    public var description: String {
        switch self {
        case .libsvm(let path, let featureCount):
            if let featureCount { return "libsvm:\(path),\(featureCount)" }
            return "libsvm:\(path)"
        case .syntheticSparse(let rows, let features, let nnz, let seed):
            return "synthetic-sparse:\(rows),\(features),\(nnz),\(seed)"
        }
    }

    /// Loads the training split; `hashFeatures` (1...`FeatureHashing.maximumRows`) hashes every feature id into
    /// that many rows as the data is read (`--hash-features`), so the data set has `hashFeatures` features.
    public func loadTrain(hashFeatures: Int? = nil) throws(DataError) -> SparseDataset {
        try Self.checkHashRows(hashFeatures, spelling: description)
        switch self {
        case .libsvm(let path, let featureCount):
            return try SparseLIBSVM.load(path: path, featureCount: featureCount, hashRows: hashFeatures)
        case .syntheticSparse(let rows, let features, let nnz, let seed):
            try SyntheticSparse.validate(rows: rows, features: features, nnz: nnz, spelling: description)
            return SyntheticSparse.make(
                rows: rows, features: features, nnz: nnz, seed: seed, rowSeed: seed, name: description,
                hashRows: hashFeatures)
        }
    }

    /// Both splits: synthetic draws a fifth of the rows with seed + 1; a LIBSVM file's test split is `PATH.t` or
    /// the file name with its last `train` replaced by `test`, read with the train split's feature count. Both are
    /// hashed alike with `hashFeatures`.
    public func loadSplits(hashFeatures: Int? = nil) throws(DataError) -> (train: SparseDataset, test: SparseDataset?) {
        let train = try loadTrain(hashFeatures: hashFeatures)
        switch self {
        case .syntheticSparse(let rows, let features, let nnz, let seed):
            let test = SyntheticSparse.make(
                rows: max(1, rows / 5), features: features, nnz: nnz, seed: seed, rowSeed: seed &+ 1,
                name: description + " (test)", hashRows: hashFeatures)
            return (train, test)
        case .libsvm(let path, let featureCount):
            guard
                case .libsvm(let testPath, _) = DataSource.libsvm(path: path, featureCount: featureCount)
                    .testCompanion()
            else { return (train, nil) }
            let test = try SparseLIBSVM.load(path: testPath, featureCount: featureCount, hashRows: hashFeatures)
            guard test.featureCount <= train.featureCount else {
                throw DataError(
                    file: testPath,
                    message: "the test split uses \(test.featureCount) features, the train split \(train.featureCount)")
            }
            let classCount = max(train.classCount, test.classCount)
            return (
                train.with(featureCount: train.featureCount, classCount: classCount),
                test.with(featureCount: train.featureCount, classCount: classCount)
            )
        }
    }
}

extension SparseDataset {
    /// This data set with another feature count (at least the largest id + 1) and class count.
    func with(featureCount: Int, classCount: Int) -> SparseDataset {
        SparseDataset(
            name: name, featureCount: featureCount, rowStarts: rowStarts, featureIds: featureIds, values: values,
            labels: labels, classCount: classCount)
    }
}
