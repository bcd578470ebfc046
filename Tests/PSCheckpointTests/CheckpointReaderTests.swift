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

    /// A version 1 `.npy` file whose header declares `shape` (a Python tuple) over 16 bytes of float32 data.
    static func npy(shapeText: String) -> [UInt8] {
        var header = "{'descr': '<f4', 'fortran_order': False, 'shape': \(shapeText), }"
        while (10 + header.utf8.count + 1) % 64 != 0 { header += " " }
        header += "\n"
        let length = UInt16(header.utf8.count)
        return [0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(length & 0xFF), UInt8(length >> 8)] + Array(header.utf8)
            + [UInt8](repeating: 0, count: 16)
    }

    func test_decode_shapeProductOverflowing_throwsNamingTheFile() {
        for shape in ["(4611686018427387904, 4)", "(3037000500, 3037000500)", "(1099511627777,)"] {
            let bytes = Self.npy(shapeText: shape)
            XCTAssertThrowsError(
                try bytes.withUnsafeBytes { raw throws(NPYError) in try NPY.decode(raw, file: "big.npy") }
            ) { error in
                XCTAssertEqual((error as? NPYError)?.file, "big.npy")
                XCTAssertTrue("\(error)".contains("too large"), "\(error)")
            }
        }
    }

    func test_load_npyShapeOverflowingWithMatchingCRC_refusedAsCheckpointErrorNamingTheFile() throws {
        let directory = try write(step: 1)
        let file = directory + "/fc1.weight.npy"
        let bytes = Self.npy(shapeText: "(4611686018427387904, 4)")
        try Data(bytes).write(to: URL(fileURLWithPath: file))
        // Keep the CRC consistent so that the decoder's own check, not the checksum, catches it.
        let manifestPath = directory + "/manifest.json"
        var manifest = try CheckpointManifest.decode(
            try XCTUnwrap(FileManager.default.contents(atPath: manifestPath)), file: manifestPath)
        manifest.tensors[0].crc32c = CRC32C.checksum(bytes)
        try manifest.encoded().write(to: URL(fileURLWithPath: manifestPath))
        assertLoadFails(directory, file: file, contains: ["too large"])
    }

    func test_load_manifestCounterPast2To62_refusedNamingTheField() throws {
        let changes: [(String, (inout CheckpointManifest) -> Void)] = [
            ("field step is 18446744073709551615", { $0.step = UInt64.max }),
            ("field workerClocks.w0 is 4611686018427387905", { $0.workerClocks = ["w0": (1 << 62) + 1] }),
            ("field shardVersions[1] is 18446744073709551615", { $0.shardVersions = [1, UInt64.max] }),
            ("field optimizer.step", { $0.optimizer.step = UInt64.max }),
        ]
        for (index, (text, change)) in changes.enumerated() {
            let directory = try write(step: UInt64(index + 1))
            let manifestPath = directory + "/manifest.json"
            var manifest = try CheckpointManifest.decode(
                try XCTUnwrap(FileManager.default.contents(atPath: manifestPath)), file: manifestPath)
            change(&manifest)
            try manifest.encoded().write(to: URL(fileURLWithPath: manifestPath))
            assertLoadFails(directory, file: manifestPath, contains: [text])
        }
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

    func test_resolve_danglingLatest_fallsBackToTheNewestCompleteCheckpoint() throws {
        try write(step: 3)
        let four = try write(step: 4)
        // A crash between the renames that replace an existing step-N leaves `latest` naming a missing directory.
        try Data("step-0000000005\n".utf8).write(to: URL(fileURLWithPath: path("latest")))
        XCTAssertEqual(try CheckpointReader.resolve(root: root, spec: "latest"), path("step-0000000004"))
        try FileManager.default.removeItem(atPath: four + "/manifest.json")
        XCTAssertEqual(
            try CheckpointReader.resolve(root: root, spec: "latest"), path("step-0000000003"),
            "an incomplete directory is skipped")
    }

    func test_resolve_latest_editedManifestStep_refusedByTheChecksumInLatest() throws {
        let directory = try write(step: 3)
        XCTAssertEqual(try CheckpointReader.resolve(root: root, spec: "latest"), directory)
        let manifestPath = directory + "/manifest.json"
        let text = try String(contentsOfFile: manifestPath, encoding: .utf8)
        let edited = text.replacingOccurrences(
            of: #""step"\s*:\s*3"#, with: #""step" : 30"#, options: .regularExpression)
        XCTAssertNotEqual(edited, text)
        try Data(edited.utf8).write(to: URL(fileURLWithPath: manifestPath))
        XCTAssertThrowsError(try CheckpointReader.resolve(root: root, spec: "latest")) {
            XCTAssertEqual(($0 as? CheckpointError)?.file, manifestPath)
            XCTAssertTrue("\($0)".contains("manifest CRC32C mismatch"), "\($0)")
        }
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
