import Foundation

/// An array read from a `.npy` file, converted to float32.
public struct NPYArray: Sendable, Equatable {
    /// The array's shape, outermost dimension first (C order).
    public let shape: [Int]
    /// The elements in C (row-major) order, converted to Float.
    public let values: [Float]
    /// The dtype the file declared, e.g. `<f4`.
    public let dtype: String

    public init(shape: [Int], values: [Float], dtype: String) {
        self.shape = shape
        self.values = values
        self.dtype = dtype
    }
}

/// A `.npy` file that cannot be read; the description names the file and what is wrong.
public struct NPYError: Error, CustomStringConvertible, Equatable, Sendable {
    public let file: String
    public let message: String

    public init(file: String, message: String) {
        self.file = file
        self.message = message
    }

    public var description: String { "\(file): \(message)" }
}

/// The numpy `.npy` format, version 1.0: a magic string, a Python-dict header padded to 64 bytes, raw data.
///
/// SwiftPS writes little-endian float32 (`<f4`) in C order, which `numpy.load` opens directly, and reads
/// `<f4`, `<f8`, `<i4`, `<i8`, `|u1` and `|i1` (converted to Float) in C order.
public enum NPY {
    static let magic: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59]  // "\x93NUMPY"

    /// The header bytes (magic, version 1.0, header length, padded dict) for a float32 C-order array.
    public static func header(float32Shape shape: [Int]) -> [UInt8] {
        let shapeText: String
        switch shape.count {
        case 0: shapeText = "()"
        case 1: shapeText = "(\(shape[0]),)"
        default: shapeText = "(" + shape.map(String.init).joined(separator: ", ") + ")"
        }
        var dict = "{'descr': '<f4', 'fortran_order': False, 'shape': \(shapeText), }"
        // magic(6) + version(2) + length(2) + dict + '\n' must be a multiple of 64.
        let unpadded = 10 + dict.utf8.count + 1
        let padding = (64 - unpadded % 64) % 64
        dict += String(repeating: " ", count: padding) + "\n"
        var bytes = magic
        bytes += [1, 0]
        let length = UInt16(dict.utf8.count)
        bytes += [UInt8(length & 0xFF), UInt8(length >> 8)]
        bytes += Array(dict.utf8)
        return bytes
    }

    /// The whole file for a float32 array: header followed by the little-endian values.
    public static func encode(float32 values: UnsafeBufferPointer<Float>, shape: [Int]) -> [UInt8] {
        precondition(shape.reduce(1, *) == values.count, "NPY.encode: shape does not match the value count")
        var bytes = header(float32Shape: shape)
        bytes.reserveCapacity(bytes.count + values.count * 4)
        #if _endian(little)
            bytes.append(contentsOf: UnsafeRawBufferPointer(values))  // already little-endian: one bulk copy
        #else
            for value in values {
                let bits = value.bitPattern.littleEndian
                withUnsafeBytes(of: bits) { bytes.append(contentsOf: $0) }
            }
        #endif
        return bytes
    }

    /// What a `.npy` header declares: the shape, the dtype, the element size and where the data starts.
    public struct Header: Sendable, Equatable {
        public let shape: [Int]
        public let dtype: String
        public let elementSize: Int
        /// The byte offset of the first element (magic, version, length and the dict before it).
        public let dataStart: Int

        /// The number of elements the shape holds.
        public var count: Int { shape.reduce(1, *) }
    }

    /// Parses the header at the start of `data`, which must hold at least the whole header (the data may follow
    /// or not); `file` only names it in errors.
    public static func parseHeader(_ data: UnsafeRawBufferPointer, file: String) throws(NPYError) -> Header {
        func fail(_ message: String) -> NPYError { NPYError(file: file, message: message) }
        guard data.count >= 10 else {
            throw fail("truncated: \(data.count) bytes is shorter than the 10-byte .npy preamble")
        }
        guard Array(data[0..<6]) == magic else { throw fail("not a .npy file (bad magic)") }
        let major = data[6]
        let headerLength: Int
        let headerStart: Int
        switch major {
        case 1:
            headerLength = Int(data[8]) | Int(data[9]) << 8
            headerStart = 10
        case 2, 3:
            guard data.count >= 12 else { throw fail("truncated .npy v\(major) preamble") }
            headerLength = Int(data[8]) | Int(data[9]) << 8 | Int(data[10]) << 16 | Int(data[11]) << 24
            headerStart = 12
        default:
            throw fail("unsupported .npy format version \(major).\(data[7])")
        }
        guard headerStart + headerLength <= data.count else {
            throw fail("truncated header: declares \(headerLength) bytes, file has \(data.count - headerStart)")
        }
        guard let header = String(validating: data[headerStart..<(headerStart + headerLength)], as: UTF8.self)
        else { throw fail("header is not valid text") }
        guard let descr = dictValue(header, key: "descr") else { throw fail("header has no 'descr'") }
        guard let fortran = dictValue(header, key: "fortran_order") else { throw fail("header has no 'fortran_order'") }
        guard fortran == "False" else { throw fail("fortran_order arrays are not supported; save with C order") }
        guard let shapeText = dictValue(header, key: "shape") else { throw fail("header has no 'shape'") }
        let dtype = descr.trimmingCharacters(in: CharacterSet(charactersIn: "'\""))
        let shape = try parseShape(shapeText, fail: fail)
        let elementSize: Int
        switch dtype {
        case "<f4", "<i4": elementSize = 4
        case "<f8", "<i8": elementSize = 8
        case "|u1", "|i1", "<u1", "<i1": elementSize = 1
        default: throw fail("unsupported dtype \(dtype) (expected <f4, <f8, <i4, <i8 or |u1)")
        }
        return Header(shape: shape, dtype: dtype, elementSize: elementSize, dataStart: headerStart + headerLength)
    }

    /// Decodes a whole `.npy` file held in memory; `file` only names it in errors.
    public static func decode(_ data: UnsafeRawBufferPointer, file: String) throws(NPYError) -> NPYArray {
        func fail(_ message: String) -> NPYError { NPYError(file: file, message: message) }
        let header = try parseHeader(data, file: file)
        let shape = header.shape
        let dtype = header.dtype
        let count = header.count
        let elementSize = header.elementSize
        let dataStart = header.dataStart
        let expected = count * elementSize
        guard data.count - dataStart == expected else {
            throw fail(
                "data is \(data.count - dataStart) bytes but shape \(shape) of \(dtype) needs \(expected) bytes"
                    + (data.count - dataStart < expected ? " (truncated)" : ""))
        }
        let body = UnsafeRawBufferPointer(rebasing: data[dataStart...])
        var values = [Float](repeating: 0, count: count)
        // One pass per dtype: deciding the dtype per element (a string comparison) would dominate the decode.
        values.withUnsafeMutableBufferPointer { out in
            switch dtype {
            case "<f4":
                #if _endian(little)
                    // Same byte order as the host: one bulk copy (the header is padded, but the file's data
                    // offset is not guaranteed to be aligned, so copy bytes rather than rebinding them).
                    UnsafeMutableRawBufferPointer(out).copyMemory(
                        from: UnsafeRawBufferPointer(rebasing: body[0..<(count * 4)]))
                #else
                    for i in 0..<count {
                        out[i] = Float(
                            bitPattern: UInt32(littleEndian: body.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self))
                        )
                    }
                #endif
            case "<f8":
                for i in 0..<count {
                    let bits = UInt64(littleEndian: body.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self))
                    out[i] = Float(Double(bitPattern: bits))
                }
            case "<i4":
                for i in 0..<count {
                    out[i] = Float(Int32(littleEndian: body.loadUnaligned(fromByteOffset: i * 4, as: Int32.self)))
                }
            case "<i8":
                for i in 0..<count {
                    out[i] = Float(Int64(littleEndian: body.loadUnaligned(fromByteOffset: i * 8, as: Int64.self)))
                }
            case "|i1", "<i1":
                for i in 0..<count { out[i] = Float(Int8(bitPattern: body[i])) }
            default:
                for i in 0..<count { out[i] = Float(body[i]) }
            }
        }
        return NPYArray(shape: shape, values: values, dtype: dtype)
    }

    /// Reads and decodes a `.npy` file.
    public static func read(path: String) throws(NPYError) -> NPYArray {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw NPYError(file: path, message: "cannot read: \(error.localizedDescription)")
        }
        let decoded: Result<NPYArray, NPYError> = data.withUnsafeBytes { raw in
            Result { () throws(NPYError) -> NPYArray in try decode(raw, file: path) }
        }
        return try decoded.get()
    }

    /// The text of `key`'s value in a numpy header dict (`'key': value,`), trimmed.
    static func dictValue(_ header: String, key: String) -> String? {
        guard let keyRange = header.range(of: "'\(key)'") ?? header.range(of: "\"\(key)\"") else { return nil }
        var rest = header[keyRange.upperBound...].drop { $0 == " " }
        guard rest.first == ":" else { return nil }
        rest = rest.dropFirst().drop { $0 == " " }
        if rest.first == "(" {
            guard let close = rest.firstIndex(of: ")") else { return nil }
            return String(rest[rest.startIndex...close])
        }
        let end = rest.firstIndex { $0 == "," || $0 == "}" } ?? rest.endIndex
        return rest[rest.startIndex..<end].trimmingCharacters(in: .whitespaces)
    }

    static func parseShape(_ text: String, fail: (String) -> NPYError) throws(NPYError) -> [Int] {
        guard text.hasPrefix("("), text.hasSuffix(")") else { throw fail("malformed shape \(text)") }
        let inner = text.dropFirst().dropLast()
        var shape: [Int] = []
        for part in inner.split(separator: ",") {
            let trimmed = part.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty { continue }
            guard let dim = Int(trimmed), dim >= 0 else { throw fail("malformed shape \(text)") }
            shape.append(dim)
        }
        var count = 1
        for dim in shape {
            let (product, overflow) = count.multipliedReportingOverflow(by: dim)
            guard !overflow, product <= 1 << 40 else { throw fail("shape \(text) is too large") }
            count = product
        }
        return shape
    }
}
