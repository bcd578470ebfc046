/// Comma-separated values: one row per line, the label in the first or last column, an optional header line.
enum CSV {
    /// Reads a CSV file (plain or gzip); a first line with any non-numeric field is a header and is skipped.
    static func load(path: String, labelColumn: LabelColumn) throws(DataError) -> Dataset {
        let bytes = try FileBytes.read(path)
        var features: [Float] = []
        var labels: [Float] = []
        var columnCount: Int?
        var row: [Float] = []
        var sawFirstLine = false
        for (lineNumber, line) in Lines(bytes) {
            let fields = line.split(separator: UInt8(ascii: ","), omittingEmptySubsequences: false)
            if !sawFirstLine {
                sawFirstLine = true
                if fields.contains(where: { parseNumber($0) == nil }) {
                    columnCount = fields.count
                    continue
                }
            }
            let expected = columnCount ?? fields.count
            guard fields.count == expected else {
                throw DataError(
                    file: path, location: "line \(lineNumber)",
                    message: "has \(fields.count) columns, expected \(expected)")
            }
            guard fields.count >= 2 else {
                throw DataError(
                    file: path, location: "line \(lineNumber)",
                    message: "has \(fields.count) column; need a label and at least one feature")
            }
            columnCount = expected
            row.removeAll(keepingCapacity: true)
            for (index, field) in fields.enumerated() {
                guard let value = parseNumber(field) else {
                    throw DataError(
                        file: path, location: "line \(lineNumber), column \(index + 1)",
                        message: "'\(text(field).trimmingSpaces())' is not a number")
                }
                row.append(value)
            }
            switch labelColumn {
            case .first:
                labels.append(row[0])
                features.append(contentsOf: row[1...])
            case .last:
                labels.append(row[row.count - 1])
                features.append(contentsOf: row[..<(row.count - 1)])
            }
        }
        guard let columnCount, !labels.isEmpty else { throw DataError(file: path, message: "no data rows") }
        return Dataset(
            name: path, featureCount: columnCount - 1, features: features, labels: labels,
            classCount: Dataset.inferredClassCount(labels: labels))
    }
}

/// The LIBSVM / SVMlight format: `label index:value …` with 1-based increasing indices; absent features are 0.
///
/// Labels written as -1/+1 (every label -1 or +1) are read as classes 0 and 1.
enum LIBSVM {
    /// Reads a LIBSVM file (plain or gzip) into a dense data set; `featureCount` nil means the largest index seen.
    /// The file is parsed (and its errors reported) by `SparseLIBSVM`, then the rows are laid out densely.
    static func load(path: String, featureCount: Int?) throws(DataError) -> Dataset {
        let sparse = try SparseLIBSVM.load(path: path, featureCount: featureCount)
        let width = sparse.featureCount
        let rowCount = sparse.rowCount
        let (total, overflow) = rowCount.multipliedReportingOverflow(by: width)
        guard !overflow, total <= 1 << 34 else {
            throw DataError(file: path, message: "\(rowCount) rows x \(width) features is too large to hold densely")
        }
        var features = [Float](repeating: 0, count: total)
        for row in 0..<rowCount {
            for entry in sparse.rowStarts[row]..<sparse.rowStarts[row + 1] {
                features[row * width + Int(sparse.featureIds[entry])] = sparse.values[entry]
            }
        }
        return Dataset(
            name: path, featureCount: width, features: features, labels: sparse.labels,
            classCount: sparse.classCount)
    }
}

/// The non-blank lines of a text file with their 1-based line numbers, a trailing `\r` removed.
struct Lines: Sequence {
    let bytes: [UInt8]

    init(_ bytes: [UInt8]) {
        self.bytes = bytes
    }

    func makeIterator() -> Iterator {
        Iterator(bytes: bytes)
    }

    struct Iterator: IteratorProtocol {
        let bytes: [UInt8]
        var position = 0
        var lineNumber = 0

        init(bytes: [UInt8]) {
            self.bytes = bytes
        }

        mutating func next() -> (Int, ArraySlice<UInt8>)? {
            while position < bytes.count {
                lineNumber += 1
                let end = bytes[position...].firstIndex(of: UInt8(ascii: "\n")) ?? bytes.count
                var line = bytes[position..<end]
                position = end + 1
                if line.last == UInt8(ascii: "\r") { line = line.dropLast() }
                if line.allSatisfy({ $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\t") }) { continue }
                return (lineNumber, line)
            }
            return nil
        }
    }
}

/// A finite number in a field (surrounding spaces allowed), or nil.
func parseNumber(_ field: ArraySlice<UInt8>) -> Float? {
    guard let value = Float(text(field).trimmingSpaces()), value.isFinite else { return nil }
    return value
}

/// A field as text for parsing and messages.
func text(_ field: ArraySlice<UInt8>) -> String {
    String(decoding: field, as: UTF8.self)
}

extension String {
    func trimmingSpaces() -> Substring {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" }
        guard let first = firstIndex(where: { !isSpace($0) }) else { return self[endIndex...] }
        let last = lastIndex(where: { !isSpace($0) }) ?? first
        return self[first...last]
    }
}
