import PSCoordinator
import PSLog
import PSPosix
import PSTransport
import PSWire

/// The coordinator's shell: it owns the pure `JobCoordinator` behind one lock, feeds it events with the current
/// time and hands back the directives it returns, which the server carries out after the lock is released.
///
/// Threads that must wait (a pull for a step that is not complete yet, a BSP leave whose last pushes are not
/// applied yet) use the named waits here; every event that changes what they wait on wakes them. No log line, file
/// write or socket call happens while the lock is held.
final class Coordinator: Sendable {
    let config: ServerConfig
    let job: JobDescription
    /// The job's state, and the BSP applies shared out among the threads waiting on a step (`shareApplies`).
    private struct State {
        var job: JobCoordinator
        /// `.apply` directives not yet claimed, oldest first.
        var sharedApplies: [JobDirective] = []

        /// Takes the oldest shared apply not yet claimed, if any.
        mutating func claimApply() -> JobDirective? {
            sharedApplies.isEmpty ? nil : sharedApplies.removeFirst()
        }
    }
    private let state: LockedValue<State>

    init(config: ServerConfig, job: JobDescription, completedSteps: UInt64, restoredClocks: [String: UInt64]) {
        self.config = config
        self.job = job
        let settings = JobSettings(
            mode: config.mode, workers: job.workers, staleness: config.staleness, shardCount: config.shardCount,
            workerTimeoutNanos: UInt64(min(config.workerTimeoutSeconds * 1e9, Double(UInt64.max / 2))),
            checkpointEverySteps: config.checkpointEverySteps, checkpointEverySeconds: config.checkpointEverySeconds,
            servers: config.servers)
        state = LockedValue(
            State(
                job: JobCoordinator(
                    settings: settings, now: MonotonicClock.nanoseconds(), completedSteps: completedSteps,
                    restoredClocks: restoredClocks)))
    }

    /// Runs one event on the instance with the current time (read before the lock) and wakes the waiters when it
    /// changed what they wait on (`JobCoordinator.waitInputs`). A BSP step's pushes and per-shard applies, and
    /// most clocks, change nothing a waiter reads until the step is released.
    private func event<R>(_ body: (inout JobCoordinator, _ now: UInt64) -> R) -> R {
        let now = MonotonicClock.nanoseconds()
        // A closure rather than the key path `\.job.waitInputs`: no key path projection (`swift_getKeyPath`,
        // `_projectReadOnly`) on every event.
        return state.withLock(broadcastingChangesOf: { $0.job.waitInputs }) { body(&$0.job, now) }
    }

    /// Runs an event that no waiter waits for (a count), without waking anyone.
    private func quietEvent<R>(_ body: (inout JobCoordinator, _ now: UInt64) -> R) -> R {
        let now = MonotonicClock.nanoseconds()
        return state.withLock { body(&$0.job, now) }
    }

    /// A copy of the instance, for status, summaries and manifests formatted outside the lock.
    var snapshot: JobCoordinator { state.withLock { $0.job } }

    // MARK: Events (each returns the directives to carry out)

    /// `previousHungUp` checks (outside the lock) whether the name's earlier connection is gone.
    func join(
        name: String, connectionID: UInt64, previousHungUp: (UInt64) -> Bool
    ) -> (Result<JoinAccepted, JoinRefusal>, [JobDirective]) {
        let previous = state.withLock { $0.job.connection(ofName: name) }
        let hungUp = previous.map(previousHungUp) ?? false
        return event { $0.onJoin(name: name, connection: connectionID, now: $1, previousConnectionHungUp: hungUp) }
    }

    func connectionClosed(_ connectionID: UInt64) {
        state.withLock { $0.job.onConnectionClosed(connection: connectionID) }
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
    var jobState: JobState { state.withLock { Self.jobState($0.job) } }

    private static func jobState(_ instance: JobCoordinator) -> JobState {
        instance.jobFinished ? .finished : (instance.stopping ? .stopping : .running)
    }

    /// Whether the BSP job is under way (a checkpoint request then waits for the next step boundary).
    var isRunning: Bool { state.withLock { $0.job.jobStarted && !$0.job.jobFinished } }

    /// The step a checkpoint taken now records.
    var checkpointStep: UInt64 { state.withLock { $0.job.checkpointStep } }

    // MARK: Named waits

    /// How a wait ended.
    enum WaitOutcome: Equatable {
        case ready
        case timedOut(String)
        case stopping
        case peerGone
    }

    /// Waits until a pull for `step` may be answered (see `JobCoordinator.mayPull`). Meanwhile the thread claims
    /// and carries out (`help`) the applies another thread shares (`shareApplies`).
    func waitForStep(
        _ step: UInt64, rank: Int?, connection: FramedConnection, help: ((JobDirective) -> Void)? = nil
    ) -> WaitOutcome {
        wait(rank: rank, connection: connection, until: { $0.mayPull(step: step) }, help: help) {
            $0.describeWait(step: step)
        }
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
    /// every quarter second to look at the peer's socket. With `help`, a shared apply also ends a wait: it is
    /// claimed under the lock and carried out by `help` outside it, and the wait goes on.
    private func wait(
        rank: Int?, connection: FramedConnection, until isReady: (JobCoordinator) -> Bool,
        help: ((JobDirective) -> Void)? = nil, describe: (JobCoordinator) -> String
    ) -> WaitOutcome {
        let readyNow = state.withLock { state in
            if isReady(state.job) { return true }
            state.job.onWaitStarted()
            return false
        }
        if readyNow { return .ready }
        let helps = help != nil
        let deadline = MonotonicClock.deadline(afterSeconds: config.waitTimeoutSeconds)
        while true {
            let slice = min(deadline, MonotonicClock.deadline(afterSeconds: 0.25))
            let (ready, stopping, claimed) = state.wait(
                until: slice,
                while: { !isReady($0.job) && !$0.job.stopping && !(helps && !$0.sharedApplies.isEmpty) }
            ) { state, _ in
                (isReady(state.job), state.job.stopping, helps ? state.claimApply() : nil)
            }
            if let claimed, let help {
                help(claimed)
                continue
            }
            if ready { return .ready }
            if stopping { return .stopping }
            let now = MonotonicClock.nanoseconds()
            if now >= deadline { return .timedOut(state.withLock { describe($0.job) }) }
            if connection.peerHasHungUp() { return .peerGone }
            if let rank { state.withLock { $0.job.refreshLiveness(rank: rank, now: now) } }
        }
    }

    // MARK: Shared applies

    /// BSP: offers a step's per-shard `.apply` directives to the threads waiting on the step (`waitForStep` with
    /// `help`), waking them; the caller then claims them too (`claimSharedApply`) until none is left. A waiting
    /// connection thread would be woken at the step's release anyway: woken at the applies' start instead, it
    /// takes a share of the arithmetic on another core while its wake-up overlaps the caller's first apply, and
    /// is awake to send its reply the moment the step is released.
    func shareApplies(_ applies: [JobDirective]) {
        guard !applies.isEmpty else { return }
        state.withLockAndBroadcast { $0.sharedApplies += applies }
    }

    /// Takes the oldest shared apply not yet claimed, if any.
    func claimSharedApply() -> JobDirective? {
        state.withLock { $0.claimApply() }
    }

}
