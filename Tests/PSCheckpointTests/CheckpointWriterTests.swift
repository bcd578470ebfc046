import Foundation
import XCTest

@testable import PSCheckpoint

final class CheckpointWriterTests: CheckpointTestCase {
    private struct SimulatedCrash: Error {}

    func test_writeThenLoad_roundTripsValuesBitwiseAndManifest() throws {
        let directory = try write(step: 7)
        XCTAssertEqual(directory, path("step-0000000007"))
        XCTAssertEqual(latest()?.split(separator: "\n").first, "step-0000000007")
        XCTAssertEqual(
            try FileManager.default.contentsOfDirectory(atPath: directory).sorted(),
            [
                "fc1.bias.adam_m.npy", "fc1.bias.adam_v.npy", "fc1.bias.npy", "fc1.weight.adam_m.npy",
                "fc1.weight.adam_v.npy", "fc1.weight.npy", "manifest.json",
            ])
        let loaded = try CheckpointReader.load(directory: directory)
        for tensor in tensors() {
            XCTAssertEqual(loaded.tensors[tensor.name]?.shape, tensor.shape)
            XCTAssertEqual(loaded.tensors[tensor.name]?.values.map(\.bitPattern), tensor.values.map(\.bitPattern))
        }
        XCTAssertEqual(loaded.optimizerStates.count, 4)
        for state in states() {
            let key = "\(state.tensor).\(state.slot)"
            XCTAssertEqual(loaded.optimizerStates[key]?.values.map(\.bitPattern), state.values.map(\.bitPattern))
        }
        var expected = manifest(step: 7)
        expected.tensors = loaded.manifest.tensors
        expected.optimizer.states = loaded.manifest.optimizer.states
        XCTAssertEqual(loaded.manifest, expected)
        XCTAssertEqual(loaded.manifest.tensors.map(\.flatOffset), [0, 6])
        XCTAssertEqual(loaded.manifest.tensors.map(\.file), ["fc1.weight.npy", "fc1.bias.npy"])
        XCTAssertEqual(loaded.manifest.optimizer.states.map(\.flatOffset), [0, 0, 6, 6])
        XCTAssertEqual(loaded.manifest.optimizer.states.first?.slot, "adam_m")
        let npy = try XCTUnwrap(FileManager.default.contents(atPath: path("step-0000000007", "fc1.bias.npy")))
        XCTAssertEqual(loaded.manifest.tensors[1].crc32c, CRC32C.checksum([UInt8](npy)))
    }

    func test_manifest_isPrettyPrintedWithSortedKeys() throws {
        let directory = try write(step: 1)
        let text = try String(contentsOfFile: directory + "/manifest.json", encoding: .utf8)
        XCTAssertTrue(text.hasPrefix("{\n  \"createdAt\" : \"2026-11-22T00:00:00Z\",\n  \"dataOrder\" : {"), text)
        XCTAssertTrue(text.contains("\"formatVersion\" : 1"), text)
    }

    func test_emptyCreatedAt_isFilledWithTheTime() throws {
        var template = manifest(step: 1)
        template.createdAt = ""
        let directory = try CheckpointWriter.write(root: root, manifest: template, tensors: tensors())
        XCTAssertFalse(try CheckpointReader.load(directory: directory).manifest.createdAt.isEmpty)
    }

    func test_directoryName_hasTenDigits() {
        XCTAssertEqual(CheckpointWriter.directoryName(step: 0), "step-0000000000")
        XCTAssertEqual(CheckpointWriter.directoryName(step: 12_345_678_901), "step-12345678901")
        XCTAssertEqual(CheckpointWriter.step(ofDirectoryName: "step-0000000200"), 200)
        XCTAssertNil(CheckpointWriter.step(ofDirectoryName: "step-200"))
        XCTAssertNil(CheckpointWriter.step(ofDirectoryName: ".tmp-step-0000000200-12"))
    }

    func test_leftoverTemporaryDirectories_ignoredByReaderAndRemovedByNextWrite() throws {
        try write(step: 1)
        let leftover = path(".tmp-step-0000000002-99999")
        try FileManager.default.createDirectory(atPath: leftover, withIntermediateDirectories: true)
        try Data("junk".utf8).write(to: URL(fileURLWithPath: leftover + "/fc1.weight.npy"))
        try Data("step-0000000002\n".utf8).write(to: URL(fileURLWithPath: path(".tmp-latest-99999")))
        XCTAssertEqual(try CheckpointReader.resolve(root: root, spec: "latest"), path("step-0000000001"))
        XCTAssertEqual(try CheckpointReader.resolve(root: nil, spec: root), path("step-0000000001"))
        XCTAssertNoThrow(try CheckpointReader.load(directory: path("step-0000000001")))
        try write(step: 2)
        XCTAssertEqual(try entries(), ["latest", "step-0000000001", "step-0000000002"])
    }

    func test_hookCountsEveryFile_dataFirstManifestLast() throws {
        var seen: [(count: Int, files: [String])] = []
        _ = try CheckpointWriter.write(
            root: root, manifest: manifest(step: 3), tensors: tensors(), optimizerStates: states(), keepLast: nil,
            afterFileWritten: { count in
                let temporary = try self.entries().filter { $0.hasPrefix(".tmp-step-0000000003-") }
                XCTAssertEqual(temporary.count, 1)
                let files = try FileManager.default.contentsOfDirectory(atPath: self.path(temporary[0]))
                seen.append((count, files))
            })
        XCTAssertEqual(seen.map(\.count), Array(0...filesPerCheckpoint))
        XCTAssertEqual(seen.map(\.files.count), Array(0...filesPerCheckpoint))
        XCTAssertFalse(seen[filesPerCheckpoint - 1].files.contains("manifest.json"))
        XCTAssertTrue(seen[filesPerCheckpoint].files.contains("manifest.json"))
    }

    /// A write interrupted after any number of files leaves the previous checkpoint and `latest` as they were;
    /// `latest` never moves before the new directory is renamed into place.
    func test_interruptedWrite_afterAnyFile_leavesPreviousCheckpointAndLatest() throws {
        try write(step: 1)
        for crashAt in 0...filesPerCheckpoint {
            XCTAssertThrowsError(
                try CheckpointWriter.write(
                    root: root, manifest: manifest(step: 2), tensors: tensors(offset: 1), optimizerStates: states(),
                    keepLast: 1,
                    afterFileWritten: { count in
                        XCTAssertEqual(self.latest()?.split(separator: "\n").first, "step-0000000001")
                        XCTAssertFalse(FileManager.default.fileExists(atPath: self.path("step-0000000002")))
                        if count == crashAt { throw SimulatedCrash() }
                    })
            ) { error in XCTAssertTrue(error is SimulatedCrash, "\(error)") }
            XCTAssertEqual(try entries(), ["latest", "step-0000000001"], "after a crash at file \(crashAt)")
            let directory = try CheckpointReader.resolve(root: root, spec: "latest")
            XCTAssertEqual(try CheckpointReader.load(directory: directory).tensors["fc1.weight"]?.values.first, 1.5)
        }
        try write(step: 2, offset: 1)
        XCTAssertEqual(latest()?.split(separator: "\n").first, "step-0000000002")
    }

    func test_prune_keepsNewestN() throws {
        for step in UInt64(1)...4 { try write(step: step, keepLast: 2) }
        XCTAssertEqual(try entries(), ["latest", "step-0000000003", "step-0000000004"])
        try write(step: 5, keepLast: 0)
        XCTAssertEqual(try entries(), ["latest", "step-0000000005"], "keepLast below 1 keeps the newest")
    }

    func test_prune_neverRemovesTheCheckpointLatestPointsTo() throws {
        try write(step: 10)
        try write(step: 20)
        // Restored from step 10 and checkpointed at 15: older by step than 20, but it is the newest write.
        try write(step: 15, keepLast: 1)
        XCTAssertEqual(latest()?.split(separator: "\n").first, "step-0000000015")
        XCTAssertEqual(try entries(), ["latest", "step-0000000015", "step-0000000020"])
    }

    func test_rewriteOfSameStep_replacesTheCheckpoint() throws {
        try write(step: 4)
        try write(step: 4, offset: 2)
        XCTAssertEqual(try entries(), ["latest", "step-0000000004"])
        let loaded = try CheckpointReader.load(directory: path("step-0000000004"))
        XCTAssertEqual(loaded.tensors["fc1.weight"]?.values.first, 3.5)
    }

    func test_invalidInput_refusedBeforeWriting() throws {
        let bad = [CheckpointTensor(name: "w", shape: [2, 2], values: [1, 2, 3])]
        XCTAssertThrowsError(try CheckpointWriter.write(root: root, manifest: manifest(step: 1), tensors: bad)) {
            XCTAssertTrue("\($0)".contains("tensor 'w' has 3 values, which does not fit shape [2, 2]"), "\($0)")
        }
        let orphan = [CheckpointStateTensor(tensor: "nope", slot: "momentum", shape: [1], values: [0])]
        XCTAssertThrowsError(
            try CheckpointWriter.write(
                root: root, manifest: manifest(step: 1), tensors: tensors(), optimizerStates: orphan)
        ) { XCTAssertTrue("\($0)".contains("'nope.momentum' belongs to no tensor"), "\($0)") }
        let unsafe = [CheckpointTensor(name: "../evil", shape: [1], values: [0])]
        XCTAssertThrowsError(try CheckpointWriter.write(root: root, manifest: manifest(step: 1), tensors: unsafe))
        XCTAssertEqual(try entries(), [])
    }
}
