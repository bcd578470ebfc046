/// Reads LIBSVM / SVMlight files straight into CSR form (`SparseDataset`), with no dense copy.
///
/// The same format as `LIBSVM` (`label index:value …`, 1-based strictly increasing indices, `#` comments), read
/// in one pass over the bytes: indices up to 2^32 (feature id = index - 1, a `UInt32`), any number of rows.
/// Labels written as -1/+1 (a binary file with no other label) are read as classes 0 and 1.
enum SparseLIBSVM {
    /// The largest 1-based index a file may use.
    static let maximumIndex: UInt64 = 1 << 32

    /// Reads a LIBSVM file (plain or gzip); `featureCount` nil means the largest index seen. With `hashRows`, each
    /// row's feature ids are hashed into that many rows as it is read (`FeatureHashing`), and the data set has
    /// `hashRows` features.
    static func load(path: String, featureCount: Int?, hashRows: Int? = nil) throws(DataError) -> SparseDataset {
        let bytes = try FileBytes.read(path)
        var labels: [Float] = []
        var rowStarts: [Int] = [0]
        var ids: [UInt32] = []
        var values: [Float] = []
        var largestIndex: UInt64 = 0
        let limit = featureCount.map { UInt64($0) } ?? maximumIndex
        try bytes.withUnsafeBufferPointer { (buffer) throws(DataError) in
            var scanner = ByteScanner(bytes: buffer)
            while let lineNumber = scanner.nextLine() {
                guard let labelToken = scanner.nextToken() else { continue }
                guard let label = ByteScanner.number(labelToken) else {
                    throw DataError(
                        file: path, location: "line \(lineNumber)",
                        message: "label '\(ByteScanner.text(labelToken))' is not a number")
                }
                labels.append(label)
                let rowStart = ids.count
                var previous: UInt64 = 0
                while let token = scanner.nextToken() {
                    guard let colon = token.firstIndex(of: UInt8(ascii: ":")),
                        let index = ByteScanner.unsigned(UnsafeBufferPointer(rebasing: token[..<colon])),
                        let value = ByteScanner.number(UnsafeBufferPointer(rebasing: token[(colon + 1)...]))
                    else {
                        throw DataError(
                            file: path, location: "line \(lineNumber)",
                            message: "'\(ByteScanner.text(token))' is not INDEX:VALUE")
                    }
                    guard index >= 1 else {
                        throw DataError(
                            file: path, location: "line \(lineNumber)",
                            message: "index 0 in '\(ByteScanner.text(token))': indices start at 1")
                    }
                    guard index > previous else {
                        throw DataError(
                            file: path, location: "line \(lineNumber)",
                            message:
                                "index \(index) in '\(ByteScanner.text(token))' does not increase (previous index \(previous))"
                        )
                    }
                    guard index <= limit else {
                        let what = featureCount.map { "the feature count \($0)" } ?? "2^32"
                        throw DataError(
                            file: path, location: "line \(lineNumber)",
                            message: "index \(index) in '\(ByteScanner.text(token))' exceeds \(what)")
                    }
                    previous = index
                    largestIndex = max(largestIndex, index)
                    ids.append(UInt32(index - 1))
                    values.append(value)
                }
                if let hashRows {
                    FeatureHashing.foldRow(ids: &ids, values: &values, from: rowStart, rows: hashRows)
                }
                rowStarts.append(ids.count)
            }
        }
        guard !labels.isEmpty else { throw DataError(file: path, message: "no data rows") }
        let width = hashRows ?? featureCount ?? Int(largestIndex)
        guard width > 0 else { throw DataError(file: path, message: "no features (no INDEX:VALUE pair in any row)") }
        mapSignedBinaryLabels(&labels)
        return SparseDataset(
            name: path, featureCount: width, rowStarts: rowStarts, featureIds: ids, values: values, labels: labels,
            classCount: Dataset.inferredClassCount(labels: labels))
    }

    /// Rewrites -1/+1 labels as 0/1 when every label is -1 or +1 and -1 occurs (LIBSVM's binary convention).
    static func mapSignedBinaryLabels(_ labels: inout [Float]) {
        guard labels.contains(-1), labels.allSatisfy({ $0 == -1 || $0 == 1 }) else { return }
        for index in labels.indices where labels[index] == -1 {
            labels[index] = 0
        }
    }
}

/// Splits a text buffer into lines and whitespace-separated tokens without allocating.
struct ByteScanner {
    let bytes: UnsafeBufferPointer<UInt8>
    var position = 0
    var lineEnd = 0
    var lineNumber = 0

    init(bytes: UnsafeBufferPointer<UInt8>) {
        self.bytes = bytes
    }

    /// Moves to the next line (a `#` starts a comment); returns its 1-based number, nil at the end.
    mutating func nextLine() -> Int? {
        if lineNumber > 0 { position = lineEnd + 1 }
        guard position < bytes.count else { return nil }
        lineNumber += 1
        var end = position
        while end < bytes.count && bytes[end] != UInt8(ascii: "\n") { end += 1 }
        lineEnd = end
        return lineNumber
    }

    /// The next token of the current line (space, tab or `\r` separate), nil at its end or at a `#`.
    mutating func nextToken() -> UnsafeBufferPointer<UInt8>? {
        var start = position
        while start < lineEnd && Self.isSpace(bytes[start]) { start += 1 }
        guard start < lineEnd, bytes[start] != UInt8(ascii: "#") else {
            position = lineEnd
            return nil
        }
        var end = start
        while end < lineEnd && !Self.isSpace(bytes[end]) && bytes[end] != UInt8(ascii: "#") { end += 1 }
        position = end
        return UnsafeBufferPointer(rebasing: bytes[start..<end])
    }

    static func isSpace(_ byte: UInt8) -> Bool {
        byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") || byte == UInt8(ascii: "\r")
    }

    /// A decimal unsigned integer (at most 19 digits), or nil.
    static func unsigned(_ token: UnsafeBufferPointer<UInt8>) -> UInt64? {
        guard !token.isEmpty, token.count <= 19 else { return nil }
        var value: UInt64 = 0
        for byte in token {
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
            value = value * 10 + UInt64(byte - UInt8(ascii: "0"))
        }
        return value
    }

    /// A finite number: small integers parsed directly (exact), anything else through `Float(String)`.
    static func number(_ token: UnsafeBufferPointer<UInt8>) -> Float? {
        var digits = token[...]
        var negative = false
        if let sign = digits.first, sign == UInt8(ascii: "-") || sign == UInt8(ascii: "+") {
            negative = sign == UInt8(ascii: "-")
            digits = digits.dropFirst()
        }
        if !digits.isEmpty, digits.count <= 7,
            let value = unsigned(UnsafeBufferPointer(rebasing: digits))
        {
            return negative ? -Float(value) : Float(value)
        }
        guard let value = Float(text(token)), value.isFinite else { return nil }
        return value
    }

    static func text(_ token: UnsafeBufferPointer<UInt8>) -> String {
        String(decoding: token, as: UTF8.self)
    }
}
