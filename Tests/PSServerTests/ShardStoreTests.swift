import Foundation
import PSMath
import PSWire
import XCTest

@testable import PSServer

final class ShardStoreTests: XCTestCase {
    private func makeStore(keeps: Bool, optimizer: OptimizerKind = .adam) throws -> ShardStore {
        let store = ShardStore(
            shardCount: 3, optimizer: OptimizerConfig(kind: optimizer, learningRate: 0.1), workerSlots: 1,
            keepsSnapshotBuffers: keeps)
        try store.register([
            TensorSpec(name: "a", shape: [5, 3], initializer: .uniform(low: -1, high: 1, seed: 4)),
            TensorSpec(name: "b", shape: [7], initializer: .constant(2)),
        ])
        return store
    }

    /// Adds `delta` to every weight and every optimizer slot element, under each shard's lock.
    private func shift(_ store: ShardStore, by delta: Float) {
        for shard in store.current!.shards {
            shard.state.withLock { state in
                for i in state.weights.indices { state.weights[i] += delta }
                for slot in state.optimizer.slots.indices {
                    for i in state.optimizer.slots[slot].indices { state.optimizer.slots[slot][i] += delta }
                }
                state.version += 1
            }
        }
    }

    private func flatWeights(_ store: ShardStore) -> [Float] {
        store.current!.shards.flatMap { shard in shard.state.withLock { $0.weights } }
    }

    func test_register_keepsSnapshotBuffers_reservesASpare() throws {
        XCTAssertTrue(try makeStore(keeps: true).hasSpareSnapshotBuffers)
        XCTAssertFalse(try makeStore(keeps: false).hasSpareSnapshotBuffers)
    }

    func test_snapshot_usesTheSpare_andRecycleReturnsIt() throws {
        let store = try makeStore(keeps: true)
        var snapshot = try XCTUnwrap(store.snapshot())
        XCTAssertFalse(store.hasSpareSnapshotBuffers, "the snapshot took the spare")
        XCTAssertEqual(snapshot.weights, flatWeights(store))
        XCTAssertEqual(snapshot.optimizerSlots.count, 2)
        store.recycle(snapshot)
        XCTAssertTrue(store.hasSpareSnapshotBuffers)
        shift(store, by: 1)
        snapshot = try XCTUnwrap(store.snapshot())
        XCTAssertEqual(snapshot.weights, flatWeights(store))
        XCTAssertEqual(snapshot.optimizerSlots[0], [Float](repeating: 1, count: 22))
        XCTAssertEqual(snapshot.optimizerSlots[1], [Float](repeating: 1, count: 22))
        XCTAssertEqual(snapshot.shardVersions, [1, 1, 1])
    }

    /// A recycled snapshot that is still held elsewhere is never overwritten: the next snapshot copies first.
    func test_recycledSnapshotStillHeld_keepsItsValues() throws {
        let store = try makeStore(keeps: true)
        let first = try XCTUnwrap(store.snapshot())
        let firstWeights = first.weights
        store.recycle(first)
        shift(store, by: 5)
        let second = try XCTUnwrap(store.snapshot())
        XCTAssertEqual(first.weights, firstWeights)
        XCTAssertEqual(first.optimizerSlots[0], [Float](repeating: 0, count: 22))
        XCTAssertEqual(second.weights, flatWeights(store))
        XCTAssertEqual(second.optimizerSlots[0], [Float](repeating: 5, count: 22))
    }

    func test_storeWithoutSpare_snapshotsAndIgnoresRecycle() throws {
        let store = try makeStore(keeps: false, optimizer: .sgd)
        let snapshot = try XCTUnwrap(store.snapshot())
        XCTAssertEqual(snapshot.weights, flatWeights(store))
        XCTAssertEqual(snapshot.optimizerSlots.count, 0)
        store.recycle(snapshot)
        XCTAssertFalse(store.hasSpareSnapshotBuffers)
    }

    /// `install`: values restored from checkpoint files are checked against the tensors before any copy.
    func test_install_optimizerStateOfAnotherLength_throwsNamingTheStateAndTensor() {
        let store = ShardStore(
            shardCount: 2, optimizer: OptimizerConfig(kind: .momentum, learningRate: 0.1), workerSlots: 1)
        let tensors = [TensorSpec(name: "w", shape: [4], initializer: .zeros)]
        XCTAssertThrowsError(
            try store.install(
                tensors: tensors, values: ["w": [1, 2, 3, 4]], optimizerStep: 0,
                optimizerSlots: ["w": ["momentum": [1, 2]]], version: 0)
        ) { error in
            XCTAssertEqual(
                "\(error)", "checkpoint optimizer state 'momentum' of tensor 'w' has 2 values, the tensor 4")
        }
        XCTAssertThrowsError(
            try store.install(
                tensors: tensors, values: ["w": [1, 2, 3, 4, 5]], optimizerStep: 0,
                optimizerSlots: ["w": ["momentum": [1, 2, 3, 4]]], version: 0))
        XCTAssertNoThrow(
            try store.install(
                tensors: tensors, values: ["w": [1, 2, 3, 4]], optimizerStep: 0,
                optimizerSlots: ["w": ["momentum": [0, 0, 0, 0]]], version: 3))
    }

    /// `install` fills each shard straight from the tensors' pieces: the same shards as registering the values.
    func test_install_shardsHoldTheGivenValuesInLayoutOrder() throws {
        let store = ShardStore(shardCount: 3, optimizer: OptimizerConfig(kind: .sgd, learningRate: 0.1), workerSlots: 1)
        let tensors = [
            TensorSpec(name: "a", shape: [2, 3], initializer: .zeros),
            TensorSpec(name: "b", shape: [0], initializer: .zeros),
            TensorSpec(name: "c", shape: [5], initializer: .zeros),
        ]
        let a: [Float] = [1, 2, 3, 4, 5, 6]
        let c: [Float] = [-1, -2, -3, -4, -5]
        try store.install(
            tensors: tensors, values: ["a": a, "b": [], "c": c], optimizerStep: 0, optimizerSlots: [:], version: 2)
        XCTAssertEqual(flatWeights(store), a + c)
        XCTAssertEqual(store.snapshot()?.shardVersions, [2, 2, 2])
    }
}
