import PSCoordinator
import XCTest

final class SSPBoundTests: XCTestCase {
    /// Two live workers at clocks 3 and 5.
    private func members(clocks: [UInt64]) -> Membership {
        var membership = Membership(expectedWorkers: clocks.count, workerTimeoutNanos: 1_000)
        for (rank, clock) in clocks.enumerated() {
            _ = membership.onJoin(name: "w\(rank)", now: 0, activeFromStep: 0)
            membership.onClock(rank: rank, clock: clock, now: 0)
        }
        return membership
    }

    func test_stalenessZero_onlyTheSlowestClockMayStart() {
        let bound = SSPBound(staleness: 0)
        let membership = members(clocks: [3, 5])
        XCTAssertTrue(bound.mayStart(step: 3, membership: membership))
        XCTAssertFalse(bound.mayStart(step: 4, membership: membership))
        XCTAssertFalse(bound.mayStart(step: 5, membership: membership))
    }

    func test_stalenessOne_allowsOneStepAhead() {
        let bound = SSPBound(staleness: 1)
        let membership = members(clocks: [3, 5])
        XCTAssertTrue(bound.mayStart(step: 4, membership: membership))
        XCTAssertFalse(bound.mayStart(step: 5, membership: membership))
    }

    func test_largeStaleness_saturatesAtZero() {
        let bound = SSPBound(staleness: 1_000)
        let membership = members(clocks: [0, 7])
        XCTAssertTrue(bound.mayStart(step: 7, membership: membership))
        XCTAssertTrue(bound.mayStart(step: 1_000, membership: membership))
        XCTAssertFalse(bound.mayStart(step: 1_001, membership: membership))
    }

    func test_async_alwaysMayStart() {
        let membership = members(clocks: [0, 7])
        XCTAssertTrue(SSPBound.asynchronous.mayStart(step: .max, membership: membership))
        XCTAssertTrue(SSPBound(staleness: .max).mayStart(step: 1_000_000, membership: membership))
    }

    func test_deadStraggler_isIgnored() {
        let bound = SSPBound(staleness: 1)
        var membership = members(clocks: [2, 9])
        XCTAssertFalse(bound.mayStart(step: 9, membership: membership))
        _ = membership.declareDead(rank: 0, reason: "timeout")
        XCTAssertTrue(bound.mayStart(step: 9, membership: membership))
        XCTAssertTrue(bound.mayStart(step: 10, membership: membership))
        XCTAssertFalse(bound.mayStart(step: 11, membership: membership))
    }

    func test_noLiveWorkers_mayStart() {
        let bound = SSPBound(staleness: 0)
        XCTAssertTrue(bound.mayStart(step: 5, membership: Membership(expectedWorkers: 2, workerTimeoutNanos: 1)))
    }
}
