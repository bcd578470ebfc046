import PSCoordinator
import XCTest

final class BSPBarrierTests: XCTestCase {
    private func membership(_ names: [String], activeFromStep: UInt64 = 0) -> Membership {
        var membership = Membership(expectedWorkers: names.count, workerTimeoutNanos: 1_000)
        for name in names { _ = membership.onJoin(name: name, now: 0, activeFromStep: activeFromStep) }
        return membership
    }

    private func isReject(_ decision: BarrierDecision) -> Bool {
        if case .reject = decision { return true }
        return false
    }

    func test_push_allExpectedArrive_appliesOnceWithRanksSorted() {
        let members = membership(["a", "b", "c"])
        var barrier = BSPBarrier(shardCount: 1)
        XCTAssertEqual(barrier.onPush(shard: 0, step: 0, rank: 2, membership: members), .hold)
        XCTAssertEqual(barrier.onPush(shard: 0, step: 0, rank: 0, membership: members), .hold)
        XCTAssertEqual(barrier.heldRanks(shard: 0), [0, 2])
        XCTAssertEqual(
            barrier.onPush(shard: 0, step: 0, rank: 1, membership: members),
            .apply(shard: 0, step: 0, ranks: [0, 1, 2]))
        XCTAssertEqual(barrier.onApplied(shard: 0, step: 0), [.stepCompleted(0)])
        XCTAssertEqual(barrier.completedSteps, 1)
        XCTAssertEqual(barrier.pendingStep(shard: 0), 1)
    }

    func test_stepCompleted_onlyAfterEveryShardApplied() {
        let members = membership(["a", "b"])
        var barrier = BSPBarrier(shardCount: 2)
        for rank in 0..<2 { _ = barrier.onPush(shard: 1, step: 0, rank: rank, membership: members) }
        XCTAssertEqual(barrier.onApplied(shard: 1, step: 0), [], "shard 0 has not applied step 0")
        XCTAssertEqual(barrier.completedSteps, 0)
        XCTAssertEqual(barrier.onPush(shard: 0, step: 0, rank: 1, membership: members), .hold)
        XCTAssertEqual(
            barrier.onPush(shard: 0, step: 0, rank: 0, membership: members),
            .apply(shard: 0, step: 0, ranks: [0, 1]))
        XCTAssertEqual(barrier.onApplied(shard: 0, step: 0), [.stepCompleted(0)])
    }

    func test_push_wrongStepOrDuplicate_rejectedWithReason() {
        let members = membership(["a", "b"])
        var barrier = BSPBarrier(shardCount: 1, completedSteps: 5)
        guard case .reject(let late) = barrier.onPush(shard: 0, step: 4, rank: 0, membership: members) else {
            return XCTFail("a push for an applied step must be rejected")
        }
        XCTAssertTrue(late.contains("too late"), late)
        guard case .reject(let early) = barrier.onPush(shard: 0, step: 6, rank: 0, membership: members) else {
            return XCTFail("a push for a future step must be rejected")
        }
        XCTAssertTrue(early.contains("ahead") && early.contains("at step 5"), early)
        XCTAssertEqual(barrier.onPush(shard: 0, step: 5, rank: 0, membership: members), .hold)
        guard case .reject(let duplicate) = barrier.onPush(shard: 0, step: 5, rank: 0, membership: members) else {
            return XCTFail("a second push from the same rank must be rejected")
        }
        XCTAssertTrue(duplicate.contains("duplicate push from rank 0"), duplicate)
        guard case .reject(let shard) = barrier.onPush(shard: 3, step: 5, rank: 0, membership: members) else {
            return XCTFail("a push to an unknown shard must be rejected")
        }
        XCTAssertEqual(shard, "unknown shard 3: the job has 1 shards")
    }

    func test_push_whileShardIsApplying_rejected() {
        let members = membership(["a"])
        var barrier = BSPBarrier(shardCount: 1)
        XCTAssertEqual(
            barrier.onPush(shard: 0, step: 0, rank: 0, membership: members), .apply(shard: 0, step: 0, ranks: [0]))
        XCTAssertTrue(isReject(barrier.onPush(shard: 0, step: 0, rank: 0, membership: members)))
        XCTAssertTrue(isReject(barrier.onPush(shard: 0, step: 1, rank: 0, membership: members)))
        XCTAssertEqual(barrier.onApplied(shard: 0, step: 0), [.stepCompleted(0)])
        XCTAssertEqual(
            barrier.onPush(shard: 0, step: 1, rank: 0, membership: members), .apply(shard: 0, step: 1, ranks: [0]))
    }

    func test_push_unknownDeadOrInactiveRank_rejected() {
        var members = membership(["a", "b"])
        var barrier = BSPBarrier(shardCount: 1)
        guard case .reject(let unknown) = barrier.onPush(shard: 0, step: 0, rank: 7, membership: members) else {
            return XCTFail("unknown rank")
        }
        XCTAssertEqual(unknown, "rank 7 has not joined the job")
        _ = members.declareDead(rank: 1, reason: "test")
        guard case .reject(let dead) = barrier.onPush(shard: 0, step: 0, rank: 1, membership: members) else {
            return XCTFail("dead rank")
        }
        XCTAssertEqual(dead, "rank 1 ('b') is dead; rejoin before pushing")
        _ = members.onJoin(name: "b", now: 1, activeFromStep: 1)
        guard case .reject(let inactive) = barrier.onPush(shard: 0, step: 0, rank: 1, membership: members) else {
            return XCTFail("inactive rank")
        }
        XCTAssertEqual(inactive, "rank 1 ('b') takes part from step 1, not step 0")
    }

    func test_death_ofLastMissingRank_completesTheStep() {
        var members = membership(["a", "b", "c"])
        var barrier = BSPBarrier(shardCount: 2)
        for shard in 0..<2 {
            for rank in [0, 2] {
                XCTAssertEqual(barrier.onPush(shard: shard, step: 0, rank: rank, membership: members), .hold)
            }
        }
        XCTAssertEqual(barrier.onMembershipChange(membership: members), [], "nobody left")
        _ = members.declareDead(rank: 1, reason: "timeout")
        XCTAssertEqual(
            barrier.onMembershipChange(membership: members),
            [.apply(shard: 0, step: 0, ranks: [0, 2]), .apply(shard: 1, step: 0, ranks: [0, 2])])
        XCTAssertEqual(barrier.onMembershipChange(membership: members), [], "each shard applies once")
        XCTAssertEqual(barrier.onApplied(shard: 1, step: 0), [])
        XCTAssertEqual(barrier.onApplied(shard: 0, step: 0), [.stepCompleted(0)])
    }

    func test_death_afterDeadRankPushed_excludesItsGradient() {
        var members = membership(["a", "b", "c"])
        var barrier = BSPBarrier(shardCount: 1)
        XCTAssertEqual(barrier.onPush(shard: 0, step: 0, rank: 1, membership: members), .hold)
        XCTAssertEqual(barrier.onPush(shard: 0, step: 0, rank: 0, membership: members), .hold)
        _ = members.declareDead(rank: 1, reason: "timeout")
        XCTAssertEqual(barrier.onMembershipChange(membership: members), [])
        XCTAssertEqual(
            barrier.onPush(shard: 0, step: 0, rank: 2, membership: members), .apply(shard: 0, step: 0, ranks: [0, 2]))
    }

    func test_leave_ofMissingRank_completesTheStep() {
        var members = membership(["a", "b"])
        var barrier = BSPBarrier(shardCount: 1)
        XCTAssertEqual(barrier.onPush(shard: 0, step: 0, rank: 0, membership: members), .hold)
        _ = members.onLeave(rank: 1, now: 1)
        XCTAssertEqual(barrier.onMembershipChange(membership: members), [.apply(shard: 0, step: 0, ranks: [0])])
    }

    func test_allWorkersDead_nothingApplies() {
        var members = membership(["a", "b"])
        var barrier = BSPBarrier(shardCount: 1)
        XCTAssertEqual(barrier.onPush(shard: 0, step: 0, rank: 0, membership: members), .hold)
        _ = members.declareDead(rank: 0, reason: "x")
        _ = members.declareDead(rank: 1, reason: "x")
        XCTAssertEqual(barrier.onMembershipChange(membership: members), [])
        XCTAssertEqual(barrier.completedSteps, 0)
    }

    func test_rejoin_activeFromNextStep_notExpectedAtCurrentStep() {
        var members = membership(["a", "b", "c"])
        var barrier = BSPBarrier(shardCount: 1)
        _ = members.declareDead(rank: 1, reason: "crash")
        XCTAssertEqual(barrier.firstUnstartedStep, 0)
        XCTAssertEqual(barrier.onPush(shard: 0, step: 0, rank: 0, membership: members), .hold)
        XCTAssertTrue(barrier.hasStarted(step: 0))
        XCTAssertFalse(barrier.hasStarted(step: 1))
        // The barrier for step 0 has started, so the rejoining worker takes part from step 1.
        XCTAssertEqual(barrier.firstUnstartedStep, 1)
        _ = members.onJoin(name: "b", now: 5, activeFromStep: barrier.firstUnstartedStep)
        XCTAssertEqual(barrier.onMembershipChange(membership: members), [])
        XCTAssertEqual(
            barrier.onPush(shard: 0, step: 0, rank: 2, membership: members), .apply(shard: 0, step: 0, ranks: [0, 2]))
        XCTAssertEqual(barrier.onApplied(shard: 0, step: 0), [.stepCompleted(0)])
        XCTAssertEqual(barrier.onPush(shard: 0, step: 1, rank: 0, membership: members), .hold)
        XCTAssertEqual(barrier.onPush(shard: 0, step: 1, rank: 2, membership: members), .hold, "rank 1 now expected")
        XCTAssertEqual(
            barrier.onPush(shard: 0, step: 1, rank: 1, membership: members),
            .apply(shard: 0, step: 1, ranks: [0, 1, 2]))
    }

    func test_restore_startsAtCompletedSteps() {
        let members = membership(["a"], activeFromStep: 40)
        var barrier = BSPBarrier(shardCount: 3, completedSteps: 40)
        XCTAssertEqual(barrier.completedSteps, 40)
        XCTAssertEqual((0..<3).map { barrier.pendingStep(shard: $0) }, [40, 40, 40])
        XCTAssertFalse(barrier.hasStarted(step: 40))
        XCTAssertTrue(barrier.hasStarted(step: 39))
        var completed: [BarrierDirective] = []
        for shard in 0..<3 {
            XCTAssertEqual(
                barrier.onPush(shard: shard, step: 40, rank: 0, membership: members),
                .apply(shard: shard, step: 40, ranks: [0]))
            completed += barrier.onApplied(shard: shard, step: 40)
        }
        XCTAssertEqual(completed, [.stepCompleted(40)])
        XCTAssertEqual(barrier.completedSteps, 41)
    }

    /// Every ordering of the pushes of ranks 0, 1, 2 to shards 0 and 1 and the death of rank 1 (7 events, 5040
    /// orders): each (shard, step) applies exactly once, with [0, 1, 2] when rank 1's push to that shard came (with
    /// the others) before its death and [0, 2] otherwise; a push after the death is rejected; step 0 completes once,
    /// after both shards applied.
    func test_exhaustive_threeWorkersTwoShardsOneDeath_everyOrderAppliesEachShardOnce() {
        enum Event: Equatable {
            case push(rank: Int, shard: Int)
            case deathOfRank1
        }
        var events: [Event] = [.deathOfRank1]
        for rank in 0..<3 {
            for shard in 0..<2 { events.append(.push(rank: rank, shard: shard)) }
        }
        var orders = 0
        forEachPermutation(of: events) { order in
            orders += 1
            var members = membership(["r0", "r1", "r2"])
            var barrier = BSPBarrier(shardCount: 2)
            var applied: [Int: [Int]] = [:]
            var completed: [UInt64] = []
            var dead = false
            func carryOut(_ directives: [BarrierDirective]) {
                for directive in directives {
                    switch directive {
                    case .apply(let shard, let step, let ranks):
                        XCTAssertEqual(step, 0)
                        XCTAssertNil(applied[shard], "shard \(shard) applied twice in \(order)")
                        XCTAssertEqual(completed, [], "step completed before shard \(shard) applied in \(order)")
                        applied[shard] = ranks
                        carryOut(barrier.onApplied(shard: shard, step: step))
                    case .stepCompleted(let step):
                        completed.append(step)
                    }
                }
            }
            for event in order {
                switch event {
                case .push(let rank, let shard):
                    let decision = barrier.onPush(shard: shard, step: 0, rank: rank, membership: members)
                    switch decision {
                    case .hold:
                        XCTAssertFalse(rank == 1 && dead, "a dead rank's push was held in \(order)")
                    case .apply(let shard, let step, let ranks):
                        carryOut([.apply(shard: shard, step: step, ranks: ranks)])
                    case .reject(let reason):
                        XCTAssertTrue(rank == 1 && dead, "unexpected reject '\(reason)' in \(order)")
                    }
                case .deathOfRank1:
                    dead = true
                    _ = members.declareDead(rank: 1, reason: "test")
                    carryOut(barrier.onMembershipChange(membership: members))
                }
            }
            let death = order.firstIndex(of: .deathOfRank1) ?? order.endIndex
            for shard in 0..<2 {
                let beforeDeath = (0..<3).allSatisfy { rank in
                    (order.firstIndex(of: .push(rank: rank, shard: shard)) ?? order.endIndex) < death
                }
                XCTAssertEqual(applied[shard], beforeDeath ? [0, 1, 2] : [0, 2], "shard \(shard) in \(order)")
            }
            XCTAssertEqual(completed, [0], "in \(order)")
            XCTAssertEqual(barrier.completedSteps, 1)
        }
        XCTAssertEqual(orders, 5040)
    }

    /// Calls `body` with every permutation of `items` (Heap's algorithm).
    private func forEachPermutation<T>(of items: [T], _ body: ([T]) -> Void) {
        var items = items
        var counters = [Int](repeating: 0, count: items.count)
        body(items)
        var index = 0
        while index < items.count {
            if counters[index] < index {
                items.swapAt(index % 2 == 0 ? 0 : counters[index], index)
                body(items)
                counters[index] += 1
                index = 0
            } else {
                counters[index] = 0
                index += 1
            }
        }
    }
}
