import PSMath
import PSServer
import PSWire
import XCTest

/// `ShardStore.install`: values restored from checkpoint files are checked against the tensors before any copy.
final class ShardStoreTests: XCTestCase {
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
}
