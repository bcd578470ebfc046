import Foundation
import PSCheckpoint
import XCTest

final class CheckpointReaderTests: CheckpointTestCase {
    private func rewrite(_ file: String, _ change: (inout [UInt8]) -> Void) throws {
        var bytes = [UInt8](try XCTUnwrap(FileManager.default.contents(atPath: file)))
        change(&bytes)
        try Data(bytes).write(to: URL(fileURLWithPath: file))
    }

    func test_flippedDataByte_refusedWithCRCMismatchNamingTheFile() throws {
        let directory = try write(step: 1)
        let file = directory + "/fc1.weight.npy"
        try rewrite(file) { $0[$0.count - 3] ^= 0x10 }
        assertLoadFails(directory, file: file, contains: ["CRC32C mismatch: manifest says 0x", ", file has 0x"])
    }

    func test_truncatedFile_refusedNamingTheFile() throws {
        let directory = try write(step: 1)
        let file = directory + "/fc1.bias.adam_v.npy"
        try rewrite(file) { $0.removeLast(5) }
        assertLoadFails(directory, file: file, contains: ["CRC32C mismatch", "truncated"])
    }

    func test_missingFile_refusedNamingTheFile() throws {
        let directory = try write(step: 1)
        let file = directory + "/fc1.bias.npy"
        try FileManager.default.removeItem(atPath: file)
        assertLoadFails(directory, file: file, contains: ["missing", "'fc1.bias'"])
    }

    func test_shapeInFileDiffersFromManifest_refusedNamingBothShapes() throws {
        let directory = try write(step: 1)
        let file = directory + "/fc1.weight.npy"
        let values: [Float] = [1, 2, 3, 4, 5, 6]
        let bytes = values.withUnsafeBufferPointer { NPY.encode(float32: $0, shape: [3, 2]) }
        try Data(bytes).write(to: URL(fileURLWithPath: file))
        // Keep the CRC consistent so that the shape check, not the checksum, catches it.
        let manifestPath = directory + "/manifest.json"
        var manifest = try CheckpointManifest.decode(
            try XCTUnwrap(FileManager.default.contents(atPath: manifestPath)), file: manifestPath)
        manifest.tensors[0].crc32c = CRC32C.checksum(bytes)
        try manifest.encoded().write(to: URL(fileURLWithPath: manifestPath))
        assertLoadFails(directory, file: file, contains: ["shape mismatch: manifest says [2, 3], file has [3, 2]"])
    }

    func test_garbledManifest_refusedNamingManifest() throws {
        let directory = try write(step: 1)
        let manifestPath = directory + "/manifest.json"
        try rewrite(manifestPath) { $0.removeLast($0.count / 2) }
        assertLoadFails(directory, file: manifestPath, contains: ["not a valid checkpoint manifest", "not valid JSON"])
    }

    func test_manifestMissingField_refusedNamingTheField() throws {
        let directory = try write(step: 1)
        let manifestPath = directory + "/manifest.json"
        let text = try String(contentsOfFile: manifestPath, encoding: .utf8)
        try text.replacingOccurrences(of: "\"step\" :", with: "\"stepp\" :")
            .write(toFile: manifestPath, atomically: false, encoding: .utf8)
        assertLoadFails(directory, file: manifestPath, contains: ["missing field 'step'"])
    }

    func test_manifestFromNewerFormat_refused() throws {
        let directory = try write(step: 1)
        let manifestPath = directory + "/manifest.json"
        let text = try String(contentsOfFile: manifestPath, encoding: .utf8)
        try text.replacingOccurrences(of: "\"formatVersion\" : 1", with: "\"formatVersion\" : 2")
            .write(toFile: manifestPath, atomically: false, encoding: .utf8)
        assertLoadFails(directory, file: manifestPath, contains: ["unsupported formatVersion 2"])
    }

    func test_missingManifest_refusedNamingManifest() throws {
        let directory = try write(step: 1)
        try FileManager.default.removeItem(atPath: directory + "/manifest.json")
        assertLoadFails(directory, file: directory + "/manifest.json", contains: ["missing"])
    }

    func test_manifestNamingAPathOutsideTheCheckpoint_refused() throws {
        let directory = try write(step: 1)
        let manifestPath = directory + "/manifest.json"
        var manifest = try CheckpointManifest.decode(
            try XCTUnwrap(FileManager.default.contents(atPath: manifestPath)), file: manifestPath)
        manifest.tensors[0].file = "../../etc/passwd"
        try manifest.encoded().write(to: URL(fileURLWithPath: manifestPath))
        assertLoadFails(directory, file: manifestPath, contains: ["invalid file '../../etc/passwd'"])
    }

    func test_resolve_explicitDirectoryTakenAsIs() throws {
        let directory = try write(step: 3)
        try write(step: 4)
        XCTAssertEqual(try CheckpointReader.resolve(root: nil, spec: directory), directory)
        XCTAssertEqual(try CheckpointReader.resolve(root: root, spec: "latest"), path("step-0000000004"))
    }

    func test_resolve_errorsNameWhatIsMissing() throws {
        XCTAssertThrowsError(try CheckpointReader.resolve(root: nil, spec: "latest")) {
            XCTAssertTrue("\($0)".contains("needs a checkpoint root"), "\($0)")
        }
        XCTAssertThrowsError(try CheckpointReader.resolve(root: root, spec: "latest")) {
            XCTAssertEqual(($0 as? CheckpointError)?.file, self.path("latest"))
        }
        XCTAssertThrowsError(try CheckpointReader.resolve(root: nil, spec: path("nope"))) {
            XCTAssertEqual("\($0)", self.path("nope") + ": no such checkpoint directory")
        }
        XCTAssertThrowsError(try CheckpointReader.resolve(root: nil, spec: root)) {
            XCTAssertTrue("\($0)".contains("not a checkpoint"), "\($0)")
        }
        try Data("step-0000000009\n".utf8).write(to: URL(fileURLWithPath: path("latest")))
        XCTAssertThrowsError(try CheckpointReader.resolve(root: root, spec: "latest")) {
            XCTAssertEqual(($0 as? CheckpointError)?.file, self.path("step-0000000009"))
        }
        try Data("../elsewhere\n".utf8).write(to: URL(fileURLWithPath: path("latest")))
        XCTAssertThrowsError(try CheckpointReader.resolve(root: root, spec: "latest")) {
            XCTAssertTrue("\($0)".contains("does not name a checkpoint directory"), "\($0)")
        }
    }
}
