import Foundation
import PSClient
import PSCoordinator
import PSMath
import PSWire
import XCTest

@testable import PSServer

/// Issue 15 item 5: an update that would make a weight NaN or infinite is refused (error frame, counted, nothing
/// applied on any shard), unless `--allow-nonfinite`. Two finite pushes of 3e38 used to drive weights to -inf.
final class NonFiniteUpdateTests: XCTestCase {
    private static let huge: Float = 3e38

    private func push(_ client: ParameterClient, shard: Int = 0, _ gradient: [Float]) throws -> PushAck? {
        let reply = try gradient.withUnsafeBufferPointer {
            try client.push(shard: shard, clock: 0, baseVersion: 0, gradient: $0).wait()
        }
        guard case .message(.pushAck(let ack)) = reply else { return nil }
        return ack
    }

    private func pull(_ client: ParameterClient, shard: Int = 0, count: Int) throws -> ([Float], UInt64) {
        var weights = [Float](repeating: .nan, count: count)
        let reply = try weights.withUnsafeMutableBufferPointer {
            try client.pull(shard: shard, clock: 0, into: $0).wait()
        }
        guard case .pulled(_, let version) = reply else { throw ClientError.protocolViolation("got \(reply)") }
        return (weights, version)
    }

    private func expectRefused(_ body: () throws -> Void, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try body(), file: file, line: line) {
            guard case ClientError.remote(let code, let message) = $0 else {
                return XCTFail("\($0)", file: file, line: line)
            }
            XCTAssertEqual(code, .nonFinite, message, file: file, line: line)
            XCTAssertTrue(message.contains("NaN or infinite"), message, file: file, line: line)
            XCTAssertTrue(message.contains("--allow-nonfinite"), message, file: file, line: line)
        }
    }

    func test_push_twoFinitePushesOf3e38_theSecondIsRefusedCountedAndAppliesNothing() throws {
        let harness = try ServerHarness(shards: 1)
        let client = try harness.client()
        defer { client.close() }
        _ = try client.register(zeroTensors([4]))
        XCTAssertEqual(try push(client, [Self.huge, 1, 0, 0])?.version, 1)
        expectRefused { _ = try self.push(client, [Self.huge, 1, 0, 0]) }
        let (weights, version) = try pull(client, count: 4)
        XCTAssertEqual(weights, [-Self.huge, -1, 0, 0], "the refused push changed nothing")
        XCTAssertEqual(version, 1)
        let status = harness.server.status()
        XCTAssertEqual(status.nonFiniteRefused, 1)
        XCTAssertTrue(status.json().contains("\"nonfinite_refused\":1"), status.json())
        // A later, harmless push is applied as usual.
        XCTAssertEqual(try push(client, [-Self.huge, 1, 0, 0])?.version, 2)
        XCTAssertEqual(try pull(client, count: 4).0, [0, -2, 0, 0])
    }

    func test_push_allowNonFinite_appliesTheOverflowingUpdate() throws {
        let harness = try ServerHarness(shards: 1) { $0.allowNonFinite = true }
        let client = try harness.client()
        defer { client.close() }
        _ = try client.register(zeroTensors([2]))
        _ = try push(client, [Self.huge, 0])
        XCTAssertEqual(try push(client, [Self.huge, 0])?.version, 2)
        XCTAssertEqual(try pull(client, count: 2).0, [-.infinity, 0])
        XCTAssertNil(harness.server.status().nonFiniteRefused)
    }

    /// SSP/async exchange: shard 0's slice is harmless, shard 1's would overflow; neither is applied.
    func test_exchange_oneShardWouldOverflow_noShardIsUpdated() throws {
        let harness = try ServerHarness(shards: 2)
        let client = try harness.client()
        defer { client.close() }
        _ = try client.register(zeroTensors([4]))
        func exchange(_ gradient: [Float], baseVersions: [UInt64]) throws {
            var weights = [Float](repeating: 0, count: 4)
            _ = try gradient.withUnsafeBufferPointer { g in
                try weights.withUnsafeMutableBufferPointer { w in
                    try client.exchange(
                        rank: 0, clock: 0, loss: 0, samples: 1, baseVersions: baseVersions, gradient: g, into: w
                    ).wait()
                }
            }
        }
        try exchange([0, 0, Self.huge, 0], baseVersions: [0, 0])
        expectRefused { try exchange([1, 1, Self.huge, 0], baseVersions: [1, 1]) }
        let (first, firstVersion) = try pull(client, shard: 0, count: 2)
        let (second, secondVersion) = try pull(client, shard: 1, count: 2)
        XCTAssertEqual(first, [0, 0], "shard 0's harmless slice was not applied either")
        XCTAssertEqual(firstVersion, 1)
        XCTAssertEqual(second, [-Self.huge, 0])
        XCTAssertEqual(secondVersion, 1)
        XCTAssertEqual(harness.server.status().nonFiniteRefused, 1)
    }

    /// BSP: the step's update is refused, the worker's wait ends with an error naming the step, and the server
    /// stops with exit code 1.
    func test_bsp_refusedStep_failsTheJobNamingTheStep() throws {
        let harness = try ServerHarness(shards: 1) { config in
            config.mode = .bsp
            config.job = JobDescription(
                model: "softmax", data: "synthetic", test: nil, labelColumn: "", batchPerWorker: 4, epochs: 1,
                seed: 1, mode: "bsp", staleness: 0, workers: 1, trainRows: 40, featureCount: 1, classCount: 2,
                stepsPerEpoch: 10, totalSteps: 10)
        }
        let client = try harness.client(name: "a")
        defer { client.close() }
        _ = try client.register(zeroTensors([2]))
        func exchange(clock: UInt64) throws -> [Float] {
            var weights = [Float](repeating: 0, count: 2)
            let gradient: [Float] = [Self.huge, 1]
            _ = try gradient.withUnsafeBufferPointer { g in
                try weights.withUnsafeMutableBufferPointer { w in
                    try client.exchange(
                        rank: client.rank ?? 0, clock: clock, loss: 0, samples: 4, baseVersions: [clock], gradient: g,
                        into: w
                    ).wait()
                }
            }
            return weights
        }
        XCTAssertEqual(try exchange(clock: 0), [-Self.huge, -1])
        XCTAssertThrowsError(try exchange(clock: 1)) {
            guard case ClientError.remote(let code, let message) = $0 else { return XCTFail("\($0)") }
            XCTAssertEqual(code, .nonFinite, message)
            XCTAssertTrue(message.contains("step 1's update"), message)
        }
        XCTAssertEqual(harness.server.waitUntilStopped(), 1)
        let shard = try XCTUnwrap(harness.server.store.current?.shards.first)
        XCTAssertEqual(shard.version, 1, "the shard kept step 0's weights")
        XCTAssertEqual(shard.state.withLock { $0.weights }, [-Self.huge, -1])
        XCTAssertEqual(shard.refusedNonFiniteCount.load(ordering: .relaxed), 1)
    }

    /// BSP with plain SGD applies the mean in one pass (`OptimizerState.applyMean`): a refused step leaves the
    /// weights, the optimizer state and the version bitwise as they were and drops nothing it should keep, and an
    /// accepted one gives the two passes' weights (mean into a buffer, then `apply`).
    func test_shardState_bspMeanInOnePass_refusesAtomically_andMatchesTheTwoPasses() {
        let config = OptimizerConfig(kind: .sgd, learningRate: 1e38)
        var state = ShardState(
            weights: [-Self.huge, 0.5, -0.25], optimizer: OptimizerState(config: config, count: 3), version: 4,
            slots: Array(repeating: GradientSlot(), count: 2), scratch: [])
        for (rank, gradient) in [[Float(1), 2, 3], [3, 2, 1]].enumerated() {
            gradient.withUnsafeBufferPointer { state.hold(step: 4, rank: rank, gradient: $0, bound: 3) }
        }
        XCTAssertEqual(state.applyMean(step: 4, ranks: [0, 1], checksFinite: true), .refusedNonFinite)
        XCTAssertEqual(state.weights, [-Self.huge, 0.5, -0.25])
        XCTAssertEqual(state.optimizer, OptimizerState(config: config, count: 3))
        XCTAssertEqual(state.version, 4)

        let small = OptimizerConfig(kind: .sgd, learningRate: 0.37)
        var checked = ShardState(
            weights: [1, -2, 3.5, 0.125, 7], optimizer: OptimizerState(config: small, count: 5), version: 0,
            slots: Array(repeating: GradientSlot(), count: 3), scratch: [])
        let gradients: [[Float]] = [
            [0.3, -1.7, 2.2, 1e-3, -4], [1.1, 0.9, -0.4, 5, 1 / 3], [-2, 0.25, 0.7, 3, 1e-7],
        ]
        for (rank, gradient) in gradients.enumerated() {
            gradient.withUnsafeBufferPointer { checked.hold(step: 0, rank: rank, gradient: $0, bound: 5) }
        }
        XCTAssertEqual(checked.applyMean(step: 0, ranks: [0, 1, 2], checksFinite: true), .applied)
        var mean = [Float](repeating: 0, count: 5)
        var expected: [Float] = [1, -2, 3.5, 0.125, 7]
        var optimizer = OptimizerState(config: small, count: 5)
        gradients.withUnsafeBufferPointers { sources in
            mean.withUnsafeMutableBufferPointer { m in
                GradientMean.average(sources, into: m)
                expected.withUnsafeMutableBufferPointer { optimizer.apply(weights: $0, gradient: m) }
            }
        }
        XCTAssertEqual(checked.weights.map(\.bitPattern), expected.map(\.bitPattern))
        XCTAssertEqual(checked.optimizer, optimizer)
        XCTAssertEqual(checked.version, 1)
    }

    /// The slow path (bounds cannot prove the update finite) puts back the optimizer state exactly, Adam included.
    func test_shardState_adamRefusal_leavesWeightsStateAndVersionBitwiseUnchanged() {
        var state = ShardState(
            weights: [-Self.huge, 0.5, -0.25],
            optimizer: OptimizerState(
                config: OptimizerConfig(kind: .adam, learningRate: 1e38), count: 3),
            version: 7, slots: [], scratch: [0, 0, 0])
        var gradient: [Float] = [1, 2, 3]
        let firstOK = gradient.withUnsafeMutableBufferPointer {
            state.applyChecked(gradient: $0, gradientBound: 3, lrScale: 1)
        }
        XCTAssertFalse(firstOK, "-3e38 - 1e38 overflows")
        XCTAssertEqual(state.weights, [-Self.huge, 0.5, -0.25])
        XCTAssertEqual(state.optimizer, OptimizerState(config: state.optimizer.config, count: 3))
        XCTAssertEqual(state.version, 7)
        // A harmless update on a normal shard takes the O(1) path and is applied exactly as `apply` would.
        var checked = ShardState(
            weights: [1, 2, 3],
            optimizer: OptimizerState(config: OptimizerConfig(kind: .adam, learningRate: 0.1), count: 3),
            version: 0, slots: [], scratch: [0, 0, 0])
        var plain = checked
        var g1: [Float] = [0.5, -0.5, 2]
        var g2 = g1
        XCTAssertTrue(
            g1.withUnsafeMutableBufferPointer { checked.applyChecked(gradient: $0, gradientBound: 2, lrScale: 1) })
        g2.withUnsafeMutableBufferPointer { plain.apply(gradient: $0, lrScale: 1) }
        XCTAssertEqual(checked.weights, plain.weights)
        XCTAssertEqual(checked.optimizer, plain.optimizer)
        XCTAssertNotNil(checked.bounds, "the proof's bounds are kept for the next update")
    }
}
