import Foundation
import PSClient
import PSCoordinator
import PSMath
import PSPosix
import PSWire
import XCTest

@testable import PSServer

/// The combined step exchange (`exchange`): one request carries every shard's gradient and the clock, and the
/// reply carries the next step's weights once the mode's wait rule allows, under each mode.
final class ExchangeTests: XCTestCase {
    private func job(mode: ConsistencyMode, staleness: UInt64 = 0, workers: Int) -> JobDescription {
        JobDescription(
            model: "softmax", data: "synthetic", test: nil, labelColumn: "", batchPerWorker: 4, epochs: 1, seed: 1,
            mode: mode.rawValue, staleness: staleness, workers: workers, trainRows: 400, featureCount: 1,
            classCount: 2, stepsPerEpoch: 400 / (4 * workers), totalSteps: 400 / (4 * workers))
    }

    private func harness(
        mode: ConsistencyMode, staleness: UInt64 = 0, workers: Int, shards: Int
    ) throws -> ServerHarness {
        try ServerHarness(shards: shards) { config in
            config.mode = mode
            config.staleness = staleness
            config.job = self.job(mode: mode, staleness: staleness, workers: workers)
        }
    }

    /// A BSP server for two workers over `shards` shards, clients "a" and "b" joined and `sizes` registered by
    /// "a"; runs `body` with them and closes both clients after it.
    private func withTwoBSPWorkers(
        shards: Int, registering sizes: [Int], _ body: (ServerHarness, ParameterClient, ParameterClient) throws -> Void
    ) throws {
        let harness = try harness(mode: .bsp, workers: 2, shards: shards)
        let a = try harness.client(name: "a")
        let b = try harness.client(name: "b")
        defer {
            a.close()
            b.close()
        }
        _ = try a.register(zeroTensors(sizes))
        try body(harness, a, b)
    }

    /// One exchange; returns the reply's prefix and the weights it carried.
    private static func exchange(
        _ client: ParameterClient, clock: UInt64, gradient: [Float], baseVersions: [UInt64], loss: Double = 0.5
    ) throws -> (ExchangeReplyPrefix, [Float]) {
        var weights = [Float](repeating: .nan, count: gradient.count)
        let reply = try gradient.withUnsafeBufferPointer { g in
            try weights.withUnsafeMutableBufferPointer { w in
                try client.exchange(
                    rank: client.rank ?? 0, clock: clock, loss: loss, samples: 4, baseVersions: baseVersions,
                    gradient: g, into: w
                ).wait()
            }
        }
        guard case .exchanged(let prefix) = reply else { throw ClientError.protocolViolation("got \(reply)") }
        return (prefix, weights)
    }

    /// Runs `body` on its own thread; `join` waits for it and rethrows its error (handed over under a lock).
    private final class Background: Sendable {
        private let result = LockedValue<Result<(ExchangeReplyPrefix, [Float]), any Error>?>(nil)

        init(_ body: @escaping @Sendable () throws -> (ExchangeReplyPrefix, [Float])) {
            Thread { [result] in
                let outcome = Result { try body() }
                result.withLockAndBroadcast { $0 = outcome }
            }.start()
        }

        func join() throws -> (ExchangeReplyPrefix, [Float]) {
            let outcome = result.wait(
                until: nil,
                while: { value in
                    if case .none = value { return true }
                    return false
                }
            ) { value, _ in value }
            return try outcome!.get()
        }
    }

    /// BSP: the first worker's reply waits for the barrier, so both replies hold the mean of both gradients.
    func test_bsp_twoWorkersTwoShards_repliesCarryTheStepAfterTheBarrier() throws {
        try withTwoBSPWorkers(shards: 2, registering: [3, 2]) { harness, a, b in
            let first = Background {
                try Self.exchange(a, clock: 0, gradient: [2, 4, 6, 8, 10], baseVersions: [0, 0])
            }
            let (bPrefix, bWeights) = try Self.exchange(
                b, clock: 0, gradient: [4, 2, 0, -2, -4], baseVersions: [0, 0])
            let (aPrefix, aWeights) = try first.join()
            XCTAssertEqual(aWeights, [-3, -3, -3, -3, -3], "sgd lr 1 on the mean of both gradients")
            XCTAssertEqual(bWeights, aWeights)
            XCTAssertEqual(aPrefix.versions, [1, 1])
            XCTAssertEqual(bPrefix.versions, [1, 1])
            XCTAssertEqual(aPrefix.jobState, .running)

            // Step 1 the same way: the barrier holds again until both have pushed.
            let second = Background {
                try Self.exchange(a, clock: 1, gradient: [1, 1, 1, 1, 1], baseVersions: [1, 1])
            }
            let (_, bStep1) = try Self.exchange(b, clock: 1, gradient: [1, 1, 1, 1, 1], baseVersions: [1, 1])
            XCTAssertEqual(try second.join().1, [-4, -4, -4, -4, -4])
            XCTAssertEqual(bStep1, [-4, -4, -4, -4, -4])
        }
    }

    /// BSP: a connection thread waiting on its step carries out what the thread completing a step shares with it
    /// (`Coordinator.shareApplies`), counted in `swiftps_bsp_shared_applies_total`, then still answers with the
    /// step's weights. The directive shared here is a log line, so that the waiting thread is the only one that can
    /// run it; the step's own applies go the same way when a real push completes a step.
    func test_bsp_waitingConnectionThread_carriesOutSharedApplies_thenAnswers() throws {
        try withTwoBSPWorkers(shards: 4, registering: [8]) { harness, a, b in
            let server = harness.server
            let coordinator = try XCTUnwrap(server.coordinator)
            let first = Background {
                try Self.exchange(a, clock: 0, gradient: [2, 4, 6, 8, 10, 12, 14, 16], baseVersions: [0, 0, 0, 0])
            }
            let deadline = MonotonicClock.deadline(afterSeconds: 20)
            while coordinator.snapshot.barrierWaits == 0 {
                XCTAssertLessThan(MonotonicClock.nanoseconds(), deadline, "a's exchange never waited")
                Thread.sleep(forTimeInterval: 0.001)
            }
            XCTAssertEqual(server.serverMetrics.sharedApplies.load(ordering: .relaxed), 0)
            coordinator.shareApplies([.log(LogRecord(.info, "shared-apply-test"))])
            while server.serverMetrics.sharedApplies.load(ordering: .relaxed) == 0 {
                XCTAssertLessThan(MonotonicClock.nanoseconds(), deadline, "the waiting thread never claimed it")
                Thread.sleep(forTimeInterval: 0.001)
            }
            XCTAssertNil(coordinator.claimSharedApply(), "claimed once")
            let (_, bWeights) = try Self.exchange(
                b, clock: 0, gradient: [0, 0, 0, 0, 0, 0, 0, 0], baseVersions: [0, 0, 0, 0])
            let (aPrefix, aWeights) = try first.join()
            XCTAssertEqual(aWeights, [-1, -2, -3, -4, -5, -6, -7, -8], "sgd lr 1 on the mean of both gradients")
            XCTAssertEqual(bWeights, aWeights)
            XCTAssertEqual(aPrefix.versions, [1, 1, 1, 1])
            // The log line, and any of the step's four applies that a's thread claimed while b's thread applied.
            XCTAssertGreaterThanOrEqual(server.serverMetrics.sharedApplies.load(ordering: .relaxed), 1)
            XCTAssertLessThanOrEqual(server.serverMetrics.sharedApplies.load(ordering: .relaxed), 5)
        }
    }

    /// BSP over uneven shards for several steps: each reply holds the mean of that step's gradients (a worker's
    /// slices are read into buffers that become the held gradients and come back for the next step), and a
    /// gradient with a NaN in a later shard is refused naming its element in the whole gradient, with nothing held
    /// for that worker: its next, finite, exchange of the same step completes the barrier.
    func test_bsp_unevenShards_severalSteps_andANaNInALaterShard_isRefusedByItsElement() throws {
        try withTwoBSPWorkers(shards: 3, registering: [7]) { harness, a, b in
            var expected = [Float](repeating: 0, count: 7)
            var versions: [UInt64] = [0, 0, 0]
            for step in 0..<4 {
                let gradientA = (0..<7).map { Float(step * 10 + $0) }
                let gradientB = (0..<7).map { Float(-$0 * (step + 1)) }
                if step == 2 {
                    var poisoned = gradientB
                    poisoned[5] = .nan
                    XCTAssertThrowsError(
                        try Self.exchange(b, clock: UInt64(step), gradient: poisoned, baseVersions: versions)
                    ) { error in
                        guard case ClientError.remote(let code, let message) = error else {
                            return XCTFail("expected a refusal, got \(error)")
                        }
                        XCTAssertEqual(code, .nonFinite)
                        XCTAssertTrue(message.contains("at element 5"), message)
                    }
                }
                let base = versions
                let first = Background {
                    try Self.exchange(a, clock: UInt64(step), gradient: gradientA, baseVersions: base)
                }
                let (prefix, weightsB) = try Self.exchange(
                    b, clock: UInt64(step), gradient: gradientB, baseVersions: versions)
                let (_, weightsA) = try first.join()
                for index in 0..<7 { expected[index] -= (gradientA[index] + gradientB[index]) / 2 }  // sgd, lr 1
                XCTAssertEqual(weightsA, expected, "step \(step)")
                XCTAssertEqual(weightsB, expected, "step \(step)")
                XCTAssertEqual(prefix.versions, [UInt64](repeating: UInt64(step + 1), count: 3))
                versions = prefix.versions
            }
        }
    }

    /// Async: the reply comes at once with the gradient applied; versions advance per exchange.
    func test_async_oneWorker_replyHoldsTheWeightsAfterTheApply() throws {
        let harness = try harness(mode: .async, workers: 1, shards: 3)
        let client = try harness.client(name: "solo")
        defer { client.close() }
        _ = try client.register(zeroTensors([4]))
        let (p1, w1) = try Self.exchange(client, clock: 0, gradient: [1, 2, 3, 4], baseVersions: [0, 0, 0])
        XCTAssertEqual(w1, [-1, -2, -3, -4])
        XCTAssertEqual(p1.versions, [1, 1, 1])
        let (p2, w2) = try Self.exchange(client, clock: 1, gradient: [1, 1, 1, 1], baseVersions: p1.versions)
        XCTAssertEqual(w2, [-2, -3, -4, -5])
        XCTAssertEqual(p2.versions, [2, 2, 2])
        XCTAssertEqual(p2.minClock, 2)
    }

    /// SSP with staleness 1: a worker two steps ahead of the other waits in its exchange until the other clocks,
    /// and its reply then includes the other's applied gradient.
    func test_ssp_fastWorkerWaitsForTheSlowOne_thenSeesItsGradient() throws {
        let harness = try harness(mode: .ssp, staleness: 1, workers: 2, shards: 2)
        let fast = try harness.client(name: "fast")
        let slow = try harness.client(name: "slow")
        defer {
            fast.close()
            slow.close()
        }
        _ = try fast.register(zeroTensors([2]))
        let (p0, w0) = try Self.exchange(fast, clock: 0, gradient: [1, 1], baseVersions: [0, 0])
        XCTAssertEqual(w0, [-1, -1], "step 1 is within the bound of the slow worker's clock 0")
        // Step 2 is two ahead of the slow worker's clock 0: this exchange waits for it.
        let waiting = Background { try Self.exchange(fast, clock: 1, gradient: [1, 1], baseVersions: p0.versions) }
        let (_, slowWeights) = try Self.exchange(slow, clock: 0, gradient: [10, 10], baseVersions: [0, 0])
        let (fastPrefix, fastWeights) = try waiting.join()
        // Had the reply not waited for the slow worker's clock, it would hold [-2, -2].
        XCTAssertEqual(fastWeights, [-12, -12], "the fast worker's two gradients and the slow worker's one")
        XCTAssertEqual(fastPrefix.versions, [3, 3])
        // The fast worker's second gradient may land on each shard before or after the slow worker's reply copies
        // it: SSP promises no cross-shard snapshot, so each element is one or the other.
        XCTAssertTrue(slowWeights.allSatisfy { $0 == -11 || $0 == -12 }, "\(slowWeights)")
    }

    /// A gradient with a wrong shard count is refused with nothing applied, and the connection stays usable.
    func test_wrongShardCount_isRefused_andTheConnectionStays() throws {
        let harness = try harness(mode: .async, workers: 1, shards: 2)
        let client = try harness.client(name: "solo")
        defer { client.close() }
        _ = try client.register(zeroTensors([2]))
        XCTAssertThrowsError(try Self.exchange(client, clock: 0, gradient: [1, 1], baseVersions: [0, 0, 0])) { error in
            guard case ClientError.remote(.lengthMismatch, _) = error else { return XCTFail("\(error)") }
        }
        let (prefix, weights) = try Self.exchange(client, clock: 0, gradient: [1, 1], baseVersions: [0, 0])
        XCTAssertEqual(weights, [-1, -1])
        XCTAssertEqual(prefix.versions, [1, 1])
    }
}
