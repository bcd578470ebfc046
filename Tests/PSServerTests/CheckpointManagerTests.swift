import Foundation
import PSLog
import PSMath
import PSTestSupport
import PSWire
import XCTest

@testable import PSServer

/// At most one snapshot is in flight: a scheduled checkpoint that falls due while the previous one is still
/// being written is skipped and counted; an explicit one (psctl, a stop) is always taken.
final class CheckpointManagerTests: XCTestCase {
    func test_scheduledCheckpoint_whileAWriteIsInFlight_isSkippedAndCounted() throws {
        let directory = try TemporaryDirectory(prefix: "swiftps-inflight")
        let manager = CheckpointManager(
            root: directory.path, keep: nil, slotNames: [],
            log: Logger(component: "test", minimumLevel: .error))
        let store = ShardStore(
            shardCount: 2, optimizer: OptimizerConfig(kind: .sgd, learningRate: 0.1), workerSlots: 1)
        try store.register([TensorSpec(name: "w", shape: [1 << 16], initializer: .zeros)])
        let snapshot = try XCTUnwrap(store.snapshot())

        XCTAssertTrue(manager.admitScheduled(step: 1), "nothing in flight")
        manager.take(snapshot: snapshot, step: 1, context: CheckpointManager.JobContext())
        // The write was queued synchronously: until it is done, the next scheduled ones are skipped.
        XCTAssertFalse(manager.admitScheduled(step: 2))
        XCTAssertFalse(manager.admitScheduled(step: 3))
        XCTAssertEqual(manager.skippedCheckpoints, 2)
        manager.noteExplicitRequest()
        XCTAssertTrue(manager.admitScheduled(step: 4), "an explicit request is taken even while busy")
        manager.waitForWrites()
        XCTAssertTrue(manager.admitScheduled(step: 5), "the writer is idle again")
        XCTAssertEqual(manager.skippedCheckpoints, 2)
    }

    func test_statusDocument_carriesTheSkippedCount() throws {
        let document = StatusDocument(
            mode: "bsp", optimizer: "sgd", uptimeSeconds: 1, connections: 0, shardCount: 1, shards: [], tensors: [],
            lastCheckpoint: nil, jobStatus: nil, checkpointsSkipped: 3)
        XCTAssertTrue(document.json().contains("\"checkpoints_skipped\":3"), document.json())
        XCTAssertEqual(try StatusDocument.decode(json: document.json()).checkpointsSkipped, 3)
    }
}
