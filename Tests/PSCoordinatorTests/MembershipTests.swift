import PSCoordinator
import XCTest

final class MembershipTests: XCTestCase {
    private let second: UInt64 = 1_000_000_000

    private func joinedRank(_ result: JoinResult, file: StaticString = #filePath, line: UInt = #line) -> Int? {
        guard case .joined(let rank, _) = result else {
            XCTFail("expected a join, got \(result)", file: file, line: line)
            return nil
        }
        return rank
    }

    func test_join_newNames_getRanksInJoinOrder() {
        var membership = Membership(expectedWorkers: 3, workerTimeoutNanos: 5 * second)
        XCTAssertEqual(membership.onJoin(name: "b", now: 1, activeFromStep: 0), .joined(rank: 0, rejoined: false))
        XCTAssertEqual(membership.onJoin(name: "a", now: 2, activeFromStep: 0), .joined(rank: 1, rejoined: false))
        XCTAssertFalse(membership.allJoined)
        XCTAssertEqual(membership.onJoin(name: "c", now: 3, activeFromStep: 0), .joined(rank: 2, rejoined: false))
        XCTAssertTrue(membership.allJoined)
        XCTAssertEqual(membership.liveRanks, [0, 1, 2])
        XCTAssertEqual(membership.workers.map(\.name), ["b", "a", "c"])
        XCTAssertEqual(membership.worker(rank: 1)?.joinedAt, 2)
    }

    func test_rejoin_afterDeath_keepsRankAndCountsRejoin() {
        var membership = Membership(expectedWorkers: 2, workerTimeoutNanos: 5 * second)
        _ = membership.onJoin(name: "w0", now: 0, activeFromStep: 0)
        _ = membership.onJoin(name: "w1", now: 0, activeFromStep: 0)
        let deaths = membership.declareDead(rank: 1, reason: "connection reset")
        XCTAssertEqual(deaths, [.declareDead(rank: 1, name: "w1", reason: "connection reset")])
        XCTAssertEqual(membership.liveRanks, [0])
        let rejoin = membership.join(name: "w1", now: 7 * second, activeFromStep: 4)
        XCTAssertEqual(rejoin.result, .joined(rank: 1, rejoined: true))
        XCTAssertEqual(rejoin.directives, [])
        let record = membership.worker(rank: 1)
        XCTAssertEqual(record?.state, .live)
        XCTAssertEqual(record?.rejoins, 1)
        XCTAssertEqual(record?.activeFromStep, 4)
        XCTAssertEqual(record?.clock, 4)
        XCTAssertEqual(record?.joinedAt, 7 * second)
        XCTAssertNil(record?.stateReason)
        XCTAssertFalse(membership.isExpected(rank: 1, atStep: 3))
        XCTAssertTrue(membership.isExpected(rank: 1, atStep: 4))
    }

    func test_rejoin_whileOldIncarnationLive_replacesItWithDirective() {
        var membership = Membership(expectedWorkers: 2, workerTimeoutNanos: 5 * second)
        _ = membership.onJoin(name: "w0", now: 0, activeFromStep: 0)
        let again = membership.join(name: "w0", now: second, activeFromStep: 2)
        XCTAssertEqual(again.result, .joined(rank: 0, rejoined: true))
        XCTAssertEqual(again.directives, [.closeReplacedConnection(rank: 0, name: "w0")])
        XCTAssertEqual(membership.workers.count, 1)
        XCTAssertEqual(membership.liveRanks, [0])
    }

    func test_join_allRanksLive_newNameRejectedAsFull() {
        var membership = Membership(expectedWorkers: 2, workerTimeoutNanos: 5 * second)
        _ = membership.onJoin(name: "alpha", now: 0, activeFromStep: 0)
        _ = membership.onJoin(name: "beta", now: 0, activeFromStep: 0)
        XCTAssertEqual(
            membership.onJoin(name: "gamma", now: 1, activeFromStep: 0),
            .rejected("job is full: 2 workers already joined (alpha, beta)"))
        XCTAssertEqual(membership.workers.count, 2)
    }

    func test_join_newNameWhileARankIsDead_rejectedNamingTheRejoinableName() {
        var membership = Membership(expectedWorkers: 2, workerTimeoutNanos: 5 * second)
        _ = membership.onJoin(name: "alpha", now: 0, activeFromStep: 0)
        _ = membership.onJoin(name: "beta", now: 0, activeFromStep: 0)
        _ = membership.declareDead(rank: 1, reason: "test")
        guard case .rejected(let reason) = membership.onJoin(name: "gamma", now: 1, activeFromStep: 0) else {
            return XCTFail("a new name must not take a dead worker's rank")
        }
        XCTAssertTrue(reason.hasPrefix("job is full"), reason)
        XCTAssertTrue(reason.contains("'beta' (rank 1, dead)"), reason)
        XCTAssertFalse(reason.contains("'alpha' (rank 0"), reason)
        XCTAssertTrue(reason.contains("data order"), reason)
        XCTAssertEqual(membership.liveRanks, [0])
        XCTAssertEqual(joinedRank(membership.onJoin(name: "beta", now: 2, activeFromStep: 0)), 1)
    }

    func test_tick_silenceExactlyTimeout_staysLive() {
        var membership = Membership(expectedWorkers: 1, workerTimeoutNanos: 3 * second)
        _ = membership.onJoin(name: "w", now: 10 * second, activeFromStep: 0)
        XCTAssertEqual(membership.onTick(now: 13 * second), [])
        XCTAssertEqual(membership.liveRanks, [0])
    }

    func test_tick_silenceJustPastTimeout_declaresDeadWithReason() {
        var membership = Membership(expectedWorkers: 1, workerTimeoutNanos: 3 * second)
        _ = membership.onJoin(name: "w", now: 10 * second, activeFromStep: 0)
        let directives = membership.onTick(now: 13 * second + 1)
        XCTAssertEqual(
            directives,
            [.declareDead(rank: 0, name: "w", reason: "no message for 3000 ms (worker timeout 3000 ms)")])
        XCTAssertEqual(membership.worker(rank: 0)?.state, .dead)
        XCTAssertEqual(membership.liveRanks, [])
        XCTAssertNil(membership.minLiveClock)
        XCTAssertEqual(membership.onTick(now: 100 * second), [], "a dead worker is declared dead once")
    }

    func test_heartbeat_refreshesLastSeenAndClock() {
        var membership = Membership(expectedWorkers: 2, workerTimeoutNanos: 3 * second)
        _ = membership.onJoin(name: "w0", now: 0, activeFromStep: 0)
        _ = membership.onJoin(name: "w1", now: 0, activeFromStep: 0)
        XCTAssertTrue(membership.onHeartbeat(rank: 0, clock: 5, now: 2 * second))
        XCTAssertTrue(membership.onClock(rank: 1, clock: 3, now: 2 * second))
        XCTAssertEqual(membership.onTick(now: 5 * second), [])
        XCTAssertEqual(membership.minLiveClock, 3)
        XCTAssertEqual(membership.maxClock, 5)
        XCTAssertTrue(membership.onPush(rank: 1, now: 4 * second))
        XCTAssertEqual(membership.worker(rank: 1)?.pushes, 1)
        let directives = membership.onTick(now: 6 * second)
        XCTAssertEqual(directives.count, 1)
        guard case .declareDead(let rank, _, _) = directives.first else { return XCTFail("\(directives)") }
        XCTAssertEqual(rank, 0)
        XCTAssertFalse(membership.onHeartbeat(rank: 0, clock: 6, now: 7 * second), "dead workers must rejoin")
        XCTAssertFalse(membership.onHeartbeat(rank: 9, clock: 6, now: 7 * second))
        XCTAssertEqual(membership.worker(rank: 0)?.clock, 5)
    }

    func test_leave_removesFromExpectedAndFinishesWhenAllLeft() {
        var membership = Membership(expectedWorkers: 2, workerTimeoutNanos: 3 * second)
        _ = membership.onJoin(name: "w0", now: 0, activeFromStep: 0)
        XCTAssertEqual(membership.onLeave(rank: 0, now: 1), [.workerLeft(rank: 0, name: "w0")])
        XCTAssertFalse(membership.finished, "rank 1 never joined")
        XCTAssertFalse(membership.isExpected(rank: 0, atStep: 0))
        _ = membership.onJoin(name: "w1", now: 2, activeFromStep: 0)
        XCTAssertEqual(membership.onLeave(rank: 1, now: 3), [.workerLeft(rank: 1, name: "w1"), .allFinished])
        XCTAssertTrue(membership.finished)
        XCTAssertEqual(membership.onLeave(rank: 1, now: 4), [], "a second leave is ignored")
        XCTAssertEqual(membership.onTick(now: 100 * second), [], "departed workers never time out")
    }

    func test_isExpected_respectsActiveFromStepAndState() {
        var membership = Membership(expectedWorkers: 2, workerTimeoutNanos: 3 * second)
        _ = membership.onJoin(name: "w0", now: 0, activeFromStep: 0)
        _ = membership.onJoin(name: "w1", now: 0, activeFromStep: 3)
        XCTAssertEqual(membership.expectedRanks(atStep: 2), [0])
        XCTAssertEqual(membership.expectedRanks(atStep: 3), [0, 1])
        XCTAssertFalse(membership.isExpected(rank: 5, atStep: 3))
        XCTAssertFalse(membership.isExpected(rank: -1, atStep: 3))
    }
}
