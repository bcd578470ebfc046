import Foundation
import PSData
import XCTest

/// A fresh temporary directory for one test, removed when the test ends.
final class TestFiles {
    let directory: String

    init(_ testCase: XCTestCase) throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("psdata-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        directory = url.path
        testCase.addTeardownBlock { try? FileManager.default.removeItem(at: url) }
    }

    /// Writes bytes to `name` in the directory and returns the path.
    @discardableResult
    func write(_ name: String, _ bytes: [UInt8]) throws -> String {
        let path = "\(directory)/\(name)"
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    /// Writes UTF-8 text to `name` in the directory and returns the path.
    @discardableResult
    func write(_ name: String, text: String) throws -> String {
        try write(name, Array(text.utf8))
    }

    /// Compresses `name` with /usr/bin/gzip into `name.gz` (the original is removed) and returns the new path.
    func gzip(_ path: String) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/gzip")
        process.arguments = ["-f", path]
        try process.run()
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0, "gzip \(path)")
        return path + ".gz"
    }
}

/// The error a throwing expression threw, or a test failure and nil.
func dataError<T>(_ body: () throws(DataError) -> T, file: StaticString = #filePath, line: UInt = #line)
    -> DataError?
{
    do {
        _ = try body()
        XCTFail("expected a DataError", file: file, line: line)
        return nil
    } catch {
        return error
    }
}

/// A `.npy` v1.0 file: header dict with `descr`, `fortranOrder` and `shape`, padded to 64 bytes, then `payload`.
func npyBytes(descr: String, shape: [Int], fortranOrder: Bool = false, payload: [UInt8]) -> [UInt8] {
    let shapeText = shape.count == 1 ? "(\(shape[0]),)" : "(" + shape.map(String.init).joined(separator: ", ") + ")"
    var dict = "{'descr': '\(descr)', 'fortran_order': \(fortranOrder ? "True" : "False"), 'shape': \(shapeText), }"
    dict += String(repeating: " ", count: (64 - (10 + dict.utf8.count + 1) % 64) % 64) + "\n"
    let length = dict.utf8.count
    return [0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(length & 0xFF), UInt8(length >> 8)] + Array(dict.utf8) + payload
}

/// Little-endian bytes of float32 values.
func float32Bytes(_ values: [Float]) -> [UInt8] {
    values.flatMap { value in withUnsafeBytes(of: value.bitPattern.littleEndian) { Array($0) } }
}

/// Little-endian bytes of int64 values.
func int64Bytes(_ values: [Int64]) -> [UInt8] {
    values.flatMap { value in withUnsafeBytes(of: value.littleEndian) { Array($0) } }
}

/// A big-endian 32-bit word, as in IDX headers.
func bigEndianBytes(_ value: UInt32) -> [UInt8] {
    [UInt8(value >> 24), UInt8((value >> 16) & 0xFF), UInt8((value >> 8) & 0xFF), UInt8(value & 0xFF)]
}
