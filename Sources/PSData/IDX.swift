/// The IDX format of MNIST and Fashion-MNIST: a big-endian header (magic `0x00000803` for u8 images
/// `[count][rows][columns]`, `0x00000801` for u8 labels `[count]`), then the raw bytes.
enum IDX {
    static let imagesMagic: UInt32 = 0x0000_0803
    static let labelsMagic: UInt32 = 0x0000_0801

    /// Reads an images file and a labels file (plain or gzip) into a data set with pixels scaled to [0, 1]
    /// (`Float(byte) / 255`), kept as the bytes (a quarter of the memory of floats).
    static func load(images: String, labels: String) throws(DataError) -> Dataset {
        let imageBytes = try FileBytes.read(images)
        let labelBytes = try FileBytes.read(labels)
        let (imageCount, pixelsPerImage) = try imagesHeader(imageBytes, file: images)
        let labelCount = try labelsHeader(labelBytes, file: labels)
        guard imageCount == labelCount else {
            throw DataError(
                file: labels,
                message: "\(labelCount) labels but \(images) holds \(imageCount) images")
        }
        let pixels = Array(imageBytes[16..<(16 + imageCount * pixelsPerImage)])
        var labelValues = [Float](repeating: 0, count: labelCount)
        var maximum = 0
        for i in 0..<labelCount {
            let label = Int(labelBytes[8 + i])
            labelValues[i] = Float(label)
            maximum = max(maximum, label)
        }
        return Dataset(
            name: images, featureCount: pixelsPerImage, bytes: pixels, divisor: 255, labels: labelValues,
            classCount: labelCount == 0 ? 0 : maximum + 1)
    }

    /// Checks an images header and the data length; returns the image count and pixels per image.
    static func imagesHeader(_ bytes: [UInt8], file: String) throws(DataError) -> (count: Int, pixels: Int) {
        try checkMagic(bytes, expected: imagesMagic, kind: "images", file: file)
        guard bytes.count >= 16 else {
            throw DataError(
                file: file, location: "byte offset \(bytes.count)",
                message: "truncated header: an IDX images header is 16 bytes, found \(bytes.count)")
        }
        let count = Int(bigEndian(bytes, at: 4))
        let rows = Int(bigEndian(bytes, at: 8))
        let columns = Int(bigEndian(bytes, at: 12))
        guard rows > 0, columns > 0 else {
            throw DataError(
                file: file, location: "byte offset 8", message: "image size \(rows)x\(columns) has no pixels")
        }
        let (perImage, overflow1) = rows.multipliedReportingOverflow(by: columns)
        let (expected, overflow2) = count.multipliedReportingOverflow(by: perImage)
        guard !overflow1, !overflow2 else {
            throw DataError(
                file: file, location: "byte offset 4",
                message: "header declares \(count) images of \(rows)x\(columns): too large")
        }
        guard bytes.count - 16 == expected else {
            throw DataError(
                file: file, location: "byte offset 16",
                message: "expected \(expected) bytes of pixels after the 16-byte header, found \(bytes.count - 16)")
        }
        return (count, rows * columns)
    }

    /// Checks a labels header and the data length; returns the label count.
    static func labelsHeader(_ bytes: [UInt8], file: String) throws(DataError) -> Int {
        try checkMagic(bytes, expected: labelsMagic, kind: "labels", file: file)
        guard bytes.count >= 8 else {
            throw DataError(
                file: file, location: "byte offset \(bytes.count)",
                message: "truncated header: an IDX labels header is 8 bytes, found \(bytes.count)")
        }
        let count = Int(bigEndian(bytes, at: 4))
        guard bytes.count - 8 == count else {
            throw DataError(
                file: file, location: "byte offset 8",
                message: "expected \(count) bytes of labels after the 8-byte header, found \(bytes.count - 8)")
        }
        return count
    }

    private static func checkMagic(_ bytes: [UInt8], expected: UInt32, kind: String, file: String) throws(DataError) {
        guard bytes.count >= 4 else {
            throw DataError(
                file: file, location: "byte offset 0",
                message: "truncated: \(bytes.count) bytes is too short for an IDX \(kind) file")
        }
        let magic = bigEndian(bytes, at: 0)
        guard magic == expected else {
            throw DataError(
                file: file, location: "byte offset 0",
                message: "bad IDX magic \(hex(magic)), expected \(hex(expected)) (\(kind))")
        }
    }

    private static func bigEndian(_ bytes: [UInt8], at offset: Int) -> UInt32 {
        UInt32(bytes[offset]) << 24 | UInt32(bytes[offset + 1]) << 16 | UInt32(bytes[offset + 2]) << 8
            | UInt32(bytes[offset + 3])
    }

    private static func hex(_ value: UInt32) -> String {
        let digits = String(value, radix: 16)
        return "0x" + String(repeating: "0", count: 8 - digits.count) + digits
    }
}
