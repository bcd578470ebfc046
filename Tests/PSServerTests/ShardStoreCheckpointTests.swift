import Foundation
import PSCheckpoint
import PSMath
import PSWire
import XCTest

@testable import PSServer

/// `installCheckpoint`: checkpoint files read straight into shard storage, CRC-32C verified in the same pass.
final class ShardStoreCheckpointTests: XCTestCase {
    private var root = ""

    override func setUpWithError() throws {
        root = FileManager.default.temporaryDirectory.appendingPathComponent("psstore-ckpt-\(UUID().uuidString)").path
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: root)
    }

    /// Three tensors (one empty) whose values only survive a bitwise copy, written as a checkpoint.
    private func writeCheckpoint() throws -> (directory: String, values: [Float]) {
        let a = (0..<15).map { Float(bitPattern: 0x3F80_0000 &+ UInt32($0) &* 977) }
        let c = (0..<7).map { -Float($0) - 0.125 }
        let directory = try CheckpointWriter.write(
            root: root,
            manifest: CheckpointManifest(
                step: 4, mode: "bsp", shardCount: 2, shardVersions: [4, 4], optimizer: OptimizerEntry(name: "sgd")),
            tensors: [
                CheckpointTensor(name: "a", shape: [5, 3], values: a),
                CheckpointTensor(name: "b", shape: [0], values: []),
                CheckpointTensor(name: "c", shape: [7], values: c),
            ])
        return (directory, a + c)
    }

    private func flatWeights(_ store: ShardStore) -> [Float] {
        store.current!.shards.flatMap { shard in shard.state.withLock { $0.weights } }
    }

    func test_installCheckpoint_fillsEveryShardBitwise_forAnyShardCount() throws {
        let (directory, values) = try writeCheckpoint()
        let manifest = try CheckpointReader.loadManifest(directory: directory)
        for shards in [1, 2, 3, 5, 22] {
            let store = ShardStore(
                shardCount: shards, optimizer: OptimizerConfig(kind: .sgd, learningRate: 0.1), workerSlots: 1)
            try store.installCheckpoint(directory: directory, manifest: manifest, optimizerSlots: [:], version: 9)
            XCTAssertEqual(flatWeights(store).map(\.bitPattern), values.map(\.bitPattern), "\(shards) shards")
            XCTAssertEqual(store.snapshot()?.shardVersions, Array(repeating: 9, count: shards))
        }
    }

    func test_installCheckpoint_corruptByte_throwsTheCRCErrorAndLeavesTheStoreEmpty() throws {
        let (directory, _) = try writeCheckpoint()
        let manifest = try CheckpointReader.loadManifest(directory: directory)
        let file = directory + "/c.npy"
        var bytes = [UInt8](try XCTUnwrap(FileManager.default.contents(atPath: file)))
        bytes[bytes.count - 1] ^= 0x80
        try Data(bytes).write(to: URL(fileURLWithPath: file))
        let store = ShardStore(shardCount: 3, optimizer: OptimizerConfig(kind: .sgd, learningRate: 0.1), workerSlots: 1)
        XCTAssertThrowsError(
            try store.installCheckpoint(directory: directory, manifest: manifest, optimizerSlots: [:], version: 1)
        ) { error in
            XCTAssertEqual((error as? CheckpointError)?.file, file)
            XCTAssertTrue("\(error)".contains("CRC32C mismatch: manifest says 0x"), "\(error)")
        }
        XCTAssertNil(store.current)
    }

    func test_tensorStream_readInPieces_verifiesAfterTheLastByte() throws {
        let (directory, values) = try writeCheckpoint()
        let entry = try CheckpointReader.loadManifest(directory: directory).tensors[0]
        let stream = try CheckpointReader.TensorStream(directory: directory, entry: entry)
        var out = [Float](repeating: 0, count: 15)
        try out.withUnsafeMutableBytes { raw in
            try stream.read(into: UnsafeMutableRawBufferPointer(rebasing: raw[0..<12]))
            try stream.read(into: UnsafeMutableRawBufferPointer(rebasing: raw[12...]))
        }
        XCTAssertEqual(stream.remainingBytes, 0)
        XCTAssertEqual(out.map(\.bitPattern), values[0..<15].map(\.bitPattern))

        var wrong = entry
        wrong.crc32c ^= 1
        let bad = try CheckpointReader.TensorStream(directory: directory, entry: wrong)
        try out.withUnsafeMutableBytes { raw in
            try bad.read(into: UnsafeMutableRawBufferPointer(rebasing: raw[0..<12]))
            XCTAssertThrowsError(try bad.read(into: UnsafeMutableRawBufferPointer(rebasing: raw[12...])))
        }
    }
}
