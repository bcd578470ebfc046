import Foundation
import PSCoordinator
import PSMath
import PSPosix
import PSWire
import XCTest

@testable import PSServer

/// The scale-out pieces that need no sockets: the link headers proto-docs shows, the store's relayout, model part
/// and snapshot part, and a joined server's BSP release rule.
final class ServerLinkTests: XCTestCase {
    private let tensors = [
        TensorSpec(name: "a", shape: [5, 3], initializer: .uniform(low: -1, high: 1, seed: 4)),
        TensorSpec(name: "b", shape: [7], initializer: .constant(2)),
    ]
    private let adam = OptimizerConfig(kind: .adam, learningRate: 0.1)

    /// proto-docs/protocol.md, "serverCall": the JSON there is what the code writes.
    func test_linkHeaders_areTheDocumentedJSON() {
        XCTAssertEqual(
            LinkCoding.encode(
                LinkRequest.sync(
                    server: 1, after: 41, stats: LinkStats(bytes: 1300, pushes: 84, pulls: 84), instance: 7)),
            #"{"sync":{"after":41,"instance":7,"server":1,"stats":{"bytes":1300,"pulls":84,"pushes":84}}}"#)
        XCTAssertEqual(
            LinkCoding.encode(LinkRequest.part(server: 1, gather: 43, optimizerStep: 42, versions: [42])),
            #"{"part":{"gather":43,"optimizerStep":42,"server":1,"versions":[42]}}"#)
        XCTAssertEqual(
            LinkCoding.encode(
                LinkReply.entries(entries: [LinkEntry(sequence: 42, kind: .release, step: 41, ranks: [0, 1])])),
            #"{"entries":{"entries":[{"exitCode":0,"kind":"release","ranks":[0,1],"reason":"","sequence":42,"step":41}]}}"#
        )
        XCTAssertEqual(LinkCoding.encode(LinkRequest.fetchModel(server: 2)), #"{"fetchModel":{"server":2}}"#)
        let reply = LinkReply.refused(reason: "no")
        XCTAssertEqual(LinkCoding.decode(LinkReply.self, LinkCoding.encode(reply)), reply)
    }

    /// A coordinator's relayout keeps every value; the parts cut from the whole model, installed on joined
    /// stores, and snapshotted back, merge into exactly the whole model again.
    func test_relayout_parts_andMerge_keepEveryValue() throws {
        let whole = ShardStore(shardCount: 2, optimizer: adam, workerSlots: 2)
        try whole.register(tensors)
        for shard in whole.current!.shards {
            shard.state.withLock { state in
                for i in state.optimizer.slots[1].indices { state.optimizer.slots[1][i] = Float(i) + 0.25 }
                state.optimizer.step = 7
                state.version = 7
            }
        }
        let placement = ServerPlacement(servers: [.init(address: "", shards: 2), .init(address: "h:1", shards: 3)])
        let before = try XCTUnwrap(whole.relayout(to: placement.storePlacement(ofServer: 0)))
        let coordinatorModel = try XCTUnwrap(whole.current)
        XCTAssertEqual(coordinatorModel.owned, 0..<2)
        XCTAssertEqual(coordinatorModel.layout.shardCount, 5)
        XCTAssertFalse(coordinatorModel.ownsAll)
        XCTAssertNil(coordinatorModel.shard(2))

        let joined = ShardStore(shardCount: 3, optimizer: adam, workerSlots: 2)
        let elements = coordinatorModel.layout.range(ofShards: placement.shards(ofServer: 1))
        try joined.installPart(
            tensors: tensors, placement: placement.storePlacement(ofServer: 1), weights: before.weights[elements],
            slots: before.optimizerSlots.map { $0[elements] }, optimizerStep: 7, versions: [7, 7, 7])
        XCTAssertEqual(joined.current?.owned, 2..<5)
        XCTAssertEqual(joined.current?.ownedElements, elements)

        let own = try XCTUnwrap(whole.snapshot())
        let part = try XCTUnwrap(joined.partSnapshot())
        let merged = own.merging([part], ownShards: 0..<2)
        XCTAssertEqual(merged.weights, before.weights)
        XCTAssertEqual(merged.optimizerSlots, before.optimizerSlots)
        XCTAssertEqual(merged.shardVersions, [7, 7, 7, 7, 7])
        XCTAssertEqual(merged.optimizerStep, 7)
    }

    /// A part whose length does not match its shards is refused, naming the counts.
    func test_installPart_wrongLength_isRefused() {
        let store = ShardStore(shardCount: 1, optimizer: adam, workerSlots: 1)
        let placement = StorePlacement(totalShards: 2, owned: 1..<2)
        XCTAssertThrowsError(
            try store.installPart(
                tensors: tensors, placement: placement, weights: [1, 2][...], slots: [[1, 2][...], [1, 2][...]],
                optimizerStep: 0, versions: [0])
        ) { error in
            XCTAssertTrue("\(error)".contains("carries 2 weights"), "\(error)")
        }
        XCTAssertNil(store.current)
    }

    /// A joined server applies a BSP step only once the coordinator released it and it holds exactly the released
    /// ranks' gradients; a gradient of a rank left out of the release is not counted.
    func test_joinedShards_applyOnlyReleasedRanks() throws {
        let store = ShardStore(shardCount: 1, optimizer: OptimizerConfig(kind: .sgd, learningRate: 1), workerSlots: 2)
        try store.register([TensorSpec(name: "w", shape: [2], initializer: .zeros)])
        let shard = try XCTUnwrap(store.current?.shards.first)
        let part = ModelPart(
            tensors: [TensorShape(name: "w", shape: [2])],
            placement: ServerPlacement(servers: [.init(address: "", shards: 1)]),
            optimizer: OptimizerConfig(kind: .sgd, learningRate: 1), mode: .bsp, maxGradientStaleness: nil,
            stalePolicy: .drop, allowNonFinite: false, completedSteps: 0, sequence: 0, instance: 1, optimizerStep: 0,
            versions: [0],
            workers: 2, staleness: .max, stuckSeconds: 0, liveRanks: [0, 1])
        let joined = JoinedShards(part: part, index: 0)
        let one: [Float] = [1, 1]
        let three: [Float] = [3, 3]
        one.withUnsafeBufferPointer { g in shard.state.withLock { $0.hold(step: 0, rank: 0, gradient: g) } }
        three.withUnsafeBufferPointer { g in shard.state.withLock { $0.hold(step: 0, rank: 1, gradient: g) } }
        joined.applyReady(shard, position: 0)
        XCTAssertEqual(shard.state.withLock { $0.weights }, [0, 0], "nothing applies before the release")
        joined.release(step: 0, ranks: [0])
        joined.applyReady(shard, position: 0)
        XCTAssertEqual(shard.state.withLock { $0.weights }, [-1, -1], "rank 1 was not released: the mean is rank 0's")
        XCTAssertTrue(joined.waitForCompleted(1, deadline: 0, peerGone: { false }))
        XCTAssertFalse(joined.waitForCompleted(2, deadline: 0, peerGone: { false }))
        XCTAssertNil(joined.stuckStep(), "every released step is applied")
        // Step 1 released with a rank whose gradient never comes (it died between its sends): reported stuck
        // (stuckSeconds is 0 here).
        one.withUnsafeBufferPointer { g in shard.state.withLock { $0.hold(step: 1, rank: 0, gradient: g) } }
        joined.release(step: 1, ranks: [0, 1])
        joined.applyReady(shard, position: 0)
        Thread.sleep(forTimeInterval: 0.01)
        XCTAssertEqual(joined.stuckStep(), 1)
    }

    /// A checkpoint whose joined part never arrives (the server died mid-checkpoint) is not written: the gather
    /// ends empty at its deadline, so `latest` keeps naming the previous checkpoint.
    func test_gather_missingPart_endsEmptyAtTheDeadline() throws {
        let store = ShardStore(shardCount: 1, optimizer: adam, workerSlots: 1)
        try store.register(tensors)
        let links = ServerLinks(servers: 2)
        let gather = links.startGather(own: try XCTUnwrap(store.snapshot()), step: 3)
        XCTAssertNil(links.finishGather(gather, deadline: MonotonicClock.deadline(afterSeconds: 0.05)))
        XCTAssertFalse(
            links.receive(
                part: PartSnapshot(
                    shards: 1..<2, elements: 0..<0, weights: [], optimizerSlots: [], optimizerStep: 0, versions: []),
                server: 1, gather: gather), "a late part is not taken")
    }

    /// Decisions are numbered; what every joined server has synced past is dropped, and a rollback forgets the
    /// snapshots being gathered.
    func test_entries_areNumbered_andPrunedOnceSeen() throws {
        let links = ServerLinks(servers: 3)
        let first = links.publish(.release, step: 0, ranks: [0])
        let second = links.publish(.release, step: 1, ranks: [0])
        XCTAssertEqual(links.entries(after: 0, server: 1, seconds: 0).map(\.sequence), [first, second])
        XCTAssertEqual(links.entries(after: first, server: 2, seconds: 0).map(\.sequence), [second])
        XCTAssertEqual(links.entries(after: first, server: 1, seconds: 0).map(\.sequence), [second])
        XCTAssertEqual(links.state.withLock { $0.entries.map(\.sequence) }, [second], "both servers saw the first")
        let rollback = links.publishRollback(step: 0, reason: "test")
        XCTAssertFalse(links.waitUntilCarriedOut(rollback, deadline: MonotonicClock.deadline(afterSeconds: 0.01)))
        _ = links.entries(after: rollback, server: 1, seconds: 0)
        _ = links.entries(after: rollback, server: 2, seconds: 0)
        XCTAssertTrue(links.waitUntilCarriedOut(rollback, deadline: MonotonicClock.deadline(afterSeconds: 1)))
    }

    /// Issue 11 item 8: a plain store (`psserver --shards 4`, no model) shows its 4 shards, empty, before anything
    /// is registered.
    func test_status_plainStoreBeforeRegistration_listsItsEmptyShards() throws {
        let harness = try ServerHarness(shards: 4)
        let shards = harness.server.status().shards
        XCTAssertEqual(shards.map(\.index), [0, 1, 2, 3])
        XCTAssertTrue(shards.allSatisfy { $0.elements == 0 && $0.version == 0 })
        XCTAssertEqual(harness.server.status().shardCount, 4)
    }

    /// SSP on a joined server: a worker's read at clock c waits until every live worker's pushes here reached
    /// c - s; a worker the coordinator no longer counts as live is not waited for.
    func test_joinedShards_sspBound_waitsForTheSlowestLiveWorker() {
        let part = ModelPart(
            tensors: [TensorShape(name: "w", shape: [2])],
            placement: ServerPlacement(servers: [.init(address: "", shards: 1)]),
            optimizer: OptimizerConfig(kind: .sgd, learningRate: 1), mode: .ssp, maxGradientStaleness: nil,
            stalePolicy: .drop, allowNonFinite: false, completedSteps: 0, sequence: 0, instance: 1, optimizerStep: 0,
            versions: [0], workers: 3, staleness: 1, stuckSeconds: 60, liveRanks: [0, 1, 2])
        let joined = JoinedShards(part: part, index: 0)
        let soon = { MonotonicClock.deadline(afterSeconds: 0.05) }
        XCTAssertTrue(joined.waitForStaleness(rank: 0, clock: 1, deadline: soon(), peerGone: { false }))
        XCTAssertFalse(
            joined.waitForStaleness(rank: 0, clock: 3, deadline: soon(), peerGone: { false }),
            "ranks 1 and 2 have pushed nothing: clock 3 needs them at 2")
        XCTAssertFalse(
            joined.waitForStaleness(rank: 1, clock: 2, deadline: soon(), peerGone: { false }),
            "rank 1 reached 2, but rank 2 has pushed nothing")
        joined.membership([0, 1])
        XCTAssertTrue(
            joined.waitForStaleness(rank: 0, clock: 3, deadline: soon(), peerGone: { false }),
            "rank 2 is no longer live; rank 1 is at 2")
    }
}
