import Foundation
import PSPosix
import XCTest

@testable import PSServer

final class ShardWorkersTests: XCTestCase {
    /// Two shards' work runs at the same time: each body waits (bounded) until both are running, which happens
    /// only if a helper took the second index while the requesting thread was inside the first.
    func test_forEach_twoShards_runConcurrently() {
        let workers = ShardWorkers(helpers: 1)
        workers.start()
        defer { workers.stop() }
        let running = LockedValue(0)
        let sawBoth = LockedValue([Bool](repeating: false, count: 2))
        workers.forEach(2) { index in
            running.withLockAndBroadcast { $0 += 1 }
            let both = running.wait(until: MonotonicClock.deadline(afterSeconds: 30), while: { $0 < 2 })
            sawBoth.withLock { $0[index] = both }
        }
        XCTAssertEqual(sawBoth.withLock { $0 }, [true, true])
    }

    /// Many batches from several requesting threads: every index of every batch runs exactly once, and each
    /// `forEach` returns only after all of its indices ran.
    func test_forEach_manyBatchesFromSeveralThreads_eachIndexOnce() {
        let workers = ShardWorkers(helpers: 2)
        workers.start()
        defer { workers.stop() }
        let failures = LockedValue(0)
        let done = LockedValue(0)
        for _ in 0..<4 {
            Thread {
                for _ in 0..<200 {
                    let counts = LockedValue([Int](repeating: 0, count: 5))
                    workers.forEach(5) { index in counts.withLock { $0[index] += 1 } }
                    if counts.withLock({ $0 }) != [1, 1, 1, 1, 1] { failures.withLock { $0 += 1 } }
                }
                done.withLockAndBroadcast { $0 += 1 }
            }.start()
        }
        XCTAssertTrue(done.wait(until: MonotonicClock.deadline(afterSeconds: 120), while: { $0 < 4 }))
        XCTAssertEqual(failures.withLock { $0 }, 0)
    }

    /// A request whose share per shard is small runs inline: waking a helper would cost more than the work
    /// (psbench server's 4 KiB rows; mlp:128's 101,770 floats over 4 shards in psbench train).
    func test_forEach_smallWorkPerShard_runsInOrderOnTheCallingThread() {
        let workers = ShardWorkers(helpers: 2)
        workers.start()
        defer { workers.stop() }
        for elements in [1024, 101_770, 4 * ShardWorkers.inlineBelowElementsPerIndex - 1] {
            var order: [Int] = []
            workers.forEach(4, elements: elements) { order.append($0) }
            XCTAssertEqual(order, [0, 1, 2, 3], "\(elements) elements")
        }
    }

    func test_forEach_withoutHelpersOrBeforeStart_runsInOrderOnTheCallingThread() {
        for workers in [ShardWorkers(helpers: 0), ShardWorkers(helpers: 2)] {
            var order: [Int] = []
            workers.forEach(4) { order.append($0) }
            XCTAssertEqual(order, [0, 1, 2, 3])
        }
    }
}
