/// A data set with sparse rows held in compressed sparse row (CSR) form: no dense copy of the features.
///
/// Row `r`'s features are `featureIds[rowStarts[r]..<rowStarts[r + 1]]` (strictly increasing, each below
/// `featureCount`) with the matching `values`; absent features are 0. Feature ids are `UInt32`, so a LIBSVM file
/// may use indices up to 2^32 (id = index - 1).
///
/// ```swift
/// let data = try SparseDataSource(parsing: "synthetic-sparse:1000,5000,10").loadTrain()
/// let batch = data.batch(rows: [3, 1])
/// let touched = batch.touchedRows       // sorted, unique: the rows of a row-sparse table to pull
/// ```
public struct SparseDataset: Sendable, Equatable {
    /// A name for messages: the file path or the `--data` spelling.
    public let name: String
    /// The number of features (the width of a dense row, the row count of a sparse-lr weight table).
    public let featureCount: Int
    /// `rowCount + 1` offsets into `featureIds` and `values`; `rowStarts[0] == 0`.
    public let rowStarts: [Int]
    /// Every row's feature ids, row after row, strictly increasing within a row.
    public let featureIds: [UInt32]
    /// The value of each entry of `featureIds`.
    public let values: [Float]
    /// One label per row: a class index as Float.
    public let labels: [Float]
    /// The number of classes (max label + 1), 0 for regression data.
    public let classCount: Int

    /// The number of rows (examples).
    public var rowCount: Int { labels.count }
    /// The number of stored (non-zero) entries.
    public var entryCount: Int { featureIds.count }

    /// Creates a data set; the CSR arrays must be consistent (a programmer error otherwise).
    public init(
        name: String, featureCount: Int, rowStarts: [Int], featureIds: [UInt32], values: [Float], labels: [Float],
        classCount: Int
    ) {
        precondition(featureCount > 0, "SparseDataset: featureCount must be positive")
        precondition(rowStarts.count == labels.count + 1, "SparseDataset: rowStarts do not match labels")
        precondition(rowStarts.first == 0 && rowStarts.last == featureIds.count, "SparseDataset: bad rowStarts")
        precondition(featureIds.count == values.count, "SparseDataset: ids and values differ in length")
        self.name = name
        self.featureCount = featureCount
        self.rowStarts = rowStarts
        self.featureIds = featureIds
        self.values = values
        self.labels = labels
        self.classCount = classCount
    }

    /// The entries of `row` as (feature id, value) slices.
    public func row(_ row: Int) -> (ids: ArraySlice<UInt32>, values: ArraySlice<Float>) {
        let range = rowStarts[row]..<rowStarts[row + 1]
        return (featureIds[range], values[range])
    }

    /// The given rows, in order, as a CSR batch.
    public func batch(rows: some Collection<Int>) -> SparseBatch {
        var starts = [0]
        starts.reserveCapacity(rows.count + 1)
        var ids: [UInt32] = []
        var batchValues: [Float] = []
        var batchLabels: [Float] = []
        batchLabels.reserveCapacity(rows.count)
        for row in rows {
            precondition(row >= 0 && row < rowCount, "batch: row \(row) out of range 0..<\(rowCount)")
            let range = rowStarts[row]..<rowStarts[row + 1]
            ids.append(contentsOf: featureIds[range])
            batchValues.append(contentsOf: values[range])
            batchLabels.append(labels[row])
            starts.append(ids.count)
        }
        return SparseBatch(rowStarts: starts, featureIds: ids, values: batchValues, labels: batchLabels)
    }

    /// The dense form, `[rowCount][featureCount]` row-major, for tests and small comparisons only.
    public func densified() -> Dataset {
        var features = [Float](repeating: 0, count: rowCount * featureCount)
        for row in 0..<rowCount {
            for entry in rowStarts[row]..<rowStarts[row + 1] {
                features[row * featureCount + Int(featureIds[entry])] = values[entry]
            }
        }
        return Dataset(
            name: name, featureCount: featureCount, features: features, labels: labels, classCount: classCount)
    }

    /// Checks that every label is a class index below `classCount`; the error names the first bad row.
    public func requireClassification(classCount: Int) throws(DataError) {
        for (row, label) in labels.enumerated() {
            guard Dataset.isClassIndex(label), Int(label) < classCount else {
                throw DataError(
                    file: name, location: "row \(row)",
                    message: "label \(label) is not a class index below the class count \(classCount)")
            }
        }
    }
}

/// A batch of sparse rows in CSR form, as a worker computes on it (PSModel's row-sparse models take it as
/// `SparseExamples`). Row `r`'s features are `featureIds[rowStarts[r]..<rowStarts[r + 1]]` with the matching
/// `values`.
///
/// ```swift
/// // Row 0 has features 3 and 7, row 1 feature 2.
/// let batch = SparseBatch(rowStarts: [0, 2, 3], featureIds: [3, 7, 2], values: [1, 1, 1], labels: [1, 0])
/// ```
public struct SparseBatch: Sendable, Equatable {
    /// `rowCount + 1` offsets into `featureIds` and `values`.
    public let rowStarts: [Int]
    /// The rows' feature ids, row after row.
    public let featureIds: [UInt32]
    /// The value of each entry.
    public let values: [Float]
    /// One label per row.
    public let labels: [Float]

    /// Creates a batch from consistent CSR arrays.
    public init(rowStarts: [Int], featureIds: [UInt32], values: [Float], labels: [Float]) {
        precondition(rowStarts.count == labels.count + 1 && rowStarts.last == featureIds.count)
        precondition(featureIds.count == values.count)
        self.rowStarts = rowStarts
        self.featureIds = featureIds
        self.values = values
        self.labels = labels
    }

    /// The number of rows.
    public var rowCount: Int { labels.count }

    /// The sorted, de-duplicated feature ids the batch uses: the rows of a row-sparse table to pull and push.
    public var touchedRows: [UInt64] {
        var ids = featureIds.map { UInt64($0) }
        ids.sort()
        var unique: [UInt64] = []
        unique.reserveCapacity(ids.count)
        for id in ids where unique.last != id {
            unique.append(id)
        }
        return unique
    }
}
