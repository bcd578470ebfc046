import Foundation
import PSCoordinator
import PSLog
import PSPosix
import PSTransport
import PSWire
import Synchronization

/// The coordinator's shell: it owns the pure state machines (membership, BSP barrier, SSP bound, checkpoint
/// schedule), feeds them events with the current time and carries out the directives they return.
///
/// State lives behind one `Mutex`; threads that must wait (a pull for a step that is not complete yet, a worker
/// waiting for the job to start) sleep on `changed`, which every state change broadcasts. The lock order is
/// `changed` -> `core` (a waiter checks its condition while holding `changed`); no shard lock is ever taken while
/// `core` is held.
final class Coordinator: @unchecked Sendable {
    // @unchecked Sendable: `core` is a Mutex and `changed` an NSCondition; the rest is immutable.

    struct Core {
        var membership: Membership
        var barrier: BSPBarrier
        var ssp: SSPBound
        var schedule: CheckpointSchedule
        /// Steps complete and released to pullers (BSP); lags `barrier.completedSteps` only while a checkpoint
        /// snapshot of the boundary is being copied.
        var releasedSteps: UInt64
        var jobStarted = false
        var jobFinished = false
        var stopping = false
        var barrierWaits: UInt64 = 0
        var pendingLosses: [UInt64: [Int: (loss: Double, samples: UInt64)]] = [:]
        var lastLossStep: UInt64? = nil
        var lastEpoch: EpochMetrics? = nil
        var recordedEpochs = Set<UInt32>()
        var restoredClocks: [String: UInt64] = [:]
        /// Restored from a checkpoint: the job waits until every worker named in it rejoined.
        var awaitingRestoredWorkers = false
        var events: [String] = []
        var finalized = false
        var finishedAtNanos: UInt64? = nil
        var samplesReported: UInt64 = 0
        /// SSP/async pushes dropped or scaled by the stale-gradient bound (for step records and status).
        var staleDropped: UInt64 = 0
        var staleScaled: UInt64 = 0
        /// The connection each rank joined on, so a rejoin can close the connection it replaces.
        var connectionOfRank: [Int: UInt64] = [:]
    }

    let config: ServerConfig
    let job: JobDescription
    let core: Mutex<Core>
    let changed = NSCondition()
    let log: Logger
    let metrics: MetricsFile?
    let startNanos = MonotonicClock.nanoseconds()

    init(
        config: ServerConfig, job: JobDescription, completedSteps: UInt64, restoredClocks: [String: UInt64],
        log: Logger, metrics: MetricsFile?
    ) {
        self.config = config
        self.job = job
        self.log = log
        self.metrics = metrics
        let now = MonotonicClock.nanoseconds()
        let timeout = UInt64(config.workerTimeoutSeconds * 1e9)
        let staleness: UInt64 =
            switch config.mode {
            case .bsp: 0
            case .ssp: config.staleness
            case .async: UInt64.max
            }
        var core = Core(
            membership: Membership(expectedWorkers: job.workers, workerTimeoutNanos: timeout),
            barrier: BSPBarrier(shardCount: config.shardCount, completedSteps: completedSteps),
            ssp: SSPBound(staleness: staleness),
            schedule: CheckpointSchedule(
                everySteps: config.checkpointEverySteps, everySeconds: config.checkpointEverySeconds,
                startNanos: now, completedSteps: completedSteps),
            releasedSteps: completedSteps)
        core.restoredClocks = restoredClocks
        self.core = Mutex(core)
    }

    // MARK: Waking waiters

    /// Runs `body` on the state, then wakes every waiter so it re-checks its condition.
    @discardableResult
    func update<R>(_ body: (inout Core) -> R) -> R {
        let result = core.withLock { body(&$0) }
        changed.lock()
        changed.broadcast()
        changed.unlock()
        return result
    }

    enum WaitOutcome {
        case ready
        case timedOut(String)
        case stopping
        case peerGone
    }

    /// Waits until `isReady` holds, refreshing `rank`'s liveness while it waits (a worker blocked on us is alive)
    /// and giving up when the peer hangs up, the server stops, or the wait deadline passes.
    func wait(
        rank: Int?, connection: FramedConnection, describe: (Core) -> String, isReady: (Core) -> Bool
    ) -> WaitOutcome {
        let deadline = Date(timeIntervalSinceNow: config.waitTimeoutSeconds)
        var counted = false
        changed.lock()
        defer { changed.unlock() }
        while true {
            let (ready, stopping) = core.withLock { ($0.jobFinished || isReady($0), $0.stopping) }
            if ready { return .ready }
            if stopping { return .stopping }
            if !counted {
                counted = true
                core.withLock { $0.barrierWaits += 1 }
            }
            if Date() >= deadline {
                return .timedOut(core.withLock { describe($0) })
            }
            if connection.socket.peerHasHungUp() { return .peerGone }
            if let rank {
                let now = MonotonicClock.nanoseconds()
                core.withLock { $0.membership.refresh(rank: rank, now: now) }
            }
            _ = changed.wait(until: min(deadline, Date(timeIntervalSinceNow: 0.25)))
        }
    }

    // MARK: Membership

    /// A worker's hello: its rank and the step it starts at, or a reason to refuse it. `replacedConnection` is the
    /// id of the connection an earlier incarnation of the name still holds (the shell closes it); `directives` are
    /// barrier applies that the rejoin made possible (a rejoined rank is not expected at a step already started).
    func join(name: String, connectionID: UInt64) -> Result<Joined, JoinRefusal> {
        let now = MonotonicClock.nanoseconds()
        return update { core in
            if core.jobFinished { return .failure(JoinRefusal(code: .invalidState, reason: "the job has finished")) }
            let activeFrom: UInt64
            if config.mode == .bsp {
                // The first step whose barrier has not started: a rejoined worker must not push to a step that
                // some shard already holds or applied without it.
                activeFrom = max(core.releasedSteps, core.barrier.firstUnstartedStep)
            } else {
                // SSP/async: resume at the clock this name reached (before a restart of the server: the
                // checkpoint's clock); a new name starts at 0.
                activeFrom = core.membership.worker(named: name)?.clock ?? core.restoredClocks[name] ?? 0
            }
            let (result, membershipDirectives) = core.membership.join(
                name: name, now: now, activeFromStep: activeFrom)
            switch result {
            case .rejected(let reason):
                return .failure(JoinRefusal(code: .jobFull, reason: reason))
            case .joined(let rank, let rejoined):
                let start = activeFrom
                var replaced: UInt64? = nil
                for directive in membershipDirectives {
                    if case .closeReplacedConnection = directive { replaced = core.connectionOfRank[rank] }
                }
                core.connectionOfRank[rank] = connectionID
                let directives =
                    config.mode == .bsp && rejoined
                    ? core.barrier.onMembershipChange(membership: core.membership) : []
                if !core.jobStarted, Self.mayStartJob(core, workers: job.workers) {
                    core.jobStarted = true
                    log.info("job-started", ["workers": job.workers, "mode": config.mode.rawValue])
                }
                log.info("worker-joined", ["name": name, "rank": rank, "rejoined": rejoined, "start_step": start])
                return .success(
                    Joined(
                        rank: rank, startStep: start, rejoined: rejoined, replacedConnection: replaced,
                        directives: directives))
            }
        }
    }

    func heartbeat(rank: Int, clock: UInt64?) {
        let now = MonotonicClock.nanoseconds()
        core.withLock { core in
            if let clock {
                core.membership.onHeartbeat(
                    rank: rank, clock: max(clock, core.membership.worker(rank: rank)?.clock ?? 0), now: now)
            } else {
                core.membership.refresh(rank: rank, now: now)
            }
        }
    }

    /// Periodic check for dead workers; returns barrier applies the shell must carry out.
    func tick() -> [BarrierDirective] {
        let now = MonotonicClock.nanoseconds()
        return update { core in
            let deaths = core.membership.onTick(now: now)
            guard !deaths.isEmpty else { return [] }
            for directive in deaths {
                if case .declareDead(let rank, let name, let reason) = directive {
                    log.warning("worker-dead", ["name": name, "rank": rank, "reason": reason])
                    core.events.append("worker \(name) (rank \(rank)) declared dead: \(reason)")
                }
            }
            flushLosses(&core)
            return config.mode == .bsp ? core.barrier.onMembershipChange(membership: core.membership) : []
        }
    }

    /// A worker finished (or gave up); returns barrier applies and whether the whole job is now finished.
    func leave(rank: Int, reason: UInt32) -> [BarrierDirective] {
        let now = MonotonicClock.nanoseconds()
        return update { core in
            _ = core.membership.onLeave(rank: rank, now: now)
            log.info("worker-left", ["rank": rank, "reason": reason == 0 ? "finished" : "error"])
            flushLosses(&core)
            return config.mode == .bsp ? core.barrier.onMembershipChange(membership: core.membership) : []
        }
    }

    /// Whether every worker has finished (or died after others finished): the job is over.
    func checkJobFinished() -> Bool {
        update { core in
            if core.jobFinished { return true }
            let records = core.membership.workers
            let anyLive = records.contains { $0.state == .live }
            let anyLeft = records.contains { $0.state == .left }
            if core.jobStarted, !anyLive, anyLeft {
                core.jobFinished = true
            }
            return core.jobFinished
        }
    }

    // MARK: BSP

    func bspPush(shard: Int, step: UInt64, rank: Int) -> BarrierDecision {
        update { core in core.barrier.onPush(shard: shard, step: step, rank: rank, membership: core.membership) }
    }

    /// Records that a shard applied `step`; returns the step if it completed everywhere.
    func applied(shard: Int, step: UInt64) -> UInt64? {
        core.withLock { core in
            for directive in core.barrier.onApplied(shard: shard, step: step) {
                if case .stepCompleted(let completed) = directive { return completed }
            }
            return nil
        }
    }

    /// Whether a checkpoint is due at the boundary after `step`.
    func checkpointDue(afterStep step: UInt64) -> Bool {
        let now = MonotonicClock.nanoseconds()
        return core.withLock { $0.schedule.onStepCompleted(step: step + 1, now: now) }
    }

    /// Releases pulls for the step after `step`.
    func release(afterStep step: UInt64) {
        update { core in core.releasedSteps = max(core.releasedSteps, step + 1) }
    }

    // MARK: Losses and metrics

    func recordClock(rank: Int, clock: UInt64, loss: Double, samples: UInt64) -> (JobState, UInt64) {
        let now = MonotonicClock.nanoseconds()
        return update { core in
            core.membership.onHeartbeat(rank: rank, clock: clock, now: now)
            if clock > 0 {
                core.pendingLosses[clock - 1, default: [:]][rank] = (loss, samples)
            }
            flushLosses(&core)
            let state: JobState = core.jobFinished ? .finished : (core.stopping ? .stopping : .running)
            return (state, core.membership.minLiveClock ?? clock)
        }
    }

    /// Writes step records whose every expected worker has reported, in step order, averaging in rank order.
    private func flushLosses(_ core: inout Core) {
        for step in core.pendingLosses.keys.sorted() {
            guard let reports = core.pendingLosses[step] else { continue }
            let expected = core.membership.liveRanks.filter {
                core.membership.isExpected(rank: $0, atStep: step)
            }
            let missing = expected.filter { reports[$0] == nil }
            guard missing.isEmpty else { break }
            let ranks = reports.keys.sorted()
            var sum = 0.0
            var samples: UInt64 = 0
            for rank in ranks {
                sum += reports[rank]!.loss
                samples += reports[rank]!.samples
            }
            let mean = ranks.isEmpty ? Double.nan : sum / Double(ranks.count)
            core.pendingLosses[step] = nil
            core.lastLossStep = step
            let live = core.membership.workers.filter { $0.state == .live }
            metrics?.write([
                "type": .string("step"), "step": .int(Int(step)), "loss": .double(mean),
                "workers": .int(ranks.count), "samples": .int(Int(samples)),
                "min_clock": .int(Int(core.membership.minLiveClock ?? 0)),
                "max_clock": .int(Int(core.membership.maxClock)),
                "clocks": .object(
                    Dictionary(
                        uniqueKeysWithValues: core.membership.workers.map {
                            ($0.name, MetricsValue.int(Int($0.clock)))
                        })),
                "live_clocks": .object(
                    Dictionary(uniqueKeysWithValues: live.map { ($0.name, MetricsValue.int(Int($0.clock))) })),
                "stale_dropped": .int(Int(core.staleDropped)),
                "stale_scaled": .int(Int(core.staleScaled)),
                "elapsed_s": .double(Double(MonotonicClock.nanoseconds() - startNanos) / 1e9),
            ])
        }
    }

    func recordEpoch(_ epoch: EpochMetrics) {
        // Every worker reports each epoch; the first report is the record.
        let isNew = core.withLock { core in
            guard core.recordedEpochs.insert(epoch.epoch).inserted else { return false }
            core.lastEpoch = epoch
            return true
        }
        guard isNew else { return }
        log.info(
            "epoch",
            [
                "epoch": epoch.epoch, "test_loss": String(format: "%.4f", epoch.testLoss),
                "test_accuracy": String(format: "%.4f", epoch.testAccuracy),
            ])
        metrics?.write([
            "type": .string("epoch"), "epoch": .int(Int(epoch.epoch)), "test_loss": .double(epoch.testLoss),
            "test_accuracy": .double(epoch.testAccuracy), "samples": .int(Int(epoch.samples)),
            "elapsed_s": .double(Double(MonotonicClock.nanoseconds() - startNanos) / 1e9),
        ])
    }

    // MARK: Gates

    /// Whether a pull for `step` may be answered now, per mode.
    func mayPull(step: UInt64, core: Core) -> Bool {
        guard core.jobStarted else { return false }
        switch config.mode {
        case .bsp: return core.releasedSteps >= step
        case .ssp, .async: return core.ssp.mayStart(step: step, membership: core.membership)
        }
    }

    func describeWait(step: UInt64, core: Core) -> String {
        if !core.jobStarted {
            let joined = core.membership.liveRanks.count
            return "the job has not started: \(joined) of \(job.workers) workers joined"
        }
        switch config.mode {
        case .bsp:
            let held = Set((0..<core.barrier.shardCount).flatMap { core.barrier.heldRanks(shard: $0) })
            let missing = core.membership.expectedRanks(atStep: core.releasedSteps).filter { !held.contains($0) }
            return "step \(step) is not complete (step \(core.releasedSteps) waits for ranks \(missing))"
        case .ssp, .async:
            return "step \(step) must wait for the slowest worker (min clock \(core.membership.minLiveClock ?? 0), "
                + "staleness \(config.staleness))"
        }
    }

    func stop() {
        update { $0.stopping = true }
    }

    /// The job state reported in heartbeat and clock acknowledgements.
    var jobState: JobState {
        core.withLock { $0.jobFinished ? .finished : ($0.stopping ? .stopping : .running) }
    }

    /// Counts a push from `rank` (status) and refreshes its liveness.
    func countPush(rank: Int) {
        let now = MonotonicClock.nanoseconds()
        core.withLock { _ = $0.membership.onPush(rank: rank, now: now) }
    }

    /// Counts a push that the stale-gradient bound dropped or applied scaled.
    func countStale(dropped: Bool) {
        core.withLock { core in
            if dropped { core.staleDropped += 1 } else { core.staleScaled += 1 }
        }
    }

    /// True exactly once, for the caller that finalizes the finished job.
    func markFinalized() -> Bool {
        core.withLock { core in
            guard core.jobFinished, !core.finalized else { return false }
            core.finalized = true
            core.finishedAtNanos = MonotonicClock.nanoseconds()
            return true
        }
    }

    /// SSP/async: whether a time- or request-triggered checkpoint is due now (there is no barrier to wait for).
    func asyncCheckpointDue() -> Bool {
        let now = MonotonicClock.nanoseconds()
        return core.withLock { core in
            let step = core.membership.minLiveClock ?? core.membership.maxClock
            return core.schedule.isDue(step: step, now: now)
        }
    }

    /// Records that a checkpoint was taken at `step`.
    func checkpointTaken(step: UInt64) {
        let now = MonotonicClock.nanoseconds()
        core.withLock { $0.schedule.onCheckpointTaken(step: step, now: now) }
    }

    /// Asks for a checkpoint at the next step boundary.
    func requestCheckpoint() {
        let now = MonotonicClock.nanoseconds()
        core.withLock { $0.schedule.request(now: now) }
    }

    /// Completed (and released) steps.
    var completedSteps: UInt64 { core.withLock { $0.releasedSteps } }

    /// Worker names and clocks, for checkpoints.
    func workerClocks() -> (clocks: [String: UInt64], ranks: [String: Int]) {
        core.withLock { core in
            var clocks: [String: UInt64] = [:]
            var ranks: [String: Int] = [:]
            for worker in core.membership.workers {
                clocks[worker.name] = worker.clock
                ranks[worker.name] = worker.rank
            }
            return (clocks, ranks)
        }
    }

    /// The end-of-job summary line's fields.
    func summary() -> KeyValuePairs<String, CustomStringConvertible> {
        let (steps, epoch, seconds) = core.withLock { core in
            (
                config.mode == .bsp ? core.releasedSteps : core.membership.maxClock, core.lastEpoch,
                Double((core.finishedAtNanos ?? MonotonicClock.nanoseconds()) - startNanos) / 1e9
            )
        }
        let samples = Double(steps) * Double(job.batchPerWorker * job.workers)
        return [
            "steps": steps, "epochs": job.epochs,
            "test_accuracy": epoch.map { String(format: "%.4f", $0.testAccuracy) } ?? "n/a",
            "wall_s": String(format: "%.2f", seconds),
            "samples_per_s": String(format: "%.0f", samples / max(seconds, 1e-9)),
        ]
    }

    /// Job fields of the status document.
    func statusFields() -> [String: MetricsValue] {
        let now = MonotonicClock.nanoseconds()
        return core.withLock { core in
            let workers: [MetricsValue] = core.membership.workers.map { worker in
                .object([
                    "name": .string(worker.name), "rank": .int(worker.rank), "state": .string(worker.state.rawValue),
                    "clock": .int(Int(worker.clock)), "pushes": .int(Int(worker.pushes)),
                    "last_seen_s": .double(Double(now &- min(worker.lastSeen, now)) / 1e9),
                    "rejoins": .int(worker.rejoins),
                ])
            }
            var fields: [String: MetricsValue] = [
                "workers": .array(workers),
                "expected_workers": .int(job.workers),
                "completed_steps": .int(Int(core.releasedSteps)),
                "min_clock": .int(Int(core.membership.minLiveClock ?? 0)),
                "max_clock": .int(Int(core.membership.maxClock)),
                "barrier_waits": .int(Int(core.barrierWaits)),
                "job_started": .bool(core.jobStarted),
                "job_finished": .bool(core.jobFinished),
                "events": .array(core.events.suffix(20).map { .string($0) }),
                "staleness": .int(Int(config.staleness)),
            ]
            if let data = try? JSONEncoder().encode(job),
                let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
            {
                var jobFields: [String: MetricsValue] = [:]
                for (key, value) in object {
                    if let number = value as? Int {
                        jobFields[key] = .int(number)
                    } else if let text = value as? String {
                        jobFields[key] = .string(text)
                    }
                }
                fields["job"] = .object(jobFields)
            }
            return fields
        }
    }
}

extension Membership {
    /// Refreshes a live worker's liveness without changing its clock.
    mutating func refresh(rank: Int, now: UInt64) {
        if let clock = worker(rank: rank)?.clock {
            onClock(rank: rank, clock: clock, now: now)
        }
    }
}

/// An accepted hello: see `Coordinator.join(name:connectionID:)`.
struct Joined {
    let rank: Int
    let startStep: UInt64
    let rejoined: Bool
    let replacedConnection: UInt64?
    let directives: [BarrierDirective]
}

/// Why a worker's hello was refused.
struct JoinRefusal: Error {
    let code: ErrorCode
    let reason: String
}
