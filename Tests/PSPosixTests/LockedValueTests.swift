import Foundation
import PSPosix
import Synchronization
import XCTest

final class LockedValueTests: XCTestCase {
    func test_withLock_fromManyThreads_countsEveryIncrement() {
        let counter = LockedValue(0)
        let threads = 4
        let increments = 10_000
        let done = LockedValue(0)
        for _ in 0..<threads {
            Thread {
                for _ in 0..<increments { counter.withLock { $0 += 1 } }
                done.withLockAndBroadcast { $0 += 1 }
            }.start()
        }
        XCTAssertTrue(done.wait(until: MonotonicClock.deadline(afterSeconds: 30), while: { $0 < threads }))
        XCTAssertEqual(counter.withLock { $0 }, threads * increments)
    }

    func test_wait_conditionAlreadyFalse_returnsWithoutBlocking() {
        let value = LockedValue(true)
        let start = MonotonicClock.nanoseconds()
        XCTAssertTrue(value.wait(until: MonotonicClock.deadline(afterSeconds: 5), while: { !$0 }))
        XCTAssertLessThan(MonotonicClock.nanoseconds() - start, 1_000_000_000)
    }

    func test_wait_deadlinePasses_reportsTimedOut() {
        let value = LockedValue(false)
        let start = MonotonicClock.nanoseconds()
        let timedOut = value.wait(until: MonotonicClock.deadline(afterSeconds: 0.05), while: { !$0 }) { _, timedOut in
            timedOut
        }
        XCTAssertTrue(timedOut)
        XCTAssertGreaterThanOrEqual(MonotonicClock.nanoseconds() - start, 50_000_000)
    }

    func test_wait_broadcastChange_wakesWaiterBeforeDeadline() {
        let flag = LockedValue(false)
        Thread {
            Thread.sleep(forTimeInterval: 0.05)
            flag.withLockAndBroadcast { $0 = true }
        }.start()
        let start = MonotonicClock.nanoseconds()
        let woke = flag.wait(until: MonotonicClock.deadline(afterSeconds: 30), while: { !$0 })
        XCTAssertTrue(woke)
        XCTAssertLessThan(MonotonicClock.nanoseconds() - start, 10_000_000_000)
    }

    func test_withLockBroadcastingChanges_wakesTheWaiterOnlyWhenTheKeyChanges() {
        struct State {
            var ready = false
            var unrelated = 0
        }
        final class Count: Sendable { let value = Atomic<Int>(0) }
        let state = LockedValue(State())
        let checks = Count()
        Thread {
            // Forty changes the waiter cannot see, spaced so that a broadcast each time would wake it each time.
            for _ in 0..<40 {
                Thread.sleep(forTimeInterval: 0.002)
                state.withLock(broadcastingChangesOf: \.ready) { $0.unrelated += 1 }
            }
            state.withLock(broadcastingChangesOf: \.ready) { $0.ready = true }
        }.start()
        let woke = state.wait(
            until: MonotonicClock.deadline(afterSeconds: 30),
            while: {
                checks.value.wrappingAdd(1, ordering: .relaxed)
                return !$0.ready
            })
        XCTAssertTrue(woke)
        XCTAssertEqual(state.withLock { $0.unrelated }, 40)
        // One check before waiting, one after the change it waits for; a few more only for spurious wake-ups.
        XCTAssertLessThan(checks.value.load(ordering: .relaxed), 10)
    }

    func test_wait_bodyRunsUnderTheSameAcquisition_seesTheReadyValue() {
        let queue = LockedValue<[Int]>([])
        Thread { queue.withLockAndBroadcast { $0.append(7) } }.start()
        let taken = queue.wait(until: MonotonicClock.deadline(afterSeconds: 30), while: { $0.isEmpty }) {
            queue, _ in queue.popLast()
        }
        XCTAssertEqual(taken, 7)
    }

    func test_deadline_hugeOrNonFiniteSeconds_saturates() {
        XCTAssertEqual(MonotonicClock.deadline(afterSeconds: 1e30), UInt64.max)
        XCTAssertEqual(MonotonicClock.deadline(afterSeconds: .infinity), UInt64.max)
        XCTAssertLessThanOrEqual(MonotonicClock.deadline(afterSeconds: 0), MonotonicClock.nanoseconds())
    }
}
