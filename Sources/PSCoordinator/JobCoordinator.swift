/// The fixed facts of the job a coordinator runs (from the server's flags and the job description).
public struct JobSettings: Sendable, Equatable {
    /// BSP, SSP or async.
    public var mode: ConsistencyMode
    /// K: the number of workers the job starts with.
    public var workers: Int
    /// The SSP bound as configured (reported in status; the gate itself uses `JobCoordinator.ssp`).
    public var staleness: UInt64
    /// Total number of shards (the BSP barrier keeps one pending step per shard).
    public var shardCount: Int
    /// A live worker silent for longer than this is declared dead.
    public var workerTimeoutNanos: UInt64
    /// Checkpoint every this many steps (nil: not by steps).
    public var checkpointEverySteps: UInt64?
    /// Checkpoint every this many seconds (nil: not by time).
    public var checkpointEverySeconds: Double?
    /// M: the servers the job waits for before step 0, the coordinator's own included (`--servers`).
    public var servers: Int

    public init(
        mode: ConsistencyMode, workers: Int, staleness: UInt64, shardCount: Int, workerTimeoutNanos: UInt64,
        checkpointEverySteps: UInt64? = nil, checkpointEverySeconds: Double? = nil, servers: Int = 1
    ) {
        self.servers = servers
        self.mode = mode
        self.workers = workers
        self.staleness = staleness
        self.shardCount = shardCount
        self.workerTimeoutNanos = workerTimeoutNanos
        self.checkpointEverySteps = checkpointEverySteps
        self.checkpointEverySeconds = checkpointEverySeconds
    }
}

/// Where the job is in its life, as reported to workers and operators.
public enum JobPhase: String, Sendable, Equatable {
    /// Waiting for every worker (after a restore: every worker of the checkpoint) to join.
    case waiting
    /// Training.
    case running
    /// Every worker finished; the final weights are being written or were written.
    case finished
    /// The server is shutting down.
    case stopping
}

/// A log line the shell writes: the coordinator decides what happened, the shell prints it (no I/O under a lock).
public struct LogRecord: Sendable, Equatable {
    /// How important the line is.
    public enum Level: Sendable, Equatable {
        case info
        case warning
        case error
    }

    public let level: Level
    /// The event name (`worker-joined`, `job-started`, …).
    public let event: String
    /// Key-value fields in print order.
    public let fields: [Field]

    /// One `key=value` pair of a log line.
    public struct Field: Sendable, Equatable {
        public let key: String
        public let value: String
    }

    public init(_ level: Level, _ event: String, _ fields: [(String, String)] = []) {
        self.level = level
        self.event = event
        self.fields = fields.map { Field(key: $0.0, value: $0.1) }
    }
}

/// The training loss of one global step, averaged over the workers that ran it (in rank order): one line of the
/// metrics file.
public struct StepRecord: Sendable, Equatable {
    /// The record's place in the metrics file (step and epoch records share one sequence).
    public let sequence: UInt64
    public let step: UInt64
    public let loss: Double
    public let workers: Int
    public let samples: UInt64
    public let minClock: UInt64
    public let maxClock: UInt64
    /// Every worker's clock by name, and the live workers' alone.
    public let clocks: [String: UInt64]
    public let liveClocks: [String: UInt64]
    public let staleDropped: UInt64
    public let staleScaled: UInt64
    public let elapsedNanos: UInt64
}

/// One epoch's evaluation on the test set, as the first worker to finish the epoch reported it.
public struct EpochRecord: Sendable, Equatable {
    // `epoch`: in a recorded epoch the epoch's number from 1 (after the first pass: 1); in the report given to
    // `JobCoordinator.onEpoch`, the wire's index from 0.
    /// The record's place in the metrics file; filled in by the coordinator when it records the epoch.
    public var sequence: UInt64 = 0
    public let epoch: UInt32
    public let testLoss: Double
    public let testAccuracy: Double
    public let samples: UInt64
    /// Filled in by the coordinator when it records the epoch.
    public var elapsedNanos: UInt64
    /// Which weights were evaluated (filled in by the coordinator): the reporting worker's clock, i.e. the step
    /// whose weights it pulled, and the slowest and fastest live workers' clocks then. In BSP every worker's
    /// weights at an epoch's end are the same; in SSP/async they are a snapshot of a moving model.
    public var weightsAtStep: UInt64? = nil
    public var minClock: UInt64? = nil
    public var maxClock: UInt64? = nil

    /// The wire's epoch number of a report that evaluates the job's final weights, after every worker's last push
    /// (SSP/async; `EpochMetrics.finalWeights`); it is not an epoch record.
    public static let finalWeights = UInt32.max

    public init(epoch: UInt32, testLoss: Double, testAccuracy: Double, samples: UInt64, elapsedNanos: UInt64 = 0) {
        self.epoch = epoch
        self.testLoss = testLoss
        self.testAccuracy = testAccuracy
        self.samples = samples
        self.elapsedNanos = elapsedNanos
    }
}

/// What the shell must do after an event, in order, after it released the coordinator's lock.
public enum JobDirective: Sendable, Equatable {
    /// Write a log line.
    case log(LogRecord)
    /// Append a step record to the metrics file.
    case recordStep(StepRecord)
    /// Append an epoch record to the metrics file.
    case recordEpoch(EpochRecord)
    /// BSP: apply the mean of `ranks`' held gradients for `step` on `shard`, then report `onApplied`.
    case apply(shard: Int, step: UInt64, ranks: [WorkerID])
    /// Snapshot the model for a checkpoint recording `step` completed steps, then report `onCheckpointTaken`.
    /// In BSP the next step is released only after that report, so the snapshot is exactly the boundary.
    case takeCheckpoint(step: UInt64)
    /// Close the connection with this id: a rejoined worker's previous incarnation must not act for its rank.
    case closeConnection(UInt64)
    /// Every worker finished: write the final weights and checkpoint, print the summary, stop (unless told not to).
    case finishJob
}

/// A worker's hello that was accepted.
public struct JoinAccepted: Sendable, Equatable {
    public let rank: WorkerID
    /// The first step the worker computes.
    public let startStep: UInt64
    public let rejoined: Bool

    public init(rank: WorkerID, startStep: UInt64, rejoined: Bool) {
        self.rank = rank
        self.startStep = startStep
        self.rejoined = rejoined
    }
}

/// A worker's hello that was refused, and why.
public struct JoinRefusal: Error, Sendable, Equatable {
    /// The kind of refusal (the shell maps it to a wire error code).
    public enum Kind: Sendable, Equatable {
        /// The job has finished: nothing to join.
        case jobFinished
        /// Every rank is assigned to another name.
        case jobFull
        /// A live worker with the same name is connected and heard from: two workers were given one `--name`.
        case nameInUse
    }

    public let kind: Kind
    public let reason: String
}

/// A server of the job and the number of shards it serves; index 0 is the coordinator's own.
public struct RegisteredServer: Sendable, Equatable {
    /// `host:port` workers use to reach it.
    public let address: String
    /// Its `--shards`.
    public let shards: Int

    public init(address: String, shards: Int) {
        self.address = address
        self.shards = shards
    }
}

/// A joined server's `serverJoin` that was accepted.
public struct ServerJoinAccepted: Sendable, Equatable {
    /// The server's index: 0 is the coordinator, joined servers count up in registration order.
    public let index: Int
    /// Whether the address had registered before (a restarted server keeps its index and shards).
    public let rejoined: Bool

    public init(index: Int, rejoined: Bool) {
        self.index = index
        self.rejoined = rejoined
    }
}

/// What a BSP push decided, before its directives are carried out.
public enum PushVerdict: Sendable, Equatable {
    /// The gradient is held (and may have completed the shard's step: see the directives).
    case accepted
    /// The push does not belong to the pending step; the shard must drop what it held for the rank.
    case rejected(String)
}

/// The job coordinator: membership, the BSP barrier, the SSP bound, the checkpoint schedule and the job's
/// lifecycle, as one value with no I/O (the "instance" of swift-cluster-membership's instance/shell split).
///
/// Every `on…` method takes the current time as an argument and returns directives that the shell carries out, in
/// order, after releasing the lock that guards this value. Queries (`mayPull`, `describeWait`, `phase`, …) are pure
/// reads the shell uses for its waits and for status. Nothing here logs, writes a file, or reads a clock.
public struct JobCoordinator: Sendable {
    public let settings: JobSettings
    /// When the job's coordinator was created.
    public let startNanos: UInt64
    /// When the job started (every worker joined): the origin of `elapsed` fields and of the summary's wall
    /// time, so that waiting for workers is not counted as training time.
    public private(set) var jobStartedAtNanos: UInt64? = nil
    /// The origin of elapsed times: the job's start, or the coordinator's creation before it.
    public var elapsedOrigin: UInt64 { jobStartedAtNanos ?? startNanos }
    public private(set) var membership: Membership
    public private(set) var barrier: BSPBarrier
    public let ssp: SSPBound
    public private(set) var schedule: CheckpointSchedule
    /// BSP: steps complete and released to pullers. Lags `barrier.completedSteps` only while a checkpoint of the
    /// boundary is being snapshotted.
    public private(set) var releasedSteps: UInt64
    public private(set) var jobStarted = false
    /// Workers that left saying they finished their share; a job that ends with none did not do its work.
    public private(set) var workersFinished = 0
    public private(set) var jobFinished = false
    public private(set) var stopping = false
    /// Set once `finishJob` was issued.
    public private(set) var finalized = false
    public private(set) var finishedAtNanos: UInt64? = nil
    /// Waits that could not be answered at once (pulls, leaves), for status.
    public private(set) var barrierWaits: UInt64 = 0
    /// The most recent epoch evaluation.
    public private(set) var lastEpoch: EpochRecord? = nil
    /// SSP/async: the evaluation of the final weights, after every worker's last push (`EpochRecord.finalWeights`).
    public private(set) var finalEvaluation: EpochRecord? = nil
    /// The test accuracy the job reports: on the final weights when a worker evaluated them, else the last
    /// epoch's.
    public var reportedTestAccuracy: Double? { (finalEvaluation ?? lastEpoch)?.testAccuracy }
    /// Notable events (deaths), newest last, for status.
    public private(set) var events: [String] = []
    /// SSP/async pushes dropped or scaled by the stale-gradient bound.
    public private(set) var staleDropped: UInt64 = 0
    public private(set) var staleScaled: UInt64 = 0
    /// Restored from a checkpoint: the job waits until every worker named in it rejoined.
    public private(set) var awaitingRestoredWorkers = false
    /// The servers that joined with `--join` (index 1, 2, ...), in registration order.
    public private(set) var joinedServers: [RegisteredServer] = []
    /// Training samples the workers reported as processed (the sum over every recorded step): the summary's
    /// samples/s counts these, not steps x batch x K, which overstates a job that went on without a worker.
    public private(set) var samplesProcessed: UInt64 = 0
    /// Why the job failed, when it ended without doing its work (the shell exits non-zero with it).
    public private(set) var failureReason: String? = nil

    /// Workers that left with an error before their first push (refused for their data, say) while the job had
    /// not started, and when the last of them left. When no worker joined within the worker timeout after that,
    /// the missing ones are given up like deaths (`gaveUpMissingWorkers`): the job starts with the workers it has.
    private var failedBeforeStart: (names: [String], at: UInt64)? = nil
    private var lastJoinNanos: UInt64 = 0
    private var gaveUpMissingWorkers = false
    /// When the last `waiting-for-workers` line was issued (every `waitingLogIntervalNanos` until the job starts).
    private var lastWaitingLog: UInt64? = nil
    /// How often a job that waits for its workers says how many joined.
    public static let waitingLogIntervalNanos: UInt64 = 10_000_000_000
    private var restoredClocks: [String: UInt64]
    private var pendingLosses: [UInt64: [WorkerID: (loss: Double, samples: UInt64)]] = [:]
    /// The last step a step record was issued for; steps are recorded in order, so a report for it or an earlier
    /// step comes too late (e.g. a worker that was declared dead, whose report arrives once its partition heals).
    private var lastRecordedStep: UInt64? = nil
    private var recordedEpochs = Set<UInt32>()
    private var connectionOfRank: [WorkerID: UInt64] = [:]
    /// Step and epoch records issued so far (the next record's sequence number).
    private var recordsIssued: UInt64 = 0

    /// A coordinator for a job that has completed `completedSteps` steps (0, or a restored checkpoint's step);
    /// `restoredClocks` are the SSP/async clocks of the checkpoint's workers.
    public init(
        settings: JobSettings, now: UInt64, completedSteps: UInt64 = 0, restoredClocks: [String: UInt64] = [:]
    ) {
        self.settings = settings
        startNanos = now
        membership = Membership(expectedWorkers: settings.workers, workerTimeoutNanos: settings.workerTimeoutNanos)
        barrier = BSPBarrier(shardCount: settings.shardCount, completedSteps: completedSteps)
        ssp =
            switch settings.mode {
            case .bsp: SSPBound(staleness: 0)
            case .ssp: SSPBound(staleness: settings.staleness)
            case .async: .asynchronous
            }
        schedule = CheckpointSchedule(
            everySteps: settings.checkpointEverySteps, everySeconds: settings.checkpointEverySeconds,
            startNanos: now, completedSteps: completedSteps)
        releasedSteps = completedSteps
        self.restoredClocks = restoredClocks
    }

    // MARK: Queries

    /// The job's phase.
    public var phase: JobPhase {
        if stopping { return .stopping }
        if jobFinished { return .finished }
        return jobStarted ? .running : .waiting
    }

    /// Whether a pull for `step` may be answered now: the job started and the mode's rule allows it (BSP: the
    /// step was released; SSP/async: the slowest live worker is close enough). A finished job answers every pull.
    public func mayPull(step: UInt64) -> Bool {
        if jobFinished { return true }
        guard jobStarted else { return false }
        switch settings.mode {
        case .bsp: return releasedSteps >= step
        case .ssp, .async: return ssp.mayStart(step: step, membership: membership)
        }
    }

    /// Why a pull for `step` is not answered yet, for a timeout message.
    public func describeWait(step: UInt64) -> String {
        if !jobStarted {
            let servers =
                settings.servers > 1 ? ", \(joinedServers.count + 1) of \(settings.servers) servers registered" : ""
            return "the job has not started: \(membership.liveRanks.count) of \(settings.workers) workers joined"
                + servers
        }
        switch settings.mode {
        case .bsp:
            let held = Set((0..<barrier.shardCount).flatMap { barrier.heldRanks(shard: $0) })
            let missing = membership.expectedRanks(atStep: releasedSteps).filter { !held.contains($0) }
            return "step \(step) is not complete (step \(releasedSteps) waits for ranks \(missing))"
        case .ssp, .async:
            return "step \(step) must wait for the slowest worker (min clock \(membership.minLiveClock ?? 0), "
                + "staleness \(settings.staleness))"
        }
    }

    /// Everything the server's waits read: `mayPull`, `hasAppliedAllPushes`, `allServersRegistered` and
    /// `stopping`. An event that leaves it unchanged cannot end a wait, so the server wakes nobody for it; a wait
    /// condition that reads anything else must add it here.
    public var waitInputs: WaitInputs {
        WaitInputs(
            jobStarted: jobStarted, jobFinished: jobFinished, stopping: stopping, releasedSteps: releasedSteps,
            workers: membership.workers.map { WaitInputs.Worker(rank: $0.rank, state: $0.state, clock: $0.clock) },
            joinedServers: joinedServers.count)
    }

    /// BSP: whether every step `rank` pushed has been applied, so its leave cannot lose a gradient.
    public func hasAppliedAllPushes(of rank: WorkerID) -> Bool {
        jobFinished || releasedSteps >= (membership.worker(rank: rank)?.clock ?? 0)
    }

    /// The step a checkpoint taken now records: BSP the barrier's completed steps; SSP/async the slowest live
    /// worker's clock (the largest clock once nobody is live).
    public var checkpointStep: UInt64 {
        switch settings.mode {
        case .bsp: barrier.completedSteps
        case .ssp, .async: membership.minLiveClock ?? membership.maxClock
        }
    }

    /// Steps the job has done: BSP the released steps, otherwise the largest clock.
    public var stepsDone: UInt64 {
        settings.mode == .bsp ? releasedSteps : membership.maxClock
    }

    /// Scale-out: the same job rolled back to a checkpoint after `completedSteps` steps (a joined server restarted):
    /// a fresh coordinator at that step with the checkpoint's clocks, keeping the registered servers. The caller
    /// then gives the checkpoint's ranks back with `onRestored`, as after a restart.
    public func rolledBack(completedSteps: UInt64, restoredClocks: [String: UInt64], now: UInt64) -> JobCoordinator {
        var fresh = JobCoordinator(
            settings: settings, now: now, completedSteps: completedSteps, restoredClocks: restoredClocks)
        fresh.joinedServers = joinedServers
        return fresh
    }

    /// Every worker's clock and rank by name, for a checkpoint's manifest.
    public var workerClocksAndRanks: (clocks: [String: UInt64], ranks: [String: Int]) {
        var clocks: [String: UInt64] = [:]
        var ranks: [String: Int] = [:]
        for worker in membership.workers {
            clocks[worker.name] = worker.clock
            ranks[worker.name] = worker.rank
        }
        return (clocks, ranks)
    }

    // MARK: Membership

    /// A worker's hello: its rank and start step, or a refusal.
    ///
    /// The join rule: in BSP a worker (new or rejoining) starts at the step being collected when no shard has
    /// applied (or begun to apply) any of it, and the barrier waits for its push there: what its name pushed for
    /// that step before is forgotten, because the new incarnation computes the same gradient again from the same
    /// weights and data slice. So a worker killed and restarted before its timeout, even all of them at once with
    /// a straggler that had not pushed, redoes the step and the run stays exact. When some shard has already
    /// applied that step, the worker starts at the first step whose barrier has not started, so it never pushes
    /// to a step applied without it. In SSP/async it resumes at the
    /// clock its name reached (before a server restart: the checkpoint's clock), a new name at 0. A rejoin closes
    /// the connection of the name's previous incarnation and, in BSP, may complete a step that waited for it.
    ///
    /// A name whose worker is live, whose connection is still open (`previousConnectionHungUp` false, and not
    /// reported by `onConnectionClosed`) and that was heard from within a third of the worker timeout is in use:
    /// the hello is refused (`nameInUse`) instead of stealing the rank from a worker that is alive. A restarted
    /// worker whose old connection closed, or whose old connection went silent, takes its rank back as before.
    public mutating func onJoin(
        name: String, connection: UInt64, now: UInt64, previousConnectionHungUp: Bool = false
    ) -> (Result<JoinAccepted, JoinRefusal>, [JobDirective]) {
        if jobFinished { return (.failure(JoinRefusal(kind: .jobFinished, reason: "the job has finished")), []) }
        if let existing = membership.worker(named: name), existing.state == .live,
            let previous = connectionOfRank[existing.rank], previous != connection, !previousConnectionHungUp
        {
            let silence = now >= existing.lastSeen ? now - existing.lastSeen : 0
            if silence < settings.workerTimeoutNanos / 3 {
                let reason =
                    "a worker named '\(name)' is already connected and alive (rank \(existing.rank), heard from "
                    + "\(silence / 1_000_000) ms ago); give every worker its own --name"
                return (
                    .failure(JoinRefusal(kind: .nameInUse, reason: reason)),
                    [.log(LogRecord(.warning, "duplicate-name", [("name", name), ("rank", "\(existing.rank)")]))]
                )
            }
        }
        // BSP: the step being collected while no shard has applied any of it (a rejoining name's earlier pushes
        // for it are forgotten below and pushed again), otherwise the first step whose barrier has not started.
        let openStep = barrier.completedSteps
        let joinsOpenStep = settings.mode == .bsp && barrier.isOpen(step: openStep)
        let activeFrom: UInt64 =
            settings.mode == .bsp
            ? (joinsOpenStep ? openStep : max(releasedSteps, barrier.firstUnstartedStep))
            : membership.worker(named: name)?.clock ?? restoredClocks[name] ?? 0
        let fillsVacancy =
            membership.worker(named: name) == nil && membership.workers.contains { $0.state == .vacant }
        let (result, membershipDirectives) = membership.join(name: name, now: now, activeFromStep: activeFrom)
        switch result {
        case .rejected(let reason):
            return (.failure(JoinRefusal(kind: .jobFull, reason: reason)), [])
        case .joined(let rank, let rejoined):
            if joinsOpenStep { barrier.forget(rank: rank, step: openStep) }
            var directives: [JobDirective] = []
            if membershipDirectives.contains(where: {
                if case .closeReplacedConnection = $0 { return true } else { return false }
            }), let replaced = connectionOfRank[rank], replaced != connection {
                directives.append(
                    .log(
                        LogRecord(
                            .info, "replaced-connection",
                            [("name", name), ("rank", "\(rank)"), ("old_id", "\(replaced)")])))
                directives.append(.closeConnection(replaced))
            }
            connectionOfRank[rank] = connection
            lastJoinNanos = now
            directives += startJobIfReady(now: now)
            directives.append(
                .log(
                    LogRecord(
                        .info, "worker-joined",
                        [
                            ("name", name), ("rank", "\(rank)"), ("rejoined", "\(rejoined)"),
                            ("start_step", "\(activeFrom)"),
                            // "1/2" while the job waits for its workers: how many of K have joined.
                            ("joined", "\(membership.liveRanks.count)/\(settings.workers)"),
                        ]
                    )))
            if settings.mode == .bsp, rejoined || fillsVacancy {
                directives += barrierDirectives(barrier.onMembershipChange(membership: membership), now: now)
            }
            return (.success(JoinAccepted(rank: rank, startStep: activeFrom, rejoined: rejoined)), directives)
        }
    }

    // MARK: Servers

    /// Whether all M servers (the coordinator's own included) have registered.
    public var allServersRegistered: Bool { joinedServers.count + 1 >= settings.servers }

    /// The placement once every server registered: the coordinator (index 0, `settings.shardCount` shards, at
    /// `coordinatorAddress`) first, then the joined servers in registration order.
    public func placement(coordinatorAddress: String) -> [RegisteredServer] {
        [RegisteredServer(address: coordinatorAddress, shards: settings.shardCount)] + joinedServers
    }

    /// A joined server's `serverJoin`: its index, or a refusal when the job finished or all M servers registered.
    ///
    /// An address that registered before gets its index back (a restarted server keeps its shards); its shard
    /// count must be the one it registered with. The last server to register may start the job.
    public mutating func onServerJoin(
        address: String, shards: Int, now: UInt64
    ) -> (Result<ServerJoinAccepted, JoinRefusal>, [JobDirective]) {
        if jobFinished { return (.failure(JoinRefusal(kind: .jobFinished, reason: "the job has finished")), []) }
        if let known = joinedServers.firstIndex(where: { $0.address == address }) {
            guard joinedServers[known].shards == shards else {
                let reason =
                    "server \(address) registered with \(joinedServers[known].shards) shards, now \(shards)"
                return (.failure(JoinRefusal(kind: .jobFull, reason: reason)), [])
            }
            let log = LogRecord(
                .info, "server-rejoined", [("address", address), ("index", "\(known + 1)"), ("shards", "\(shards)")])
            return (.success(ServerJoinAccepted(index: known + 1, rejoined: true)), [.log(log)])
        }
        guard !allServersRegistered else {
            let reason = "all \(settings.servers) servers are registered (--servers \(settings.servers))"
            return (.failure(JoinRefusal(kind: .jobFull, reason: reason)), [])
        }
        joinedServers.append(RegisteredServer(address: address, shards: shards))
        var directives: [JobDirective] = [
            .log(
                LogRecord(
                    .info, "server-joined",
                    [
                        ("address", address), ("index", "\(joinedServers.count)"), ("shards", "\(shards)"),
                        ("registered", "\(joinedServers.count + 1)/\(settings.servers)"),
                    ]))
        ]
        directives += startJobIfReady(now: now)
        return (.success(ServerJoinAccepted(index: joinedServers.count, rejoined: false)), directives)
    }

    /// After a restore: gives every worker named in the checkpoint its old rank back (its slice of the data order
    /// stays with its name) and marks it not yet connected; the job starts once all of them rejoined. Ranks that
    /// are not exactly `0..<n` (n <= K) are left to join order.
    public mutating func onRestored(ranks: [String: Int], now: UInt64) -> [JobDirective] {
        let ordered = ranks.sorted { $0.value < $1.value }
        guard !ordered.isEmpty, ordered.map(\.value) == Array(0..<ordered.count), ordered.count <= settings.workers
        else {
            return ranks.isEmpty ? [] : [.log(LogRecord(.warning, "restored-ranks-ignored", [("ranks", "\(ranks)")]))]
        }
        for (name, _) in ordered {
            if case .joined(let rank, _) = membership.onJoin(name: name, now: now, activeFromStep: releasedSteps) {
                _ = membership.declareDead(rank: rank, reason: "restored from a checkpoint; not rejoined yet")
            }
        }
        awaitingRestoredWorkers = true
        return []
    }

    /// A worker's connection closed: a later hello with its name is a restart, not a duplicate.
    public mutating func onConnectionClosed(connection: UInt64) {
        for (rank, id) in connectionOfRank where id == connection {
            connectionOfRank[rank] = nil
        }
    }

    /// The connection that joined as `name`, if its worker is known and the connection still open.
    public func connection(ofName name: String) -> UInt64? {
        membership.worker(named: name).flatMap { connectionOfRank[$0.rank] }
    }

    /// A heartbeat (with the worker's clock when it sent one): refreshes liveness.
    public mutating func onHeartbeat(rank: WorkerID, clock: UInt64?, now: UInt64) {
        if let clock {
            membership.onHeartbeat(rank: rank, clock: max(clock, membership.worker(rank: rank)?.clock ?? 0), now: now)
        } else {
            refreshLiveness(rank: rank, now: now)
        }
    }

    /// A worker blocked in a wait on us is alive: refreshes its liveness without changing its clock.
    public mutating func refreshLiveness(rank: WorkerID, now: UInt64) {
        if let clock = membership.worker(rank: rank)?.clock {
            membership.onClock(rank: rank, clock: clock, now: now)
        }
    }

    /// Counts a wait that could not be answered at once (status).
    public mutating func onWaitStarted() {
        barrierWaits += 1
    }

    /// The periodic check: declares silent workers dead, lets the barrier proceed without them, ends a job whose
    /// workers are all gone after some finished, and (SSP/async) takes a checkpoint when one is due.
    public mutating func onTick(now: UInt64) -> [JobDirective] {
        var directives: [JobDirective] = []
        let deaths = membership.onTick(now: now)
        if !deaths.isEmpty {
            for case .declareDead(let rank, let name, let reason) in deaths {
                directives.append(
                    .log(LogRecord(.warning, "worker-dead", [("name", name), ("rank", "\(rank)"), ("reason", reason)])))
                events.append("worker \(name) (rank \(rank)) declared dead: \(reason)")
            }
            directives += flushLosses(now: now)
            if settings.mode == .bsp {
                directives += barrierDirectives(barrier.onMembershipChange(membership: membership), now: now)
            }
        }
        directives += giveUpMissingWorkers(now: now)
        directives += waitingLine(now: now)
        directives += finishIfDone(now: now)
        if settings.mode != .bsp, jobStarted, !jobFinished, schedule.isDue(step: checkpointStep, now: now) {
            directives.append(.takeCheckpoint(step: checkpointStep))
        }
        return directives
    }

    /// A worker finished (`finished`) or gave up: it is no longer expected; the barrier may proceed and the job may
    /// end.
    public mutating func onLeave(rank: WorkerID, finished: Bool, now: UInt64) -> [JobDirective] {
        var directives: [JobDirective] = [
            .log(LogRecord(.info, "worker-left", [("rank", "\(rank)"), ("reason", finished ? "finished" : "error")]))
        ]
        if finished, membership.worker(rank: rank)?.state == .live { workersFinished += 1 }
        // A worker that fails before its first push (its data was refused) must not keep a rank from the worker
        // that replaces it: the rank becomes vacant and the next new name takes it.
        if !finished, let name = membership.worker(rank: rank)?.name,
            membership.vacate(rank: rank, reason: "left with an error before its first push")
        {
            directives.append(.log(LogRecord(.warning, "rank-released", [("name", name), ("rank", "\(rank)")])))
            failedBeforeStart = ((failedBeforeStart?.names ?? []) + [name], now)
            gaveUpMissingWorkers = false
            if jobStarted, membership.workers.allSatisfy({ $0.pushes == 0 }) {
                // Nobody has pushed: the job waits for all K workers again rather than start short of one.
                jobStarted = false
            }
        } else {
            _ = membership.onLeave(rank: rank, now: now)
        }
        directives += flushLosses(now: now)
        if settings.mode == .bsp {
            directives += barrierDirectives(barrier.onMembershipChange(membership: membership), now: now)
        }
        directives += finishIfDone(now: now)
        return directives
    }

    /// The server is shutting down: every wait ends.
    public mutating func onStop() {
        stopping = true
    }

    // MARK: Steps

    /// BSP: `rank` pushed its gradient for `step` to `shard` (the shell already holds it in the shard).
    public mutating func onBSPPush(
        shard: Int, step: UInt64, rank: WorkerID, now: UInt64
    ) -> (PushVerdict, [JobDirective]) {
        switch barrier.onPush(shard: shard, step: step, rank: rank, membership: membership) {
        case .reject(let reason):
            return (.rejected(reason), [])
        case .hold:
            membership.onPush(rank: rank, now: now)
            return (.accepted, [])
        case .apply(let shard, let step, let ranks):
            membership.onPush(rank: rank, now: now)
            return (.accepted, [.apply(shard: shard, step: step, ranks: ranks)])
        }
    }

    /// SSP/async: `rank` pushed and the shard applied (or dropped) it; counts it and the stale-gradient outcome.
    public mutating func onAsyncPush(rank: WorkerID?, staleDropped dropped: Bool, staleScaled scaled: Bool, now: UInt64)
    {
        if let rank { membership.onPush(rank: rank, now: now) }
        if dropped { staleDropped += 1 }
        if scaled { staleScaled += 1 }
    }

    /// BSP: `shard` applied `step`. When that completes the step on every shard, either a checkpoint is due
    /// (`takeCheckpoint`, and the release waits for `onCheckpointTaken`) or the next step is released now.
    public mutating func onApplied(shard: Int, step: UInt64, now: UInt64) -> [JobDirective] {
        barrierDirectives(barrier.onApplied(shard: shard, step: step), now: now)
    }

    /// The shell snapshotted the model for a checkpoint recording `step` (or could not, with nothing registered):
    /// restarts the schedule's intervals and, in BSP, releases the boundary the checkpoint was waiting at.
    public mutating func onCheckpointTaken(step: UInt64, now: UInt64) {
        schedule.onCheckpointTaken(step: step, now: now)
        if settings.mode == .bsp, barrier.completedSteps >= step {
            releasedSteps = max(releasedSteps, step)
        }
    }

    /// An operator asked for a checkpoint: BSP takes it at the next step boundary; SSP/async at the next tick.
    public mutating func onCheckpointRequested(now: UInt64) {
        schedule.request(now: now)
    }

    // MARK: Losses and epochs

    /// A worker completed `clock` steps; the loss it reports is that of step `clock - 1`. Returns the job's phase,
    /// the slowest live worker's clock and the step records that became complete.
    public mutating func onClock(
        rank: WorkerID, clock: UInt64, loss: Double, samples: UInt64, now: UInt64
    ) -> (phase: JobPhase, minClock: UInt64, directives: [JobDirective]) {
        let live = membership.onHeartbeat(rank: rank, clock: clock, now: now)
        // Only a live worker's report of a step not yet recorded counts: a dead worker's late report (it comes
        // back before it rejoins) would otherwise sit in front of every later step, or record its step again.
        if clock > 0, live, lastRecordedStep.map({ clock - 1 > $0 }) ?? true {
            pendingLosses[clock - 1, default: [:]][rank] = (loss, samples)
        }
        let directives = flushLosses(now: now)
        return (phase, membership.minLiveClock ?? clock, directives)
    }

    /// An epoch's evaluation: every worker reports each epoch; the first report is the record.
    ///
    /// `epoch.epoch` is the wire's index of the epoch just completed, from 0; the record, the log line, the
    /// metrics file and the status number epochs from 1, as the worker's console does ("epoch 1/10").
    public mutating func onEpoch(_ epoch: EpochRecord, rank: WorkerID? = nil, now: UInt64) -> [JobDirective] {
        if epoch.epoch == EpochRecord.finalWeights {
            // The evaluation of the final weights: what the job's summary reports (the first such report).
            guard finalEvaluation == nil else { return [] }
            finalEvaluation = epoch
            return [
                .log(
                    LogRecord(
                        .info, "final-evaluation",
                        [
                            ("test_loss", Self.fourDecimals(epoch.testLoss)),
                            ("test_accuracy", Self.fourDecimals(epoch.testAccuracy)),
                        ]))
            ]
        }
        guard recordedEpochs.insert(epoch.epoch).inserted else { return [] }
        var record = EpochRecord(
            epoch: epoch.epoch + 1, testLoss: epoch.testLoss, testAccuracy: epoch.testAccuracy, samples: epoch.samples)
        record.weightsAtStep = rank.flatMap { membership.worker(rank: $0)?.clock }
        record.minClock = membership.minLiveClock
        record.maxClock = membership.maxClock
        record.elapsedNanos = now &- elapsedOrigin
        record.sequence = recordsIssued
        recordsIssued += 1
        lastEpoch = record
        return [
            .log(
                LogRecord(
                    .info, "epoch",
                    [
                        ("epoch", "\(record.epoch)"), ("test_loss", Self.fourDecimals(epoch.testLoss)),
                        ("test_accuracy", Self.fourDecimals(epoch.testAccuracy)),
                    ])),
            .recordEpoch(record),
        ]
    }

    // MARK: Internals

    /// Whether the job may start: every rank joined (or the missing ones were given up) and, after a restore, every
    /// worker of the checkpoint is back.
    private var mayStartJob: Bool {
        guard membership.allJoined || gaveUpMissingWorkers, allServersRegistered, !membership.liveRanks.isEmpty
        else { return false }
        return !awaitingRestoredWorkers || membership.liveRanks.count == settings.workers
    }

    /// Starts the job once every worker and every server is there.
    private mutating func startJobIfReady(now: UInt64) -> [JobDirective] {
        guard !jobStarted, mayStartJob else { return [] }
        jobStarted = true
        jobStartedAtNanos = now
        var fields = [("workers", "\(settings.workers)"), ("mode", settings.mode.rawValue)]
        if settings.servers > 1 { fields.append(("servers", "\(settings.servers)")) }
        return [.log(LogRecord(.info, "job-started", fields))]
    }

    /// While the job waits for its workers (or servers): every 10 s, how many joined, so a job whose second worker
    /// never comes is not silent (`waiting-for-workers joined=1/2 waited_s=20`).
    private mutating func waitingLine(now: UInt64) -> [JobDirective] {
        guard !jobStarted, !jobFinished, !stopping,
            now &- (lastWaitingLog ?? startNanos) >= Self.waitingLogIntervalNanos
        else { return [] }
        lastWaitingLog = now
        var fields = [
            ("joined", "\(membership.liveRanks.count)/\(settings.workers)"),
            ("waited_s", "\((now &- startNanos) / 1_000_000_000)"),
        ]
        if settings.servers > 1 { fields.append(("servers", "\(joinedServers.count + 1)/\(settings.servers)")) }
        return [.log(LogRecord(.info, "waiting-for-workers", fields))]
    }

    /// A job that has not started, some of whose workers left with an error before their first push, and that no
    /// worker joined for the worker timeout since: gives up the missing workers as for deaths. The job starts with
    /// the workers it has or, with none, fails with the reason.
    private mutating func giveUpMissingWorkers(now: UInt64) -> [JobDirective] {
        guard !jobStarted, !jobFinished, !gaveUpMissingWorkers, let failed = failedBeforeStart,
            now &- max(failed.at, lastJoinNanos) > settings.workerTimeoutNanos
        else { return [] }
        gaveUpMissingWorkers = true
        let names = failed.names.map { "'\($0)'" }.joined(separator: ", ")
        let live = membership.liveRanks.count
        let reason =
            "\(names) left with an error before the first step and no worker joined within the worker timeout "
            + "(\(settings.workerTimeoutNanos / 1_000_000) ms)"
        events.append(reason + "; the job goes on with \(live) of \(settings.workers) workers")
        var directives: [JobDirective] = [
            .log(
                LogRecord(
                    .warning, "workers-given-up",
                    [
                        ("failed", failed.names.joined(separator: ",")), ("joined", "\(live)/\(settings.workers)"),
                        ("reason", reason),
                    ]))
        ]
        if live == 0, membership.workers.allSatisfy({ $0.pushes == 0 }), workersFinished == 0 {
            failureReason = "no worker could start: " + reason
            jobFinished = true
            return directives
        }
        directives += startJobIfReady(now: now)
        if settings.mode == .bsp {
            directives += barrierDirectives(barrier.onMembershipChange(membership: membership), now: now)
        }
        return directives
    }

    /// Turns the barrier's directives into the shell's: applies stay applies; a completed step checkpoints or
    /// releases.
    private mutating func barrierDirectives(_ directives: [BarrierDirective], now: UInt64) -> [JobDirective] {
        var result: [JobDirective] = []
        for directive in directives {
            switch directive {
            case .apply(let shard, let step, let ranks):
                result.append(.apply(shard: shard, step: step, ranks: ranks))
            case .stepCompleted(let step):
                if schedule.onStepCompleted(step: step + 1, now: now) {
                    result.append(.takeCheckpoint(step: step + 1))
                } else {
                    releasedSteps = max(releasedSteps, step + 1)
                }
            }
        }
        return result
    }

    /// Ends the job once no worker is live and at least one finished (the others died): issues `finishJob` once.
    private mutating func finishIfDone(now: UInt64) -> [JobDirective] {
        if !jobFinished {
            let workers = membership.workers
            if jobStarted, !workers.contains(where: { $0.state == .live }),
                workers.contains(where: { $0.state == .left })
            {
                jobFinished = true
            }
        }
        guard jobFinished, !finalized else { return [] }
        finalized = true
        finishedAtNanos = now
        return [.finishJob]
    }

    /// Records every step whose expected workers have all reported, in step order, averaging in rank order.
    private mutating func flushLosses(now: UInt64) -> [JobDirective] {
        var records: [JobDirective] = []
        for step in pendingLosses.keys.sorted() {
            guard let reports = pendingLosses[step] else { continue }
            let expected = membership.liveRanks.filter { membership.isExpected(rank: $0, atStep: step) }
            guard expected.allSatisfy({ reports[$0] != nil }) else { break }
            let ranks = reports.keys.sorted()
            var sum = 0.0
            var samples: UInt64 = 0
            for rank in ranks {
                sum += reports[rank]!.loss
                samples += reports[rank]!.samples
            }
            pendingLosses[step] = nil
            lastRecordedStep = step
            samplesProcessed &+= samples
            let workers = membership.workers
            recordsIssued += 1
            records.append(
                .recordStep(
                    StepRecord(
                        sequence: recordsIssued - 1, step: step, loss: ranks.isEmpty ? .nan : sum / Double(ranks.count),
                        workers: ranks.count,
                        samples: samples, minClock: membership.minLiveClock ?? 0, maxClock: membership.maxClock,
                        clocks: Dictionary(workers.map { ($0.name, $0.clock) }, uniquingKeysWith: { $1 }),
                        liveClocks: Dictionary(
                            workers.filter { $0.state == .live }.map { ($0.name, $0.clock) }, uniquingKeysWith: { $1 }),
                        staleDropped: staleDropped, staleScaled: staleScaled, elapsedNanos: now &- elapsedOrigin)))
        }
        return records
    }

    /// `x` with four decimals (what `String(format: "%.4f")` prints), without Foundation.
    static func fourDecimals(_ x: Double) -> String {
        guard x.isFinite else { return "\(x)" }
        let scaled = (abs(x) * 10_000).rounded()
        guard scaled < 9e15 else { return "\(x)" }
        let whole = Int(scaled) / 10_000
        let fraction = Int(scaled) % 10_000
        let digits = String(fraction)
        let sign = x < 0 && scaled > 0 ? "-" : ""
        return "\(sign)\(whole).\(String(repeating: "0", count: 4 - digits.count))\(digits)"
    }
}

/// What a waiting server thread can see of the job (`JobCoordinator.waitInputs`).
public struct WaitInputs: Equatable, Sendable {
    public struct Worker: Equatable, Sendable {
        let rank: WorkerID
        let state: WorkerState
        let clock: UInt64
    }
    let jobStarted: Bool
    let jobFinished: Bool
    let stopping: Bool
    let releasedSteps: UInt64
    let workers: [Worker]
    let joinedServers: Int
}
