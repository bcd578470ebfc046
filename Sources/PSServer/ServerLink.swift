import Foundation
import PSCoordinator
import PSMath
import PSPosix
import PSWire

// The server link: what a joined server and the coordinator say to each other over `serverCall` frames once
// the placement is complete (proto-docs/protocol.md, "serverCall"). The joined server calls; the coordinator
// answers. Three calls: fetch the model part, sync (a long poll for the coordinator's decisions), and hand in a
// snapshot part.

/// A joined server's call, the `serverCall` header.
enum LinkRequest: Codable, Equatable {
    /// Asks for this server's part of the model: its shards' weights, optimizer state and versions, and the rules
    /// its shards follow. Answered `.model` (floats: weights, then each optimizer slot) or `.notReady`.
    case fetchModel(server: Int)
    /// Asks for the coordinator's decisions after sequence number `after`; answered `.entries` at once when there
    /// are some, otherwise after at most about a second (the call is also the server's heartbeat).
    ///
    /// `stuck` names a released BSP step this server has waited on for `ModelPart.stuckSeconds`: a gradient of
    /// it never arrived (its worker's host crashed with it unsent), so the coordinator rolls the job back.
    case sync(server: Int, after: UInt64, stats: LinkStats, instance: UInt64, stuck: UInt64? = nil)
    /// Hands in this server's part of the snapshot asked for by entry `gather` (floats: weights, then each
    /// optimizer slot, for the part's elements).
    case part(server: Int, gather: UInt64, optimizerStep: UInt64, versions: [UInt64])
}

/// A joined server's counters, reported with every sync (for the coordinator's status).
struct LinkStats: Codable, Equatable {
    var bytes: Int
    var pushes: UInt64
    var pulls: UInt64
}

/// The coordinator's answer, the `serverCallReply` header.
enum LinkReply: Codable, Equatable {
    case model(part: ModelPart)
    /// No model is registered yet (an external model waits for its first worker): ask again.
    case notReady(reason: String)
    case entries(entries: [LinkEntry])
    case accepted
    /// This coordinator does not know the caller's model part (it restarted): register again.
    case reregister(reason: String)
    /// The call was refused; the reason is a sentence.
    case refused(reason: String)
}

/// What a joined server needs to serve its shards: the job's tensors and placement, and the rules its shards'
/// updates follow, which are the coordinator's flags (so every server applies the same arithmetic).
struct ModelPart: Codable, Equatable {
    var tensors: [TensorShape]
    var placement: ServerPlacement
    var optimizer: OptimizerConfig
    var mode: ConsistencyMode
    var maxGradientStaleness: UInt64?
    var stalePolicy: StalePolicy
    var allowNonFinite: Bool
    /// BSP: the steps every shard has applied (the restored checkpoint's step, or 0).
    var completedSteps: UInt64
    /// The coordinator's last decision so far: the joined server syncs after it.
    var sequence: UInt64
    /// The coordinator process that cut the part (random per process): a sync naming another one is told to
    /// register again.
    var instance: UInt64
    var optimizerStep: UInt64
    /// One version per shard of this server.
    var versions: [UInt64]
    /// K: the gradient slots each shard keeps.
    var workers: Int
    /// SSP: how many clocks a worker may run ahead of the slowest live one (`--staleness`).
    var staleness: UInt64
    /// BSP: how long a released step may wait for a gradient before the server reports it stuck.
    var stuckSeconds: Double
    /// The live workers when the part was cut.
    var liveRanks: [Int]
}

/// One decision of the coordinator, numbered so that a server applies them in order exactly once.
struct LinkEntry: Codable, Equatable {
    enum Kind: String, Codable {
        /// BSP: apply `step` on every shard with the mean of exactly `ranks`' gradients.
        case release
        /// Hand in a snapshot part (`gather` is this entry's sequence): BSP after applying `step` steps and
        /// before the next; SSP/async at once, under the shard locks.
        case snapshot
        /// The job is over: exit with `exitCode`.
        case finish
        /// SSP: the live workers are now `ranks` (a death, a leave, a join); the staleness bound waits only for them.
        case membership
        /// The job rolled back to the checkpoint after `step` steps (a joined server restarted): drop the model
        /// and every worker connection, fetch the model part again, then sync on.
        case rollback
    }

    var sequence: UInt64
    var kind: Kind
    var step: UInt64 = 0
    var ranks: [Int] = []
    var exitCode: Int32 = 0
    var reason: String = ""
}

/// The floats of a model part or snapshot part on the link: the weights, then each optimizer slot, all over the
/// same elements.
enum PartFloats {
    static func join(weights: some Collection<Float>, slots: [some Collection<Float>]) -> [Float] {
        var floats = Array(weights)
        for slot in slots { floats += slot }
        return floats
    }

    /// The weights and the `slotCount` slots, or nil when the floats do not split into that many equal runs.
    static func split(_ floats: [Float], slotCount: Int) -> (weights: ArraySlice<Float>, slots: [ArraySlice<Float>])? {
        let n = floats.count / (1 + slotCount)
        guard n * (1 + slotCount) == floats.count else { return nil }
        return (floats[0..<n], (0..<slotCount).map { floats[(n * ($0 + 1))..<(n * ($0 + 2))] })
    }
}

extension ServerPlacement {
    /// The placement `StorePlacement` of server `index`.
    func storePlacement(ofServer index: Int) -> StorePlacement {
        StorePlacement(totalShards: totalShards, owned: shards(ofServer: index))
    }
}

/// JSON for link headers: sorted keys, so equal headers are equal bytes.
enum LinkCoding {
    static func encode<T: Encodable>(_ value: T) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        return (try? encoder.encode(value)).flatMap { String(data: $0, encoding: .utf8) } ?? "{}"
    }

    static func decode<T: Decodable>(_ type: T.Type, _ json: String) -> T? {
        try? JSONDecoder().decode(type, from: Data(json.utf8))
    }
}

// MARK: Coordinator side

/// The coordinator's end of every server link: the numbered decisions joined servers fetch, when each server was
/// last heard from, and the snapshots being gathered from them.
final class ServerLinks: Sendable {
    /// A snapshot being gathered: the coordinator's own part, and the joined servers' parts as they arrive.
    struct Gather: Sendable {
        var own: ModelSnapshot
        var parts: [Int: PartSnapshot] = [:]
    }

    struct State: Sendable {
        var entries: [LinkEntry] = []
        var nextSequence: UInt64 = 1
        /// Monotonic time each joined server (by index) last called.
        var lastHeard: [Int: UInt64] = [:]
        /// The last sequence number each joined server said it has.
        var acked: [Int: UInt64] = [:]
        /// The last sequence number sent to each joined server.
        var delivered: [Int: UInt64] = [:]
        var gathers: [UInt64: Gather] = [:]
        /// Each joined server's counters, as it last reported them.
        var stats: [Int: LinkStats] = [:]
        var stopping = false

        /// Appends a decision; returns its sequence number.
        mutating func append(_ entry: LinkEntry) -> UInt64 {
            var numbered = entry
            numbered.sequence = nextSequence
            nextSequence += 1
            entries.append(numbered)
            return numbered.sequence
        }
    }

    let state = LockedValue(State())
    /// Joined servers: indices 1..<M.
    let joinedCount: Int
    /// This coordinator process's number (see `ModelPart.instance`).
    let instance = UInt64.random(in: 1...UInt64.max)

    init(servers: Int) {
        joinedCount = servers - 1
    }

    /// The joined servers' indices.
    private var joinedIndices: ClosedRange<Int>? { joinedCount > 0 ? 1...joinedCount : nil }

    /// Whether every joined server has synced past `sequence` (`acked` holds what each said it has).
    private func allAcked(_ sequence: UInt64, _ state: State) -> Bool {
        joinedIndices?.allSatisfy { (state.acked[$0] ?? 0) >= sequence } ?? true
    }

    /// Appends a decision for every joined server; returns its sequence number.
    @discardableResult
    func publish(_ kind: LinkEntry.Kind, step: UInt64 = 0, ranks: [Int] = [], exitCode: Int32 = 0, reason: String = "")
        -> UInt64
    {
        state.withLockAndBroadcast { state in
            state.append(
                LinkEntry(sequence: 0, kind: kind, step: step, ranks: ranks, exitCode: exitCode, reason: reason))
        }
    }

    /// Starts gathering a snapshot: publishes the entry that asks the joined servers for their parts.
    func startGather(own: ModelSnapshot, step: UInt64) -> UInt64 {
        state.withLockAndBroadcast { state in
            let sequence = state.append(LinkEntry(sequence: 0, kind: .snapshot, step: step))
            state.gathers[sequence] = Gather(own: own)
            return sequence
        }
    }

    /// Records a joined server's part; false if nobody gathers `gather` any more.
    func receive(part: PartSnapshot, server: Int, gather: UInt64) -> Bool {
        state.withLockAndBroadcast { state in
            guard state.gathers[gather] != nil else { return false }
            state.gathers[gather]?.parts[server] = part
            return true
        }
    }

    /// Waits (until `deadline`) for every joined server's part of `gather` and returns the whole model's snapshot,
    /// or nil when a part did not come in time or the server stops; the gather is forgotten either way.
    func finishGather(_ gather: UInt64, deadline: UInt64) -> ModelSnapshot? {
        let expected = joinedCount
        let done = state.wait(
            until: deadline, while: { ($0.gathers[gather]?.parts.count ?? expected) < expected && !$0.stopping }
        ) { state, _ -> Gather? in
            defer { state.gathers[gather] = nil }
            guard let gathered = state.gathers[gather], gathered.parts.count >= expected else { return nil }
            return gathered
        }
        guard let done else { return nil }
        return done.own.merging(Array(done.parts.values), ownShards: 0..<(done.own.shardVersions.count))
    }

    /// The entries after `after` for joined server `server`, waiting up to `seconds` for one; marks the server
    /// heard from.
    func entries(after: UInt64, server: Int, seconds: Double) -> [LinkEntry] {
        let now = MonotonicClock.nanoseconds()
        let indices = joinedIndices
        state.withLockAndBroadcast { state in
            state.lastHeard[server] = now
            // What every joined server has seen is never asked for again.
            state.acked[server] = max(state.acked[server] ?? 0, after)
            let seenByAll = indices?.map { state.acked[$0] ?? 0 }.min() ?? 0
            if let first = state.entries.first, first.sequence <= seenByAll {
                state.entries.removeAll { $0.sequence <= seenByAll }
            }
        }
        let deadline = MonotonicClock.deadline(afterSeconds: seconds)
        let found = state.wait(
            until: deadline, while: { state in !state.stopping && (state.entries.last?.sequence ?? 0) <= after }
        ) { state, _ in
            state.entries.filter { $0.sequence > after }
        }
        let end = MonotonicClock.nanoseconds()
        state.withLockAndBroadcast { state in
            state.lastHeard[server] = end
            if let last = found.last?.sequence { state.delivered[server] = max(state.delivered[server] ?? 0, last) }
        }
        return found
    }

    /// Waits (at most `seconds`) until every joined server has been sent the entries up to `sequence`.
    func waitUntilSeen(_ sequence: UInt64, seconds: Double) {
        // Only servers that ever called are waited for (one that never registered will not call).
        state.wait(
            until: MonotonicClock.deadline(afterSeconds: seconds),
            while: { state in state.lastHeard.keys.contains { (state.delivered[$0] ?? 0) < sequence } })
    }

    /// The sequence number of the last decision published (0 before any).
    var lastSequence: UInt64 { state.withLock { $0.nextSequence - 1 } }

    /// Scale-out rollback: forgets every snapshot being gathered and publishes the rollback decision.
    func publishRollback(step: UInt64, reason: String) -> UInt64 {
        state.withLockAndBroadcast { state in
            state.gathers.removeAll()
            return state.append(LinkEntry(sequence: 0, kind: .rollback, step: step, reason: reason))
        }
    }

    /// Waits (until `deadline`) until every joined server has synced past `sequence`, that is, carried it out.
    func waitUntilCarriedOut(_ sequence: UInt64, deadline: UInt64) -> Bool {
        state.wait(until: deadline, while: { !$0.stopping && !allAcked(sequence, $0) }) { state, _ in
            allAcked(sequence, state)
        }
    }

    /// A restarted joined server starts over: what it had seen before does not count.
    func forget(server: Int) {
        state.withLockAndBroadcast { state in
            state.acked[server] = nil
            state.delivered[server] = nil
        }
    }

    /// Records a joined server's counters.
    func report(_ stats: LinkStats, server: Int) {
        state.withLock { $0.stats[server] = stats }
    }

    /// Each joined server's last reported counters.
    var stats: [Int: LinkStats] { state.withLock { $0.stats } }

    /// Marks a joined server heard from (any call).
    func heard(server: Int) {
        let now = MonotonicClock.nanoseconds()
        state.withLock { $0.lastHeard[server] = now }
    }

    /// The joined servers not heard from for `seconds` (a server never heard from counts from `since`).
    func silentServers(seconds: Double, since: UInt64) -> [Int] {
        let now = MonotonicClock.nanoseconds()
        let limit = UInt64(seconds * 1e9)
        let indices = joinedIndices
        return state.withLock { state in
            indices?.filter { index in
                let last = state.lastHeard[index] ?? since
                return now > last && now - last > limit
            } ?? []
        }
    }

    /// Seconds since each joined server was last heard from, by index.
    func heartbeatAges() -> [Int: Double] {
        let now = MonotonicClock.nanoseconds()
        return state.withLock { state in
            state.lastHeard.mapValues { now > $0 ? Double(now - $0) / 1e9 : 0 }
        }
    }

    /// Ends every wait.
    func stop() {
        state.withLockAndBroadcast { $0.stopping = true }
    }
}

// MARK: Joined-server side

/// A joined server's state once it has its model part: the rules its shards follow and, in BSP, which step each
/// of its shards applies next and the releases the coordinator sent.
final class JoinedShards: Sendable {
    struct Steps: Sendable {
        /// The step each owned shard applies next, by position in the owned range.
        var pending: [UInt64]
        /// Released steps not yet applied everywhere: step -> the ranks whose mean it is, and when it came.
        var releases: [UInt64: [Int]] = [:]
        var releasedAt: [UInt64: UInt64] = [:]
        /// SSP: the clock each rank's pushes to this server reached, and the live ranks (from the coordinator).
        var clocks: [Int: UInt64] = [:]
        var live: Set<Int> = []
        var stopping = false

        /// The steps every owned shard has applied.
        var completed: UInt64 { pending.min() ?? 0 }
    }

    let part: ModelPart
    let index: Int
    let steps: LockedValue<Steps>

    init(part: ModelPart, index: Int) {
        self.part = part
        self.index = index
        steps = LockedValue(
            Steps(
                pending: Array(repeating: part.completedSteps, count: part.placement.shards(ofServer: index).count),
                live: Set(part.liveRanks)))
    }

    /// SSP: the live workers changed.
    func membership(_ ranks: [Int]) {
        steps.withLockAndBroadcast { $0.live = Set(ranks) }
    }

    /// SSP: `rank` pushed its step `clock - 1` here; waits (until `deadline`) until every live worker's pushes to
    /// this server reached `clock - staleness`, so that the weights read now hold every update the bound
    /// promises, as the coordinator's own exchange reply does. False on timeout or stop.
    func waitForStaleness(rank: Int, clock: UInt64, deadline: UInt64, peerGone: () -> Bool) -> Bool {
        let staleness = part.staleness
        let needed = clock > staleness ? clock - staleness : 0
        steps.withLockAndBroadcast { $0.clocks[rank] = max($0.clocks[rank] ?? 0, clock) }
        return wait(deadline: deadline, peerGone: peerGone) { steps in
            steps.live.allSatisfy { (steps.clocks[$0] ?? 0) >= needed || $0 == rank }
        }
    }

    var stalenessRule: StalenessRule {
        StalenessRule(maxGradientStaleness: part.maxGradientStaleness, policy: part.stalePolicy)
    }

    /// Records a release and returns the owned positions that may now apply.
    func release(step: UInt64, ranks: [Int]) {
        let now = MonotonicClock.nanoseconds()
        steps.withLockAndBroadcast { steps in
            steps.releases[step] = ranks
            steps.releasedAt[step] = now
        }
    }

    /// The oldest released step some shard still waits on after `ModelPart.stuckSeconds`, if any.
    func stuckStep() -> UInt64? {
        let now = MonotonicClock.nanoseconds()
        let limit = UInt64(max(part.stuckSeconds, 0) * 1e9)
        return steps.withLock { steps in
            let done = steps.completed
            return steps.releasedAt.filter { $0.key >= done && now > $0.value && now - $0.value > limit }.keys.min()
        }
    }

    /// Applies every step of `shard` that is released and whose gradients are all held, in order. Returns
    /// `.refusedNonFinite` when a step's update would make a weight non-finite (nothing of it applied; the step
    /// stays unapplied), otherwise `.applied` or `.missingGradient` for the last attempt.
    @discardableResult
    func applyReady(_ shard: Shard, position: Int) -> MeanOutcome {
        let checksFinite = !part.allowNonFinite
        while true {
            let next: (step: UInt64, ranks: [Int])? = steps.withLock { steps in
                let step = steps.pending[position]
                return steps.releases[step].map { (step, $0) }
            }
            guard let (step, ranks) = next else { return .missingGradient }
            // Fails (nothing applied) while a listed rank's gradient has not arrived, or when another thread
            // applied the step first: its slots no longer hold that step.
            let outcome = shard.state.withLock { $0.applyMean(step: step, ranks: ranks, checksFinite: checksFinite) }
            guard outcome == .applied else { return outcome }
            steps.withLockAndBroadcast { steps in
                steps.pending[position] = step + 1
                let done = steps.completed
                steps.releases = steps.releases.filter { $0.key >= done }
                steps.releasedAt = steps.releasedAt.filter { $0.key >= done }
            }
        }
    }

    /// Waits until every owned shard has applied `count` steps; false on timeout or stop.
    func waitForCompleted(_ count: UInt64, deadline: UInt64, peerGone: () -> Bool) -> Bool {
        wait(deadline: deadline, peerGone: peerGone) { $0.completed >= count }
    }

    /// Waits until `ready` holds; false at `deadline`, on stop, or once `peerGone` (checked every quarter second,
    /// outside the lock) says the waiting request's peer hung up.
    private func wait(deadline: UInt64, peerGone: () -> Bool, until ready: (Steps) -> Bool) -> Bool {
        while true {
            let slice = min(deadline, MonotonicClock.deadline(afterSeconds: 0.25))
            let (done, stopping) = steps.wait(until: slice, while: { !ready($0) && !$0.stopping }) { steps, _ in
                (ready(steps), steps.stopping)
            }
            if done { return true }
            if stopping || MonotonicClock.nanoseconds() >= deadline || peerGone() { return false }
        }
    }

    func stop() {
        steps.withLockAndBroadcast { $0.stopping = true }
    }
}
