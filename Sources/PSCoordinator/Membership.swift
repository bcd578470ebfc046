/// A worker's rank: its index in `0..<expectedWorkers`, fixed for the worker's name for the whole job.
public typealias WorkerID = Int

/// How the shards order the pushes of different workers (see DESIGN.md "Consistency modes").
public enum ConsistencyMode: String, Codable, Sendable, CaseIterable {
    /// Bulk synchronous: a shard applies step t once, with the mean of every expected worker's gradient.
    case bsp
    /// Stale synchronous: pushes apply as they arrive; a worker waits when it is more than S steps ahead.
    case ssp
    /// Asynchronous: pushes apply as they arrive and nobody waits.
    case async
}

/// Where a worker stands in the job.
public enum WorkerState: String, Codable, Sendable {
    /// Connected and sending heartbeats; expected at the barrier from its `activeFromStep` on.
    case live
    /// Missed heartbeats for longer than the timeout (or was declared dead); may rejoin under its name.
    case dead
    /// Said it finished (or stopped) and is no longer expected.
    case left
    /// Left with an error before its first push (for example refused for its data): its rank is free again and
    /// the next new name takes it.
    case vacant
}

/// What the coordinator knows about one worker, for the barrier, the SSP bound and `psctl status`.
public struct WorkerRecord: Sendable, Equatable {
    /// The name the worker gave in its hello (`psworker --name`).
    public let name: String
    /// The rank assigned to that name.
    public let rank: WorkerID
    /// Live, dead or left.
    public var state: WorkerState
    /// Steps this worker has completed, as last reported by a clock or heartbeat message.
    public var clock: UInt64
    /// The time (nanoseconds) of the last message from the worker.
    public var lastSeen: UInt64
    /// The time (nanoseconds) of the worker's latest join or rejoin.
    public var joinedAt: UInt64
    /// The first step at which the barrier expects this worker's pushes (from its latest join).
    public var activeFromStep: UInt64
    /// Pushes counted for this worker (for status).
    public var pushes: UInt64
    /// How many times the name rejoined after its first join.
    public var rejoins: Int
    /// Why the worker is dead or left; nil while live.
    public var stateReason: String?
}

/// What `Membership.onJoin` decided for a hello.
public enum JoinResult: Sendable, Equatable {
    /// The worker has `rank`; `rejoined` is true when its name had joined before.
    case joined(rank: WorkerID, rejoined: Bool)
    /// The worker may not join; the reason is a readable sentence for the reject frame.
    case rejected(String)
}

/// Something the shell must do after a membership event.
public enum MembershipDirective: Sendable, Equatable {
    /// The worker is now dead: log `reason`, close its connection, and tell the barrier (`onMembershipChange`).
    case declareDead(rank: WorkerID, name: String, reason: String)
    /// A name rejoined while its previous connection was still considered live: close that older connection.
    case closeReplacedConnection(rank: WorkerID, name: String)
    /// The worker left; tell the barrier (`onMembershipChange`).
    case workerLeft(rank: WorkerID, name: String)
    /// Every rank has left: the job is finished.
    case allFinished
}

/// The coordinator's membership table: names to ranks, liveness, clocks.
///
/// A pure value type in the style of swift-cluster-membership's `SWIMInstance`: every `on…` method takes the current
/// time in nanoseconds and returns what the shell must do; it reads no clock and does no I/O.
///
/// Ranks `0..<expectedWorkers` are handed out in join order to new names and belong to those names for the whole
/// job, so that each rank's slice of the global data order stays with one worker: a restarted worker with the same
/// name gets its rank back, and a new name cannot take over the rank of a dead worker.
public struct Membership: Sendable {
    /// The number of ranks (K).
    public let expectedWorkers: Int
    /// A live worker silent for strictly longer than this is declared dead by `onTick`.
    public let workerTimeoutNanos: UInt64
    /// Every worker that ever joined, indexed by rank (ranks are assigned in join order).
    public private(set) var workers: [WorkerRecord] = []

    /// Creates an empty table for `expectedWorkers` ranks.
    public init(expectedWorkers: Int, workerTimeoutNanos: UInt64) {
        precondition(expectedWorkers >= 1, "Membership needs at least one worker")
        self.expectedWorkers = expectedWorkers
        self.workerTimeoutNanos = workerTimeoutNanos
    }

    /// Handles a worker's hello; see `join(name:now:activeFromStep:)`, which also returns directives.
    public mutating func onJoin(name: String, now: UInt64, activeFromStep: UInt64) -> JoinResult {
        join(name: name, now: now, activeFromStep: activeFromStep).result
    }

    /// Handles a worker's hello and returns the decision and the directives for the shell.
    ///
    /// A new name gets the next free rank; a name seen before gets its old rank back (`rejoined: true`) whatever its
    /// state, and if its old incarnation was still live the result carries `.closeReplacedConnection`. A new name
    /// when every rank is assigned is rejected: ranks belong to names, so only the owners of dead ranks may come back.
    /// The worker takes part in the barrier from `activeFromStep` (the shell passes the first step whose barrier has
    /// not started) and its clock becomes that step.
    public mutating func join(
        name: String, now: UInt64, activeFromStep: UInt64
    ) -> (result: JoinResult, directives: [MembershipDirective]) {
        if let rank = workers.firstIndex(where: { $0.name == name }) {
            var directives: [MembershipDirective] = []
            if workers[rank].state == .live {
                directives.append(.closeReplacedConnection(rank: rank, name: name))
            }
            workers[rank].state = .live
            workers[rank].stateReason = nil
            workers[rank].clock = activeFromStep
            workers[rank].lastSeen = now
            workers[rank].joinedAt = now
            workers[rank].activeFromStep = activeFromStep
            workers[rank].rejoins += 1
            return (.joined(rank: rank, rejoined: true), directives)
        }
        if let rank = workers.firstIndex(where: { $0.state == .vacant }) {
            workers[rank] = WorkerRecord(
                name: name, rank: rank, state: .live, clock: activeFromStep, lastSeen: now, joinedAt: now,
                activeFromStep: activeFromStep, pushes: 0, rejoins: 0, stateReason: nil)
            return (.joined(rank: rank, rejoined: false), [])
        }
        guard workers.count < expectedWorkers else {
            return (.rejected(jobFullReason()), [])
        }
        let rank = workers.count
        workers.append(
            WorkerRecord(
                name: name, rank: rank, state: .live, clock: activeFromStep, lastSeen: now, joinedAt: now,
                activeFromStep: activeFromStep, pushes: 0, rejoins: 0, stateReason: nil))
        return (.joined(rank: rank, rejoined: false), [])
    }

    private func jobFullReason() -> String {
        let others = workers.filter { $0.state != .live }
        let names = workers.map(\.name).joined(separator: ", ")
        guard !others.isEmpty else {
            return "job is full: \(expectedWorkers) workers already joined (\(names))"
        }
        let rejoinable = others.map { "'\($0.name)' (rank \($0.rank), \($0.state.rawValue))" }
            .joined(separator: ", ")
        return "job is full: all \(expectedWorkers) ranks are assigned (\(names)); a rank belongs to its worker's name "
            + "so the data order stays right, so only a worker with one of these names may rejoin: \(rejoinable)"
    }

    /// Records a heartbeat: refreshes the worker's `lastSeen` and clock. Returns false (and changes nothing) when the
    /// rank is unknown or not live; the shell then tells the sender to rejoin.
    @discardableResult
    public mutating func onHeartbeat(rank: WorkerID, clock: UInt64, now: UInt64) -> Bool {
        onClock(rank: rank, clock: clock, now: now)
    }

    /// Records that the worker completed `clock` steps; also refreshes `lastSeen`. Returns false for a rank that is
    /// unknown or not live.
    @discardableResult
    public mutating func onClock(rank: WorkerID, clock: UInt64, now: UInt64) -> Bool {
        guard isLive(rank) else { return false }
        workers[rank].clock = clock
        workers[rank].lastSeen = max(workers[rank].lastSeen, now)
        return true
    }

    /// Counts a push from the worker and refreshes its `lastSeen`. Returns false for a rank that is unknown or not
    /// live.
    @discardableResult
    public mutating func onPush(rank: WorkerID, now: UInt64) -> Bool {
        guard isLive(rank) else { return false }
        workers[rank].pushes += 1
        workers[rank].lastSeen = max(workers[rank].lastSeen, now)
        return true
    }

    /// The worker finished (or stopped): it is no longer expected. Unknown or already-departed ranks are ignored.
    public mutating func onLeave(rank: WorkerID, now: UInt64) -> [MembershipDirective] {
        guard isLive(rank) else { return [] }
        workers[rank].state = .left
        workers[rank].stateReason = "left"
        workers[rank].lastSeen = max(workers[rank].lastSeen, now)
        var directives: [MembershipDirective] = [.workerLeft(rank: rank, name: workers[rank].name)]
        if finished { directives.append(.allFinished) }
        return directives
    }

    /// Frees the rank of a live worker that never pushed (it left with an error, for example refused for its
    /// data): the record stays for status as `vacant`, and the next new name takes the rank. Returns false (and
    /// changes nothing) for a rank that is not live or that has pushed: its gradients are part of the job.
    @discardableResult
    public mutating func vacate(rank: WorkerID, reason: String) -> Bool {
        guard isLive(rank), workers[rank].pushes == 0 else { return false }
        workers[rank].state = .vacant
        workers[rank].stateReason = reason
        return true
    }

    /// Declares a live worker dead at once (its connection failed, or it reported an error). Ignored for a rank
    /// that is unknown or not live.
    public mutating func declareDead(rank: WorkerID, reason: String) -> [MembershipDirective] {
        guard isLive(rank) else { return [] }
        workers[rank].state = .dead
        workers[rank].stateReason = reason
        return [.declareDead(rank: rank, name: workers[rank].name, reason: reason)]
    }

    /// Declares dead every live worker whose last message is strictly older than the timeout.
    public mutating func onTick(now: UInt64) -> [MembershipDirective] {
        var directives: [MembershipDirective] = []
        for rank in workers.indices where workers[rank].state == .live {
            let silence = now >= workers[rank].lastSeen ? now - workers[rank].lastSeen : 0
            guard silence > workerTimeoutNanos else { continue }
            let reason =
                "no message for \(Self.milliseconds(silence)) (worker timeout \(Self.milliseconds(workerTimeoutNanos)))"
            directives += declareDead(rank: rank, reason: reason)
        }
        return directives
    }

    private static func milliseconds(_ nanos: UInt64) -> String {
        "\(nanos / 1_000_000) ms"
    }

    private func isLive(_ rank: WorkerID) -> Bool {
        workers.indices.contains(rank) && workers[rank].state == .live
    }

    /// The ranks of live workers, ascending.
    public var liveRanks: [WorkerID] {
        workers.filter { $0.state == .live }.map(\.rank)
    }

    /// The smallest clock among live workers, or nil when none is live.
    public var minLiveClock: UInt64? {
        workers.filter { $0.state == .live }.map(\.clock).min()
    }

    /// The largest clock any worker (live or not) has reported; 0 before any.
    public var maxClock: UInt64 {
        workers.map(\.clock).max() ?? 0
    }

    /// True once every rank `0..<expectedWorkers` has joined at least once and none is vacant.
    public var allJoined: Bool {
        workers.count == expectedWorkers && !workers.contains { $0.state == .vacant }
    }

    /// True once every rank has joined and then left.
    public var finished: Bool {
        allJoined && workers.allSatisfy { $0.state == .left }
    }

    /// True when the barrier must wait for `rank`'s push at `step`: the worker is live and active from that step.
    public func isExpected(rank: WorkerID, atStep step: UInt64) -> Bool {
        isLive(rank) && workers[rank].activeFromStep <= step
    }

    /// The ranks the barrier waits for at `step`, ascending.
    public func expectedRanks(atStep step: UInt64) -> [WorkerID] {
        workers.filter { $0.state == .live && $0.activeFromStep <= step }.map(\.rank)
    }

    /// The record of `rank`, or nil when no worker has that rank yet.
    public func worker(rank: WorkerID) -> WorkerRecord? {
        workers.indices.contains(rank) ? workers[rank] : nil
    }

    /// The record of the worker called `name`, or nil.
    public func worker(named name: String) -> WorkerRecord? {
        workers.first { $0.name == name }
    }
}
