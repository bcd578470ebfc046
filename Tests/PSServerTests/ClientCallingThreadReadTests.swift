import Foundation
import PSClient
import PSPosix
import PSWire
import XCTest

/// The client reads replies on the calling thread when no other thread is reading (the read token), and the
/// reader thread reads the rest: replies must land in the right handles whichever thread reads them.
final class ClientCallingThreadReadTests: XCTestCase {
    func test_waitingOnTheLastHandleFirst_completesTheEarlierOnesToo() throws {
        let harness = try ServerHarness(shards: 1)
        let client = try harness.client()
        defer { client.close() }
        _ = try client.register(zeroTensors([4]))
        let gradient: [Float] = [1, 1, 1, 1]
        let handles = try gradient.withUnsafeBufferPointer { g in
            try (0..<4).map { step in try client.push(shard: 0, clock: UInt64(step), baseVersion: 0, gradient: g) }
        }
        for handle in handles.reversed() {
            guard case .message(.pushAck) = try handle.wait(timeout: .seconds(30)) else {
                return XCTFail("expected a push acknowledgement")
            }
        }
        var weights = [Float](repeating: 0, count: 4)
        _ = try weights.withUnsafeMutableBufferPointer { try client.pull(shard: 0, clock: 4, into: $0).wait() }
        XCTAssertEqual(weights, [-4, -4, -4, -4])
    }

    func test_fourThreadsSharingOneClient_eachWaitingOnItsOwnReplies() throws {
        let harness = try ServerHarness(shards: 2)
        let client = try harness.client()
        defer { client.close() }
        _ = try client.register(zeroTensors([6]))
        let threads = 4
        let rounds = 50
        let finished = LockedValue(0)
        let failures = LockedValue<[String]>([])
        for thread in 0..<threads {
            Thread {
                let gradient: [Float] = [1, 1, 1]
                var weights = [Float](repeating: 0, count: 3)
                do {
                    for round in 0..<rounds {
                        try gradient.withUnsafeBufferPointer { g in
                            try weights.withUnsafeMutableBufferPointer { w in
                                _ = try client.pushPull(
                                    shard: thread % 2, clock: UInt64(round), baseVersion: 0, gradient: g, into: w
                                ).wait(timeout: .seconds(30))
                            }
                        }
                    }
                } catch {
                    failures.withLock { $0.append("thread \(thread): \(error)") }
                }
                finished.withLockAndBroadcast { $0 += 1 }
            }.start()
        }
        XCTAssertTrue(
            finished.wait(until: MonotonicClock.deadline(afterSeconds: 60), while: { $0 < threads }),
            "threads still running")
        XCTAssertEqual(failures.withLock { $0 }, [])
        var weights = [Float](repeating: 0, count: 6)
        try weights.withUnsafeMutableBufferPointer { all in
            for shard in 0..<2 {
                _ = try client.pull(
                    shard: shard, clock: UInt64(rounds),
                    into: UnsafeMutableBufferPointer(rebasing: all[(shard * 3)..<(shard * 3 + 3)])
                ).wait()
            }
        }
        XCTAssertEqual(weights, [Float](repeating: -Float(threads / 2 * rounds), count: 6))
    }
}
