import Foundation
import PSCoordinator
import PSMath
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
                LinkRequest.sync(server: 1, after: 41, stats: LinkStats(bytes: 1300, pushes: 84, pulls: 84))),
            #"{"sync":{"after":41,"server":1,"stats":{"bytes":1300,"pulls":84,"pushes":84}}}"#)
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
            stalePolicy: .drop, allowNonFinite: false, completedSteps: 0, optimizerStep: 0, versions: [0], workers: 2)
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
    }
}
