import Foundation
import PSCheckpoint
import XCTest

/// A fresh temporary directory per test, removed afterwards.
class CheckpointTestCase: XCTestCase {
    var root = ""

    override func setUpWithError() throws {
        root =
            FileManager.default.temporaryDirectory
            .appendingPathComponent("pscheckpoint-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: root)
    }

    func manifest(step: UInt64) -> CheckpointManifest {
        CheckpointManifest(
            step: step, createdAt: "2026-11-22T00:00:00Z", mode: "bsp", job: ["model": "softmax", "batch": "32"],
            workerClocks: ["w0": step, "w1": step], workerRanks: ["w0": 0, "w1": 1], shardCount: 2,
            shardVersions: [step, step],
            optimizer: OptimizerEntry(name: "adam", hyperParameters: ["lr": 0.001, "beta1": 0.9], step: step),
            dataOrder: DataOrderEntry(epoch: 1, stepInEpoch: 3, seed: 42, globalBatch: 64))
    }

    /// fc1.weight [2, 3] and fc1.bias [3], with values that only survive a bitwise copy.
    func tensors(offset: Float = 0) -> [CheckpointTensor] {
        [
            CheckpointTensor(
                name: "fc1.weight", shape: [2, 3],
                values: [1.5 + offset, -0.0, .leastNonzeroMagnitude, .greatestFiniteMagnitude, .infinity, 0.1]),
            CheckpointTensor(name: "fc1.bias", shape: [3], values: [Float(bitPattern: 0x7FC0_1234), -3, offset]),
        ]
    }

    func states() -> [CheckpointStateTensor] {
        [
            CheckpointStateTensor(tensor: "fc1.weight", slot: "adam_m", shape: [2, 3], values: [1, 2, 3, 4, 5, 6]),
            CheckpointStateTensor(tensor: "fc1.weight", slot: "adam_v", shape: [2, 3], values: [6, 5, 4, 3, 2, 1]),
            CheckpointStateTensor(tensor: "fc1.bias", slot: "adam_m", shape: [3], values: [0.5, 0.25, 0.125]),
            CheckpointStateTensor(tensor: "fc1.bias", slot: "adam_v", shape: [3], values: [7, 8, 9]),
        ]
    }

    /// The number of files `write(step:)` puts in a checkpoint: 2 tensors, 4 states, the manifest.
    let filesPerCheckpoint = 7

    @discardableResult
    func write(step: UInt64, offset: Float = 0, keepLast: Int? = nil) throws -> String {
        try CheckpointWriter.write(
            root: root, manifest: manifest(step: step), tensors: tensors(offset: offset), optimizerStates: states(),
            keepLast: keepLast)
    }

    func path(_ components: String...) -> String {
        ([root] + components).joined(separator: "/")
    }

    func entries() throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: root).sorted()
    }

    func latest() -> String? {
        FileManager.default.contents(atPath: path("latest")).flatMap { String(data: $0, encoding: .utf8) }
    }

    /// Asserts that loading `directory` fails with a CheckpointError about `file` whose message contains `text`.
    func assertLoadFails(
        _ directory: String, file: String, contains texts: [String], sourceFile: StaticString = #filePath,
        line: UInt = #line
    ) {
        XCTAssertThrowsError(try CheckpointReader.load(directory: directory), file: sourceFile, line: line) { error in
            guard let error = error as? CheckpointError else {
                return XCTFail("not a CheckpointError: \(error)", file: sourceFile, line: line)
            }
            XCTAssertEqual(error.file, file, "\(error)", file: sourceFile, line: line)
            for text in texts {
                XCTAssertTrue(error.message.contains(text), "'\(text)' not in: \(error)", file: sourceFile, line: line)
            }
            XCTAssertTrue(error.description.hasPrefix(file), "\(error)", file: sourceFile, line: line)
        }
    }
}
