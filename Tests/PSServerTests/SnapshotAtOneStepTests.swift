import PSMath
import PSWire
import XCTest

@testable import PSServer

/// `ModelSnapshot.atOneStep`, which an export in a running BSP job uses so that it never writes shards from two
/// adjacent steps.
final class SnapshotAtOneStepTests: XCTestCase {
    private func snapshot(versions: [UInt64]) throws -> ModelSnapshot {
        let store = ShardStore(
            shardCount: versions.count, optimizer: OptimizerConfig(kind: .sgd, learningRate: 0.1), workerSlots: 1)
        _ = try store.register([TensorSpec(name: "w", shape: [16], initializer: .zeros)])
        let base = try XCTUnwrap(store.snapshot())
        return ModelSnapshot(
            tensors: base.tensors, layout: base.layout, weights: base.weights, optimizerSlots: base.optimizerSlots,
            optimizerStep: 0, shardVersions: versions)
    }

    func test_bsp_retakesMixedSnapshots_untilEveryShardIsAtOneStep() throws {
        var queue = [
            try snapshot(versions: [5, 5, 4, 4]), try snapshot(versions: [5, 5, 5, 4]),
            try snapshot(versions: [5, 5, 5, 5]),
        ]
        var taken = 0
        let result = ModelSnapshot.atOneStep(requiresOneStep: true, seconds: 5) {
            taken += 1
            return queue.removeFirst()
        }
        XCTAssertEqual(try result.get().shardVersions, [5, 5, 5, 5])
        XCTAssertEqual(taken, 3)
    }

    func test_notBSP_takesTheFirstSnapshot_evenWithDifferentVersions() throws {
        let mixed = try snapshot(versions: [7, 3])
        let result = ModelSnapshot.atOneStep(requiresOneStep: false, seconds: 5) { mixed }
        XCTAssertEqual(try result.get().shardVersions, [7, 3])
    }

    func test_noBoundaryBeforeTheDeadline_andAMissingPart_areErrors() throws {
        let mixed = try snapshot(versions: [2, 1])
        let started = Date()
        XCTAssertEqual(
            ModelSnapshot.atOneStep(requiresOneStep: true, seconds: 0.05) { mixed }.map(\.shardVersions),
            .failure(.noBoundary([2, 1])))
        XCTAssertLessThan(Date().timeIntervalSince(started), 5, "bounded by the deadline")
        XCTAssertEqual(
            ModelSnapshot.atOneStep(requiresOneStep: true, seconds: 5) { nil }.map(\.shardVersions),
            .failure(.missingPart))
    }
}
