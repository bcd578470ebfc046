import PSCoordinator
import XCTest

/// The job coordinator's decisions, driven with explicit times and no sockets: join, leave, death, the BSP
/// barrier, the SSP bound, checkpoints and the end of the job.
final class JobCoordinatorTests: XCTestCase {
    private let second: UInt64 = 1_000_000_000

    private func coordinator(
        mode: ConsistencyMode = .bsp, workers: Int = 2, staleness: UInt64 = 0, shards: Int = 1,
        everySteps: UInt64? = nil, completedSteps: UInt64 = 0, restoredClocks: [String: UInt64] = [:]
    ) -> JobCoordinator {
        JobCoordinator(
            settings: JobSettings(
                mode: mode, workers: workers, staleness: staleness, shardCount: shards,
                workerTimeoutNanos: 10 * second, checkpointEverySteps: everySteps),
            now: 0, completedSteps: completedSteps, restoredClocks: restoredClocks)
    }

    @discardableResult
    private func join(
        _ job: inout JobCoordinator, _ name: String, connection: UInt64 = 0, now: UInt64 = 0
    ) -> (JoinAccepted?, [JobDirective]) {
        let (result, directives) = job.onJoin(name: name, connection: connection, now: now)
        return (try? result.get(), directives)
    }

    private func events(_ directives: [JobDirective]) -> [String] {
        directives.compactMap { if case .log(let record) = $0 { return record.event } else { return nil } }
    }

    /// Pushes `step` from every rank to every shard and carries out the applies like the shell does.
    private func runStep(_ job: inout JobCoordinator, _ step: UInt64, ranks: [Int], now: UInt64 = 0) -> [JobDirective] {
        var out: [JobDirective] = []
        for shard in 0..<job.settings.shardCount {
            for rank in ranks {
                let (verdict, directives) = job.onBSPPush(shard: shard, step: step, rank: rank, now: now)
                XCTAssertEqual(verdict, .accepted)
                for case .apply(let s, let t, _) in directives { out += job.onApplied(shard: s, step: t, now: now) }
                out += directives
            }
        }
        return out
    }

    // MARK: Evaluations

    /// Issue 15 item 11: in async/SSP an epoch record says which weights it evaluated (the reporting worker's
    /// clock, and the live clocks then), and a report of the final weights is not an epoch record but what the
    /// job reports as its accuracy.
    func test_epoch_recordsTheEvaluatedWeights_andTheFinalEvaluationIsTheJobsAccuracy() {
        var job = coordinator(mode: .async, workers: 2)
        _ = join(&job, "a")
        _ = join(&job, "b", connection: 1)
        _ = job.onClock(rank: 0, clock: 10, loss: 1, samples: 1, now: 0)
        _ = job.onClock(rank: 1, clock: 7, loss: 1, samples: 1, now: 0)
        let directives = job.onEpoch(
            EpochRecord(epoch: 0, testLoss: 1, testAccuracy: 0.5, samples: 10), rank: 0, now: 0)
        guard case .recordEpoch(let record) = directives.last else { return XCTFail("\(directives)") }
        XCTAssertEqual(record.epoch, 1)
        XCTAssertEqual(record.weightsAtStep, 10)
        XCTAssertEqual(record.minClock, 7)
        XCTAssertEqual(record.maxClock, 10)
        XCTAssertEqual(job.reportedTestAccuracy, 0.5)
        let final = job.onEpoch(
            EpochRecord(epoch: EpochRecord.finalWeights, testLoss: 0.2, testAccuracy: 0.9, samples: 20), rank: 1,
            now: 0)
        XCTAssertEqual(events(final), ["final-evaluation"], "no epoch record for the final weights")
        XCTAssertEqual(job.reportedTestAccuracy, 0.9)
        XCTAssertEqual(job.lastEpoch?.epoch, 1)
        let second = job.onEpoch(
            EpochRecord(epoch: EpochRecord.finalWeights, testLoss: 0.3, testAccuracy: 0.8, samples: 20), now: 0)
        XCTAssertTrue(second.isEmpty, "the first final evaluation counts")
        XCTAssertEqual(job.reportedTestAccuracy, 0.9)
    }

    // MARK: Servers

    private func serverJob(servers: Int, workers: Int = 1) -> JobCoordinator {
        JobCoordinator(
            settings: JobSettings(
                mode: .bsp, workers: workers, staleness: 0, shardCount: 2, workerTimeoutNanos: 10 * second,
                servers: servers),
            now: 0)
    }

    func test_serverJoin_workersFirst_jobStartsWhenTheLastServerRegisters() {
        var job = serverJob(servers: 3)
        XCTAssertFalse(job.allServersRegistered)
        let (_, workerDirectives) = join(&job, "a")
        XCTAssertEqual(events(workerDirectives), ["worker-joined"], "one of three servers: no start")
        XCTAssertFalse(job.jobStarted)
        XCTAssertTrue(job.describeWait(step: 0).contains("1 of 3 servers registered"), job.describeWait(step: 0))
        let (first, firstDirectives) = job.onServerJoin(address: "10.0.0.2:7001", shards: 1, now: 0)
        XCTAssertEqual(try? first.get(), ServerJoinAccepted(index: 1, rejoined: false))
        XCTAssertEqual(events(firstDirectives), ["server-joined"])
        XCTAssertFalse(job.jobStarted)
        let (second, directives) = job.onServerJoin(address: "10.0.0.3:7002", shards: 3, now: 0)
        XCTAssertEqual(try? second.get(), ServerJoinAccepted(index: 2, rejoined: false))
        XCTAssertEqual(events(directives), ["server-joined", "job-started"])
        XCTAssertTrue(job.jobStarted)
        XCTAssertTrue(job.allServersRegistered)
        XCTAssertEqual(
            job.placement(coordinatorAddress: "10.0.0.1:7000"),
            [
                RegisteredServer(address: "10.0.0.1:7000", shards: 2),
                RegisteredServer(address: "10.0.0.2:7001", shards: 1),
                RegisteredServer(address: "10.0.0.3:7002", shards: 3),
            ])
    }

    func test_serverJoin_serversFirst_jobStartsWhenTheLastWorkerJoins() {
        var job = serverJob(servers: 2)
        _ = job.onServerJoin(address: "b:1", shards: 1, now: 0)
        XCTAssertTrue(job.allServersRegistered)
        XCTAssertFalse(job.jobStarted, "no worker yet")
        let (_, directives) = join(&job, "a")
        XCTAssertEqual(events(directives), ["job-started", "worker-joined"])
    }

    /// A joined server restarted mid-job: the job goes back to the checkpoint's step with its clocks and ranks,
    /// keeps its registered servers (so the placement stays), and starts again once the checkpoint's workers are
    /// back.
    func test_rolledBack_keepsServers_andRestartsAtTheCheckpointStep() {
        var job = serverJob(servers: 2)
        _ = job.onServerJoin(address: "b:1", shards: 1, now: 0)
        _ = join(&job, "a")
        XCTAssertTrue(job.jobStarted)
        var rolled = job.rolledBack(completedSteps: 20, restoredClocks: ["a": 20], now: 5)
        _ = rolled.onRestored(ranks: ["a": 0], now: 5)
        XCTAssertEqual(rolled.joinedServers, [RegisteredServer(address: "b:1", shards: 1)])
        XCTAssertTrue(rolled.allServersRegistered)
        XCTAssertFalse(rolled.jobStarted, "waits for the checkpoint's workers")
        XCTAssertEqual(rolled.barrier.completedSteps, 20)
        XCTAssertEqual(rolled.releasedSteps, 20)
        let (result, directives) = rolled.onJoin(name: "a", connection: 9, now: 6)
        XCTAssertEqual(try? result.get().startStep, 20)
        XCTAssertTrue(events(directives).contains("job-started"), "\(events(directives))")
        let (again, _) = rolled.onServerJoin(address: "b:1", shards: 1, now: 7)
        XCTAssertEqual(try? again.get(), ServerJoinAccepted(index: 1, rejoined: true))
    }

    func test_serverJoin_oneServer_isTheDefaultAndStartsAsBefore() {
        var job = coordinator(workers: 1)
        XCTAssertEqual(job.settings.servers, 1)
        XCTAssertTrue(job.allServersRegistered)
        let (result, _) = job.onServerJoin(address: "b:1", shards: 1, now: 0)
        guard case .failure(let refusal) = result else { return XCTFail("a server beyond --servers is refused") }
        XCTAssertEqual(refusal.kind, .jobFull)
        XCTAssertTrue(refusal.reason.contains("--servers 1"), refusal.reason)
        XCTAssertTrue(job.joinedServers.isEmpty)
    }

    func test_serverJoin_sameAddressAgain_keepsItsIndex_otherShardCountIsRefused() {
        var job = serverJob(servers: 3)
        _ = job.onServerJoin(address: "b:1", shards: 2, now: 0)
        let (again, directives) = job.onServerJoin(address: "b:1", shards: 2, now: 0)
        XCTAssertEqual(try? again.get(), ServerJoinAccepted(index: 1, rejoined: true))
        XCTAssertEqual(events(directives), ["server-rejoined"])
        XCTAssertEqual(job.joinedServers.count, 1)
        let (changed, _) = job.onServerJoin(address: "b:1", shards: 3, now: 0)
        guard case .failure(let refusal) = changed else { return XCTFail("a changed shard count is refused") }
        XCTAssertTrue(refusal.reason.contains("registered with 2 shards, now 3"), refusal.reason)
    }

    // MARK: Join

    func test_join_allWorkersArrive_startsJobOnceAndGivesRanksInOrder() {
        var job = coordinator()
        let (first, firstDirectives) = join(&job, "a")
        XCTAssertEqual(first, JoinAccepted(rank: 0, startStep: 0, rejoined: false))
        XCTAssertFalse(job.jobStarted)
        XCTAssertEqual(events(firstDirectives), ["worker-joined"])
        XCTAssertFalse(job.mayPull(step: 0), "no pull before every worker joined")
        let (second, directives) = join(&job, "b")
        XCTAssertEqual(second?.rank, 1)
        XCTAssertEqual(events(directives), ["job-started", "worker-joined"])
        XCTAssertTrue(job.jobStarted)
        XCTAssertTrue(job.mayPull(step: 0))
        XCTAssertEqual(job.phase, .running)
    }

    func test_join_newNameWhenFull_refusedAsJobFull() {
        var job = coordinator()
        join(&job, "a")
        join(&job, "b")
        let (result, _) = job.onJoin(name: "c", connection: 9, now: 0)
        guard case .failure(let refusal) = result else { return XCTFail("a third name must be refused") }
        XCTAssertEqual(refusal.kind, .jobFull)
        XCTAssertTrue(refusal.reason.contains("job is full"), refusal.reason)
    }

    func test_join_liveNameAgain_whileTheFirstIsAlive_isRefusedNamingTheConflict() {
        var job = coordinator()
        join(&job, "a", connection: 1)
        join(&job, "b", connection: 2)
        let (result, directives) = job.onJoin(name: "a", connection: 3, now: second)
        guard case .failure(let refusal) = result else { return XCTFail("a second live 'a' was accepted") }
        XCTAssertEqual(refusal.kind, .nameInUse)
        XCTAssertTrue(refusal.reason.contains("a worker named 'a' is already connected"), refusal.reason)
        XCTAssertEqual(events(directives), ["duplicate-name"])
        XCTAssertFalse(directives.contains(.closeConnection(1)), "the live worker keeps its connection")
        // Once its connection closed (the process was killed), the name may come back at once.
        job.onConnectionClosed(connection: 1)
        XCTAssertEqual(join(&job, "a", connection: 3, now: second).0?.rejoined, true)
    }

    func test_join_liveNameAgain_silentOldConnection_isReplaced() {
        var job = coordinator()
        join(&job, "a", connection: 1)
        join(&job, "b", connection: 2)
        let (again, directives) = join(&job, "a", connection: 3, now: 4 * second)
        XCTAssertEqual(again?.rank, 0, "silent for more than a third of the worker timeout: a stuck connection")
        XCTAssertTrue(directives.contains(.closeConnection(1)))
    }

    func test_join_liveNameAgain_closesTheOldConnectionAndRejoinsTheOpenStep() {
        var job = coordinator()
        join(&job, "a", connection: 1)
        join(&job, "b", connection: 2)
        _ = runStep(&job, 0, ranks: [0, 1])
        XCTAssertEqual(job.releasedSteps, 1)
        _ = job.onBSPPush(shard: 0, step: 1, rank: 1, now: 0)
        // The old connection's peer hung up (the worker was killed and restarted before its timeout).
        let (result, directives) = job.onJoin(name: "a", connection: 3, now: 0, previousConnectionHungUp: true)
        let again = try? result.get()
        XCTAssertEqual(
            again, JoinAccepted(rank: 0, startStep: 1, rejoined: true), "no shard applied step 1: it redoes it")
        XCTAssertTrue(directives.contains(.closeConnection(1)))
        XCTAssertFalse(
            directives.contains { if case .apply = $0 { return true } else { return false } },
            "step 1 waits for the rejoined rank's push")
        let (verdict, applies) = job.onBSPPush(shard: 0, step: 1, rank: 0, now: 0)
        XCTAssertEqual(verdict, .accepted)
        XCTAssertEqual(applies, [.apply(shard: 0, step: 1, ranks: [0, 1])], "the whole step, exactly")
    }

    func test_join_stepAlreadyAppliedOnOneShard_startsAtTheNextStep() {
        var job = coordinator(shards: 2)
        join(&job, "a", connection: 1)
        join(&job, "b", connection: 2)
        for rank in [0, 1] { _ = job.onBSPPush(shard: 0, step: 0, rank: rank, now: 0) }
        _ = job.onBSPPush(shard: 1, step: 0, rank: 1, now: 0)
        // Shard 0 applies step 0 (the shell has not reported back yet); shard 1 still waits for rank 0.
        let (result, _) = job.onJoin(name: "a", connection: 3, now: 0, previousConnectionHungUp: true)
        XCTAssertEqual(try? result.get().startStep, 1, "step 0 was applied on shard 0 without the new incarnation")
    }

    /// Issue 15 item 18: every BSP worker killed and restarted within a second, while a straggler had not pushed
    /// step t and the others had. Every worker used to rejoin at step t + 1, nobody was expected at step t any
    /// more, and the job waited forever. Now they all rejoin at step t and the job goes on.
    func test_allWorkersRestartedBeforeTimeout_withAStraggler_everyoneRedoesTheStepAndTheJobGoesOn() {
        var job = coordinator(workers: 3, shards: 2)
        for (index, name) in ["a", "b", "c"].enumerated() { join(&job, name, connection: UInt64(index + 1)) }
        for step: UInt64 in 0..<3 { _ = runStep(&job, step, ranks: [0, 1, 2]) }
        XCTAssertEqual(job.releasedSteps, 3)
        // Step 3: a and b pushed every shard, c (the straggler) nothing. All three are killed and restarted.
        for shard in 0..<2 {
            for rank in [0, 1] { XCTAssertEqual(job.onBSPPush(shard: shard, step: 3, rank: rank, now: 0).0, .accepted) }
        }
        var starts: [UInt64] = []
        for (index, name) in ["a", "b", "c"].enumerated() {
            job.onConnectionClosed(connection: UInt64(index + 1))
            let (result, directives) = job.onJoin(
                name: name, connection: UInt64(index + 10), now: second, previousConnectionHungUp: true)
            starts.append((try? result.get().startStep) ?? 0)
            XCTAssertFalse(
                directives.contains { if case .apply = $0 { return true } else { return false } },
                "nothing applies before the restarted workers push")
        }
        XCTAssertEqual(starts, [3, 3, 3], "every worker redoes step 3")
        XCTAssertFalse(job.mayPull(step: 4))
        XCTAssertTrue(job.mayPull(step: 3))
        var applied: [JobDirective] = []
        for shard in 0..<2 {
            for rank in [2, 0, 1] {
                let (verdict, directives) = job.onBSPPush(shard: shard, step: 3, rank: rank, now: second)
                XCTAssertEqual(verdict, .accepted, "rank \(rank) shard \(shard)")
                for case .apply(let s, let t, let ranks) in directives {
                    applied.append(.apply(shard: s, step: t, ranks: ranks))
                    _ = job.onApplied(shard: s, step: t, now: second)
                }
            }
        }
        XCTAssertEqual(
            applied, [.apply(shard: 0, step: 3, ranks: [0, 1, 2]), .apply(shard: 1, step: 3, ranks: [0, 1, 2])],
            "each shard applies step 3 once, with all three ranks")
        XCTAssertEqual(job.releasedSteps, 4)
        XCTAssertTrue(job.mayPull(step: 4))
    }

    func test_join_afterJobFinished_refusedAsFinished() {
        var job = coordinator(workers: 1)
        join(&job, "a")
        _ = job.onLeave(rank: 0, finished: true, now: 0)
        let (result, _) = job.onJoin(name: "a", connection: 5, now: 0)
        guard case .failure(let refusal) = result else { return XCTFail("a finished job takes no worker") }
        XCTAssertEqual(refusal.kind, .jobFinished)
    }

    func test_join_asyncNameSeenBefore_resumesAtItsClockOrTheRestoredOne() {
        var job = coordinator(mode: .async, restoredClocks: ["b": 7])
        join(&job, "a")
        _ = job.onClock(rank: 0, clock: 4, loss: 1, samples: 1, now: 0)
        job.onHeartbeat(rank: 0, clock: nil, now: 1)
        let (restored, _) = join(&job, "b")
        XCTAssertEqual(restored?.startStep, 7)
        let (rejoined, _) = join(&job, "a")
        XCTAssertEqual(rejoined?.startStep, 4)
    }

    func test_restored_workersOfTheCheckpoint_jobWaitsForAllOfThemWithTheirRanks() {
        var job = coordinator(completedSteps: 3)
        XCTAssertEqual(job.onRestored(ranks: ["x": 0, "y": 1], now: 0), [])
        XCTAssertTrue(job.awaitingRestoredWorkers)
        let (y, _) = join(&job, "y")
        XCTAssertEqual(y, JoinAccepted(rank: 1, startStep: 3, rejoined: true))
        XCTAssertFalse(job.jobStarted, "x has not rejoined")
        join(&job, "x")
        XCTAssertTrue(job.jobStarted)
    }

    // MARK: BSP barrier

    func test_bspStep_allRanksPushEveryShard_appliesInRankOrderAndReleasesNextStep() {
        var job = coordinator(shards: 2)
        join(&job, "a")
        join(&job, "b")
        let (late, none) = job.onBSPPush(shard: 0, step: 0, rank: 1, now: 0)
        XCTAssertEqual(late, .accepted)
        XCTAssertEqual(none, [])
        let (_, directives) = job.onBSPPush(shard: 0, step: 0, rank: 0, now: 0)
        XCTAssertEqual(directives, [.apply(shard: 0, step: 0, ranks: [0, 1])])
        XCTAssertEqual(job.onApplied(shard: 0, step: 0, now: 0), [])
        XCTAssertFalse(job.mayPull(step: 1), "shard 1 has not applied step 0")
        _ = job.onBSPPush(shard: 1, step: 0, rank: 0, now: 0)
        _ = job.onBSPPush(shard: 1, step: 0, rank: 1, now: 0)
        XCTAssertEqual(job.onApplied(shard: 1, step: 0, now: 0), [])
        XCTAssertTrue(job.mayPull(step: 1))
        XCTAssertFalse(job.mayPull(step: 2))
    }

    func test_bspPush_wrongStep_rejectedWithReason() {
        var job = coordinator()
        join(&job, "a")
        join(&job, "b")
        let (verdict, directives) = job.onBSPPush(shard: 0, step: 3, rank: 0, now: 0)
        guard case .rejected(let reason) = verdict else { return XCTFail("a push for a future step is refused") }
        XCTAssertTrue(reason.contains("ahead"), reason)
        XCTAssertEqual(directives, [])
    }

    func test_checkpointDue_atBoundary_releaseWaitsForTheSnapshot() {
        var job = coordinator(everySteps: 2)
        join(&job, "a")
        join(&job, "b")
        XCTAssertFalse(
            runStep(&job, 0, ranks: [0, 1]).contains { if case .takeCheckpoint = $0 { true } else { false } })
        XCTAssertEqual(job.releasedSteps, 1)
        let directives = runStep(&job, 1, ranks: [0, 1])
        XCTAssertTrue(directives.contains(.takeCheckpoint(step: 2)))
        XCTAssertEqual(job.releasedSteps, 1, "step 2 is released only after the snapshot")
        XCTAssertFalse(job.mayPull(step: 2))
        XCTAssertEqual(job.checkpointStep, 2)
        job.onCheckpointTaken(step: 2, now: 0)
        XCTAssertEqual(job.releasedSteps, 2)
        XCTAssertTrue(job.mayPull(step: 2))
    }

    func test_checkpointRequested_bsp_takenAtTheNextBoundary() {
        var job = coordinator()
        join(&job, "a")
        join(&job, "b")
        job.onCheckpointRequested(now: 0)
        XCTAssertTrue(runStep(&job, 0, ranks: [0, 1]).contains(.takeCheckpoint(step: 1)))
        job.onCheckpointTaken(step: 1, now: 0)
        XCTAssertFalse(runStep(&job, 1, ranks: [0, 1]).contains(.takeCheckpoint(step: 2)), "the request was met")
    }

    // MARK: Death and leave

    func test_tick_silentWorker_declaredDeadAndBarrierProceedsWithoutIt() {
        var job = coordinator()
        join(&job, "a")
        join(&job, "b")
        _ = job.onBSPPush(shard: 0, step: 0, rank: 0, now: 0)
        job.onHeartbeat(rank: 0, clock: nil, now: 9 * second)
        XCTAssertEqual(job.onTick(now: 9 * second), [], "nobody is past the timeout yet")
        let directives = job.onTick(now: 11 * second)
        XCTAssertEqual(events(directives), ["worker-dead"])
        XCTAssertTrue(directives.contains(.apply(shard: 0, step: 0, ranks: [0])))
        XCTAssertEqual(job.membership.worker(rank: 1)?.state, .dead)
        XCTAssertEqual(job.events.count, 1)
        XCTAssertTrue(job.events[0].contains("worker b (rank 1) declared dead"), job.events[0])
    }

    func test_refreshLiveness_workerBlockedInAWait_isNotDeclaredDead() {
        var job = coordinator(workers: 1)
        join(&job, "a")
        job.refreshLiveness(rank: 0, now: 8 * second)
        XCTAssertFalse(events(job.onTick(now: 12 * second)).contains("worker-dead"))
    }

    func test_join_logsHowManyOfKJoined_andElapsedCountsFromTheJobStart() {
        var job = coordinator(workers: 2)
        let (_, first) = join(&job, "a", now: 0)
        XCTAssertTrue(logFields(first, "worker-joined").contains { $0 == ("joined", "1/2") }, "\(first)")
        let (_, last) = join(&job, "b", now: 5 * second)
        XCTAssertTrue(logFields(last, "worker-joined").contains { $0 == ("joined", "2/2") })
        XCTAssertEqual(job.jobStartedAtNanos, 5 * second)
        XCTAssertEqual(job.elapsedOrigin, 5 * second, "the wait for workers is not training time")
    }

    private func logFields(_ directives: [JobDirective], _ event: String) -> [(String, String)] {
        for case .log(let record) in directives where record.event == event {
            return record.fields.map { ($0.key, $0.value) }
        }
        return []
    }

    func test_tick_whileWaitingForWorkers_saysHowManyJoinedEvery10Seconds_untilTheJobStarts() {
        var job = coordinator(workers: 2)
        join(&job, "a", now: 1 * second)
        XCTAssertEqual(events(job.onTick(now: 5 * second)), [])
        job.refreshLiveness(rank: 0, now: 9 * second)
        let first = job.onTick(now: 10 * second)
        XCTAssertEqual(events(first), ["waiting-for-workers"])
        XCTAssertTrue(logFields(first, "waiting-for-workers").contains { $0 == ("joined", "1/2") }, "\(first)")
        XCTAssertTrue(logFields(first, "waiting-for-workers").contains { $0 == ("waited_s", "10") }, "\(first)")
        XCTAssertEqual(events(job.onTick(now: 15 * second)), [], "once per 10 s")
        job.refreshLiveness(rank: 0, now: 19 * second)
        XCTAssertEqual(events(job.onTick(now: 20 * second)), ["waiting-for-workers"])
        join(&job, "b", now: 21 * second)
        job.refreshLiveness(rank: 0, now: 29 * second)
        XCTAssertEqual(events(job.onTick(now: 30 * second)), [], "the job started")
    }

    func test_leave_withErrorBeforeTheJobStarted_freesTheRankForTheNextName() {
        var job = coordinator(workers: 3)
        join(&job, "a")
        join(&job, "b")
        XCTAssertEqual(join(&job, "wrong-data").0?.rank, 2)
        // The third worker is refused for its data and leaves with an error before any push.
        let left = job.onLeave(rank: 2, finished: false, now: 1)
        XCTAssertEqual(events(left), ["worker-left", "rank-released"])
        XCTAssertEqual(job.membership.worker(rank: 2)?.state, .vacant)
        let (replacement, directives) = join(&job, "c", connection: 9, now: 2)
        XCTAssertEqual(replacement?.rank, 2, "the correct third worker takes the freed rank")
        XCTAssertTrue(events(directives).contains("job-started"), "\(events(directives))")
        XCTAssertTrue(job.mayPull(step: 0))
    }

    func test_leave_oneOfTwoFailsItsData_noReplacement_jobGoesOnWithoutIt_countingOnlyProcessedSamples() {
        var job = coordinator(workers: 2)
        join(&job, "a")
        join(&job, "b")
        _ = job.onLeave(rank: 1, finished: false, now: 1 * second)
        XCTAssertFalse(job.mayPull(step: 0), "the job waits for a replacement first")
        XCTAssertEqual(events(job.onTick(now: 5 * second)), [], "within the worker timeout")
        job.refreshLiveness(rank: 0, now: 11 * second)  // a waits for the job to start: it is alive
        let given = job.onTick(now: 12 * second)
        XCTAssertEqual(events(given), ["workers-given-up", "job-started"], "\(given)")
        XCTAssertTrue(job.mayPull(step: 0))
        XCTAssertEqual(job.jobStartedAtNanos, 12 * second)
        for step in 0..<3 as Range<UInt64> {
            _ = runStep(&job, step, ranks: [0])
            _ = job.onClock(rank: 0, clock: step + 1, loss: 1, samples: 32, now: 13 * second)
        }
        XCTAssertEqual(job.samplesProcessed, 96, "3 steps x 32 rows of the one worker, not x 2")
        XCTAssertEqual(job.onLeave(rank: 0, finished: true, now: 14 * second).last, .finishJob)
        XCTAssertNil(job.failureReason)
    }

    func test_leave_failedWorkerJoinedFirst_itsRankTakenByTheSecond_jobStillStartsAfterTheTimeout() {
        var job = coordinator(workers: 2)
        join(&job, "bad")
        _ = job.onLeave(rank: 0, finished: false, now: 1 * second)
        XCTAssertEqual(join(&job, "good", connection: 2, now: 2 * second).0?.rank, 0, "good takes the freed rank")
        job.refreshLiveness(rank: 0, now: 11 * second)
        XCTAssertEqual(events(job.onTick(now: 11 * second)), ["waiting-for-workers"], "10 s since good joined")
        job.refreshLiveness(rank: 0, now: 12_500_000_000)
        let given = job.onTick(now: 12_500_000_000)
        XCTAssertEqual(events(given), ["workers-given-up", "job-started"], "\(given)")
        XCTAssertTrue(job.mayPull(step: 0))
    }

    func test_leave_onlyWorkerFailsItsData_noReplacement_jobFailsWithTheReason() {
        var job = coordinator(workers: 1)
        join(&job, "only")
        _ = job.onLeave(rank: 0, finished: false, now: 1 * second)
        XCTAssertFalse(job.onTick(now: 5 * second).contains(.finishJob))
        let directives = job.onTick(now: 12 * second)
        XCTAssertEqual(directives.last, .finishJob, "\(directives)")
        XCTAssertEqual(job.workersFinished, 0)
        XCTAssertTrue(job.failureReason?.contains("'only'") ?? false, job.failureReason ?? "nil")
        XCTAssertFalse(job.mayPull(step: 0) && !job.jobFinished)
    }

    func test_leave_withErrorAfterPushing_keepsTheRank() {
        var job = coordinator(workers: 2)
        join(&job, "a")
        join(&job, "b")
        _ = runStep(&job, 0, ranks: [0, 1])
        _ = job.onLeave(rank: 1, finished: false, now: 1)
        XCTAssertEqual(job.membership.worker(rank: 1)?.state, .left)
        XCTAssertNil(join(&job, "c").0, "a rank whose gradients count belongs to its name")
    }

    func test_leave_everyWorkerLeavesWithAnError_jobEndsWithNoWorkerFinished() {
        var job = coordinator(workers: 1)
        join(&job, "a")
        _ = runStep(&job, 0, ranks: [0])
        let directives = job.onLeave(rank: 0, finished: false, now: 1)
        XCTAssertEqual(directives.last, .finishJob)
        XCTAssertEqual(job.workersFinished, 0, "the shell exits 1 for such a job")
    }

    func test_leave_lastWorkerFinishes_finishJobIssuedExactlyOnce() {
        var job = coordinator()
        join(&job, "a")
        join(&job, "b")
        XCTAssertFalse(job.onLeave(rank: 0, finished: true, now: 0).contains(.finishJob))
        XCTAssertFalse(job.jobFinished)
        let directives = job.onLeave(rank: 1, finished: true, now: 5)
        XCTAssertEqual(events(directives), ["worker-left"])
        XCTAssertEqual(directives.last, .finishJob)
        XCTAssertTrue(job.jobFinished)
        XCTAssertEqual(job.workersFinished, 2)
        XCTAssertEqual(job.finishedAtNanos, 5)
        XCTAssertFalse(job.onTick(now: 6).contains(.finishJob), "finishJob is issued once")
        XCTAssertTrue(job.mayPull(step: 99), "a finished job answers every pull")
    }

    func test_tick_remainingWorkerDiesAfterOthersFinished_jobFinishes() {
        var job = coordinator()
        join(&job, "a")
        join(&job, "b")
        _ = job.onLeave(rank: 0, finished: true, now: 0)
        XCTAssertTrue(job.onTick(now: 20 * second).contains(.finishJob))
    }

    func test_tick_allWorkersDeadNoneFinished_jobWaitsForARejoin() {
        var job = coordinator()
        join(&job, "a")
        join(&job, "b")
        XCTAssertFalse(job.onTick(now: 20 * second).contains(.finishJob))
        XCTAssertFalse(job.jobFinished)
    }

    func test_hasAppliedAllPushes_leavingWorker_waitsUntilItsStepIsApplied() {
        var job = coordinator()
        join(&job, "a")
        join(&job, "b")
        _ = job.onClock(rank: 0, clock: 1, loss: 0.5, samples: 4, now: 0)
        XCTAssertFalse(job.hasAppliedAllPushes(of: 0))
        _ = runStep(&job, 0, ranks: [0, 1])
        XCTAssertTrue(job.hasAppliedAllPushes(of: 0))
    }

    // MARK: SSP

    func test_sspBound_fastWorkerAheadByMoreThanS_waitsForTheSlowest() {
        var job = coordinator(mode: .ssp, staleness: 2)
        join(&job, "fast")
        join(&job, "slow")
        _ = job.onClock(rank: 0, clock: 3, loss: 0, samples: 1, now: 0)
        XCTAssertTrue(job.mayPull(step: 2))
        XCTAssertFalse(job.mayPull(step: 3), "min clock 0 + staleness 2 < 3")
        XCTAssertTrue(job.describeWait(step: 3).contains("slowest worker"), job.describeWait(step: 3))
        _ = job.onClock(rank: 1, clock: 1, loss: 0, samples: 1, now: 0)
        XCTAssertTrue(job.mayPull(step: 3))
    }

    func test_tick_asyncCheckpointDue_takesOneAtTheSlowestClock() {
        var job = coordinator(mode: .async, everySteps: 2)
        join(&job, "a")
        join(&job, "b")
        _ = job.onClock(rank: 0, clock: 5, loss: 0, samples: 1, now: 0)
        XCTAssertFalse(job.onTick(now: 1).contains { if case .takeCheckpoint = $0 { true } else { false } })
        _ = job.onClock(rank: 1, clock: 3, loss: 0, samples: 1, now: 0)
        XCTAssertTrue(job.onTick(now: 1).contains(.takeCheckpoint(step: 3)))
    }

    func test_asyncPush_staleOutcomes_counted() {
        var job = coordinator(mode: .async)
        join(&job, "a")
        job.onAsyncPush(rank: 0, staleDropped: true, staleScaled: false, now: 0)
        job.onAsyncPush(rank: nil, staleDropped: false, staleScaled: true, now: 0)
        XCTAssertEqual(job.staleDropped, 1)
        XCTAssertEqual(job.staleScaled, 1)
        XCTAssertEqual(job.membership.worker(rank: 0)?.pushes, 1)
    }

    // MARK: Losses and epochs

    func test_clock_lossesOfAStep_recordedOnceAllExpectedReportedInStepOrder() {
        var job = coordinator()
        join(&job, "a")
        join(&job, "b")
        XCTAssertEqual(job.onClock(rank: 1, clock: 1, loss: 3, samples: 4, now: 0).directives, [])
        XCTAssertEqual(job.onClock(rank: 1, clock: 2, loss: 5, samples: 4, now: 0).directives, [])
        let (_, _, directives) = job.onClock(rank: 0, clock: 1, loss: 1, samples: 4, now: 0)
        guard case .recordStep(let record)? = directives.first, directives.count == 1 else {
            return XCTFail("step 0 is complete: \(directives)")
        }
        XCTAssertEqual(record.step, 0)
        XCTAssertEqual(record.loss, 2)
        XCTAssertEqual(record.samples, 8)
        XCTAssertEqual(record.sequence, 0)
        let next = job.onClock(rank: 0, clock: 2, loss: 1, samples: 4, now: 0).directives
        guard case .recordStep(let second)? = next.first else { return XCTFail("step 1 is complete") }
        XCTAssertEqual(second.step, 1)
        XCTAssertEqual(second.sequence, 1)
    }

    /// The step records' step numbers among `directives`.
    private func recordedSteps(_ directives: [JobDirective]) -> [UInt64] {
        directives.compactMap { if case .recordStep(let record) = $0 { return record.step } else { return nil } }
    }

    /// Two workers run steps 0 and 1; then b pushes and reports step 2 while a is silent, and the tick at 11 s
    /// declares a dead. Returns the job, the steps recorded so far and the tick's directives.
    private func partitionedAtStep2() -> (JobCoordinator, [UInt64], [JobDirective]) {
        var job = coordinator(workers: 2)
        join(&job, "a")
        join(&job, "b", connection: 1)
        var steps: [UInt64] = []
        for step in 0..<2 as Range<UInt64> {
            _ = runStep(&job, step, ranks: [0, 1])
            steps += recordedSteps(job.onClock(rank: 0, clock: step + 1, loss: 1, samples: 4, now: 0).directives)
            steps += recordedSteps(job.onClock(rank: 1, clock: step + 1, loss: 1, samples: 4, now: 0).directives)
        }
        // b pushes step 2 and reports it; a is silent.
        XCTAssertEqual(job.onBSPPush(shard: 0, step: 2, rank: 1, now: 5 * second).0, .accepted)
        steps += recordedSteps(job.onClock(rank: 1, clock: 3, loss: 2, samples: 4, now: 5 * second).directives)
        let death = job.onTick(now: 11 * second)
        return (job, steps, death)
    }

    /// Issue 15 item 23: worker a (rank 0) is cut off after its push for step 2 got stuck; b goes on, a is declared
    /// dead and step 2 is recorded with b alone. When the partition heals, a's late clock for step 2 arrives on its
    /// old connection, then a rejoins. Step 2 must not be recorded a second time, and the later steps still are.
    func test_clock_lateReportOfADeadWorker_forARecordedStep_isNotRecordedAgain() {
        let partitioned = partitionedAtStep2()
        var job = partitioned.0
        var steps = partitioned.1
        let death = partitioned.2
        XCTAssertEqual(events(death).first, "worker-dead")
        steps += recordedSteps(death)
        for case .apply(let shard, let step, _) in death {
            steps += recordedSteps(job.onApplied(shard: shard, step: step, now: 11 * second))
        }
        XCTAssertEqual(steps, [0, 1, 2], "step 2 recorded with b alone")
        // The heal: a's late report of step 2 (clock 3), then its rejoin.
        steps += recordedSteps(job.onClock(rank: 0, clock: 3, loss: 9, samples: 4, now: 12 * second).directives)
        let (rejoin, _) = join(&job, "a", connection: 2, now: 12 * second)
        XCTAssertEqual(rejoin?.rank, 0)
        XCTAssertEqual(rejoin?.rejoined, true)
        let start = rejoin?.startStep ?? 0
        XCTAssertEqual(start, 3, "a starts at the first step not yet applied")
        for step in start..<start + 2 {
            _ = runStep(&job, step, ranks: [0, 1], now: 12 * second)
            steps += recordedSteps(
                job.onClock(rank: 0, clock: step + 1, loss: 1, samples: 4, now: 12 * second).directives)
            steps += recordedSteps(
                job.onClock(rank: 1, clock: step + 1, loss: 1, samples: 4, now: 12 * second).directives)
        }
        XCTAssertEqual(steps, [0, 1, 2, 3, 4], "every step recorded once, in order")
    }

    /// The same partition, but a rejoins before the shell has carried out the apply of step 2 that a's death
    /// released: step 2 was recorded with b alone, a starts at the next step, and both then report every step.
    /// Step 2 is neither recorded nor applied a second time (this one passed before the fix too: it guards it).
    func test_clock_rejoinIntoTheRecordedOpenStep_stepIsRecordedAndAppliedOnce() {
        let partitioned = partitionedAtStep2()
        var job = partitioned.0
        var steps = partitioned.1
        let death = partitioned.2
        var applies: [UInt64] = []
        steps += recordedSteps(death)
        var pendingApplies: [(Int, UInt64)] = []
        for case .apply(let shard, let step, _) in death { pendingApplies.append((shard, step)) }
        applies += pendingApplies.map(\.1)
        XCTAssertEqual(steps, [0, 1, 2])
        let (rejoin, rejoinDirectives) = join(&job, "a", connection: 2, now: 12 * second)
        XCTAssertEqual(rejoin?.rank, 0)
        for case .apply(_, let step, _) in rejoinDirectives { applies.append(step) }
        let start = rejoin?.startStep ?? 0
        for (shard, step) in pendingApplies { _ = job.onApplied(shard: shard, step: step, now: 12 * second) }
        for step in start..<4 {
            for rank in [0, 1] {
                let (verdict, directives) = job.onBSPPush(shard: 0, step: step, rank: rank, now: 12 * second)
                guard verdict == .accepted else { continue }
                for case .apply(let s, let t, _) in directives {
                    applies.append(t)
                    steps += recordedSteps(job.onApplied(shard: s, step: t, now: 12 * second))
                }
            }
            for rank in [0, 1] {
                steps += recordedSteps(
                    job.onClock(rank: rank, clock: step + 1, loss: 1, samples: 4, now: 12 * second).directives)
            }
        }
        XCTAssertEqual(steps, Array(0...3), "every step recorded once (a started at \(start))")
        XCTAssertEqual(applies.filter { $0 == 2 }.count, 1, "step 2 applied once: \(applies)")
    }

    func test_epoch_reportedByEveryWorker_recordedOnce() {
        var job = coordinator()
        join(&job, "a")
        join(&job, "b")
        let epoch = EpochRecord(epoch: 0, testLoss: 0.51234, testAccuracy: 0.875, samples: 100)
        let first = job.onEpoch(epoch, now: 10)
        XCTAssertEqual(events(first), ["epoch"])
        guard case .log(let record) = first[0] else { return XCTFail("a log line first") }
        XCTAssertEqual(record.fields.map(\.value), ["1", "0.5123", "0.8750"], "epochs count from 1, as on the console")
        XCTAssertEqual(job.lastEpoch?.epoch, 1)
        XCTAssertEqual(job.onEpoch(epoch, now: 11), [], "the second report of an epoch is ignored")
        XCTAssertEqual(job.lastEpoch?.elapsedNanos, 10)
    }

    func test_stop_anyPhase_reportsStopping() {
        var job = coordinator()
        XCTAssertEqual(job.phase, .waiting)
        job.onStop()
        XCTAssertEqual(job.phase, .stopping)
    }
}
