/// Label checks that name the file, the line and the likely fix.
extension DataSource {
    /// The 1-based line of a CSV or LIBSVM file that holds data row `row` (0-based; a CSV header and blank lines
    /// are not rows), or nil for other sources and rows past the end.
    public func line(ofRow row: Int) -> Int? {
        switch self {
        case .csv(let path, _):
            guard let bytes = try? FileBytes.read(path) else { return nil }
            var seen = 0
            var first = true
            for (lineNumber, line) in Lines(bytes) {
                if first {
                    first = false
                    let fields = line.split(separator: UInt8(ascii: ","), omittingEmptySubsequences: false)
                    if fields.contains(where: { parseNumber($0) == nil }) { continue }
                }
                if seen == row { return lineNumber }
                seen += 1
            }
            return nil
        case .libsvm(let path, _):
            guard let bytes = try? FileBytes.read(path) else { return nil }
            var seen = 0
            for (lineNumber, line) in Lines(bytes) {
                let content = line.split(separator: UInt8(ascii: "#"), maxSplits: 1, omittingEmptySubsequences: false)[
                    0]
                guard content.contains(where: { $0 != UInt8(ascii: " ") && $0 != UInt8(ascii: "\t") }) else { continue }
                if seen == row { return lineNumber }
                seen += 1
            }
            return nil
        default:
            return nil
        }
    }

    /// Checks that every label of `data` (loaded from this source) is a class index, and below `classCount` when
    /// given. The error names the file, the line (`row N`, from 0, for binary formats) and the likely fix: the other
    /// `--label-column` when the other end of a CSV row holds class indices, `--model linear` for real-valued
    /// targets, or class indices from 0 for a negative label.
    public func requireClassLabels(_ data: Dataset, classCount: Int? = nil) throws(DataError) {
        for (row, label) in data.labels.enumerated() {
            let isIndex = Dataset.isClassIndex(label)
            let fits = isIndex && (classCount.map { Int(label) < $0 } ?? true)
            if fits { continue }
            let location = line(ofRow: row).map { "line \($0)" } ?? "row \(row)"
            let shown = label == label.rounded() && abs(label) < 1e9 ? "\(Int(label))" : "\(label)"
            var message: String
            if label < 0, label == label.rounded() {
                message = "label \(shown) is negative: class labels are indices 0, 1, 2, …"
                message += " (for -1/+1 labels, write 0 for -1)"
            } else if !isIndex {
                message = "label \(shown) is not a class index (an integer 0, 1, 2, …)"
            } else {
                message = "label \(shown) is not a class index below the class count \(classCount ?? 0)"
            }
            if label >= 0 || label != label.rounded(), case .csv(_, let column) = self,
                otherColumnHoldsClasses(data, column: column)
            {
                let other: LabelColumn = column == .first ? .last : .first
                message += "; the \(other.rawValue) column holds class indices: is the label there (--label-column "
                message += "\(other.rawValue))?"
            } else if !isIndex, label >= 0 {
                message += "; for real-valued targets use --model linear"
            }
            throw DataError(file: data.name, location: location, message: message)
        }
    }

    /// Whether every row's value at the other end of a CSV row (a feature now) is a class index.
    private func otherColumnHoldsClasses(_ data: Dataset, column: LabelColumn) -> Bool {
        guard data.featureCount > 0, data.rowCount > 0 else { return false }
        let offset = column == .first ? data.featureCount - 1 : 0
        for row in 0..<data.rowCount {
            guard Dataset.isClassIndex(data.feature(row: row, column: offset)) else { return false }
        }
        return true
    }
}
