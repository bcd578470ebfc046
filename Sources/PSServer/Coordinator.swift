import PSCoordinator
import PSLog
import PSPosix
import PSTransport
import PSWire

/// The coordinator's shell: it owns the pure `JobCoordinator` behind one lock, feeds it events with the current
/// time and hands back the directives it returns, which the server carries out after the lock is released.
///
/// Threads that must wait (a pull for a step that is not complete yet, a BSP leave whose last pushes are not
/// applied yet) use the named waits here; every event that changes the instance wakes them. No log line, file
/// write or socket call happens while the lock is held.
final class Coordinator: Sendable {
    let config: ServerConfig
    let job: JobDescription
    private let instance: LockedValue<JobCoordinator>

    init(config: ServerConfig, job: JobDescription, completedSteps: UInt64, restoredClocks: [String: UInt64]) {
        self.config = config
        self.job = job
        let settings = JobSettings(
            mode: config.mode, workers: job.workers, staleness: config.staleness, shardCount: config.shardCount,
            workerTimeoutNanos: UInt64(min(config.workerTimeoutSeconds * 1e9, Double(UInt64.max / 2))),
            checkpointEverySteps: config.checkpointEverySteps, checkpointEverySeconds: config.checkpointEverySeconds,
            servers: config.servers)
        instance = LockedValue(
            JobCoordinator(
                settings: settings, now: MonotonicClock.nanoseconds(), completedSteps: completedSteps,
                restoredClocks: restoredClocks))
    }

    /// Runs one event on the instance with the current time (read before the lock) and wakes the waiters when it
    /// changed what they wait on (`JobCoordinator.waitInputs`). A BSP step's pushes and per-shard applies, and
    /// most clocks, change nothing a waiter reads until the step is released.
    private func event<R>(_ body: (inout JobCoordinator, _ now: UInt64) -> R) -> R {
        let now = MonotonicClock.nanoseconds()
        return instance.withLock(broadcastingChangesOf: \.waitInputs) { body(&$0, now) }
    }

    /// Runs an event that no waiter waits for (a count), without waking anyone.
    private func quietEvent<R>(_ body: (inout JobCoordinator, _ now: UInt64) -> R) -> R {
        let now = MonotonicClock.nanoseconds()
        return instance.withLock { body(&$0, now) }
    }

    /// A copy of the instance, for status, summaries and manifests formatted outside the lock.
    var snapshot: JobCoordinator { instance.withLock { $0 } }

    // MARK: Events (each returns the directives to carry out)

    /// `previousHungUp` checks (outside the lock) whether the name's earlier connection is gone.
    func join(
        name: String, connectionID: UInt64, previousHungUp: (UInt64) -> Bool
    ) -> (Result<JoinAccepted, JoinRefusal>, [JobDirective]) {
        let previous = instance.withLock { $0.connection(ofName: name) }
        let hungUp = previous.map(previousHungUp) ?? false
        return event { $0.onJoin(name: name, connection: connectionID, now: $1, previousConnectionHungUp: hungUp) }
    }

    func connectionClosed(_ connectionID: UInt64) {
        instance.withLock { $0.onConnectionClosed(connection: connectionID) }
    }

    func serverJoin(address: String, shards: Int) -> (Result<ServerJoinAccepted, JoinRefusal>, [JobDirective]) {
        event { $0.onServerJoin(address: address, shards: shards, now: $1) }
    }

    /// Scale-out rollback: replaces the job's state with the checkpoint's (see `JobCoordinator.rolledBack`) and
    /// gives its ranks back; every wait re-evaluates against the new state.
    func rollBack(completedSteps: UInt64, restoredClocks: [String: UInt64], ranks: [String: Int]) -> [JobDirective] {
        event { instance, now in
            instance = instance.rolledBack(completedSteps: completedSteps, restoredClocks: restoredClocks, now: now)
            return instance.onRestored(ranks: ranks, now: now)
        }
    }

    func restored(ranks: [String: Int]) -> [JobDirective] {
        event { $0.onRestored(ranks: ranks, now: $1) }
    }

    func heartbeat(rank: Int, clock: UInt64?) -> JobState {
        event { instance, now in
            instance.onHeartbeat(rank: rank, clock: clock, now: now)
            return Self.jobState(instance)
        }
    }

    func clock(rank: Int, clock: UInt64, loss: Double, samples: UInt64) -> (JobState, UInt64, [JobDirective]) {
        event { instance, now in
            let (_, minClock, directives) = instance.onClock(
                rank: rank, clock: clock, loss: loss, samples: samples, now: now)
            return (Self.jobState(instance), minClock, directives)
        }
    }

    func epoch(_ epoch: EpochMetrics, rank: Int?) -> [JobDirective] {
        let record = EpochRecord(
            epoch: epoch.epoch, testLoss: epoch.testLoss, testAccuracy: epoch.testAccuracy, samples: epoch.samples)
        return event { $0.onEpoch(record, rank: rank, now: $1) }
    }

    func tick() -> [JobDirective] {
        event { $0.onTick(now: $1) }
    }

    func leave(rank: Int, finished: Bool) -> [JobDirective] {
        event { $0.onLeave(rank: rank, finished: finished, now: $1) }
    }

    func bspPush(shard: Int, step: UInt64, rank: Int) -> (PushVerdict, [JobDirective]) {
        event { $0.onBSPPush(shard: shard, step: step, rank: rank, now: $1) }
    }

    func asyncPush(rank: Int?, status: PushStatus) {
        quietEvent {
            $0.onAsyncPush(
                rank: rank, staleDropped: status == .droppedStale, staleScaled: status == .appliedScaled, now: $1)
        }
    }

    func applied(shard: Int, step: UInt64) -> [JobDirective] {
        event { $0.onApplied(shard: shard, step: step, now: $1) }
    }

    func checkpointTaken(step: UInt64) {
        event { $0.onCheckpointTaken(step: step, now: $1) }
    }

    func requestCheckpoint() {
        event { instance, now in instance.onCheckpointRequested(now: now) }
    }

    func stop() {
        event { instance, _ in instance.onStop() }
    }

    // MARK: Queries

    /// The job state reported in heartbeat and clock acknowledgements.
    var jobState: JobState { instance.withLock { Self.jobState($0) } }

    private static func jobState(_ instance: JobCoordinator) -> JobState {
        instance.jobFinished ? .finished : (instance.stopping ? .stopping : .running)
    }

    /// Whether the BSP job is under way (a checkpoint request then waits for the next step boundary).
    var isRunning: Bool { instance.withLock { $0.jobStarted && !$0.jobFinished } }

    /// The step a checkpoint taken now records.
    var checkpointStep: UInt64 { instance.withLock { $0.checkpointStep } }

    // MARK: Named waits

    /// How a wait ended.
    enum WaitOutcome: Equatable {
        case ready
        case timedOut(String)
        case stopping
        case peerGone
    }

    /// Waits until a pull for `step` may be answered (see `JobCoordinator.mayPull`).
    func waitForStep(_ step: UInt64, rank: Int?, connection: FramedConnection) -> WaitOutcome {
        wait(rank: rank, connection: connection, until: { $0.mayPull(step: step) }) { $0.describeWait(step: step) }
    }

    /// Waits until all M servers registered (a joined server's `serverJoin` is answered then).
    func waitForServers(connection: FramedConnection) -> WaitOutcome {
        wait(rank: nil, connection: connection, until: { $0.allServersRegistered }) {
            "\($0.joinedServers.count + 1) of \($0.settings.servers) servers registered"
        }
    }

    /// BSP: waits until every step `rank` pushed has been applied, so its leave cannot lose a gradient.
    func waitForLeave(rank: Int, connection: FramedConnection) -> WaitOutcome {
        wait(rank: rank, connection: connection, until: { $0.hasAppliedAllPushes(of: rank) }) {
            "worker \(rank) leaving after step \($0.membership.worker(rank: rank)?.clock ?? 0)"
        }
    }

    /// Waits until `isReady` holds, refreshing `rank`'s liveness while it waits (a worker blocked on us is alive),
    /// and gives up when the server stops, the peer hangs up, or `--wait-timeout` passes. The lock is released
    /// every quarter second to look at the peer's socket.
    private func wait(
        rank: Int?, connection: FramedConnection, until isReady: (JobCoordinator) -> Bool,
        describe: (JobCoordinator) -> String
    ) -> WaitOutcome {
        let readyNow = instance.withLock { instance in
            if isReady(instance) { return true }
            instance.onWaitStarted()
            return false
        }
        if readyNow { return .ready }
        let deadline = MonotonicClock.deadline(afterSeconds: config.waitTimeoutSeconds)
        while true {
            let slice = min(deadline, MonotonicClock.deadline(afterSeconds: 0.25))
            let (ready, stopping) = instance.wait(until: slice, while: { !isReady($0) && !$0.stopping }) {
                instance, _ in (isReady(instance), instance.stopping)
            }
            if ready { return .ready }
            if stopping { return .stopping }
            let now = MonotonicClock.nanoseconds()
            if now >= deadline { return .timedOut(instance.withLock { describe($0) }) }
            if connection.peerHasHungUp() { return .peerGone }
            if let rank { instance.withLock { $0.refreshLiveness(rank: rank, now: now) } }
        }
    }
}
