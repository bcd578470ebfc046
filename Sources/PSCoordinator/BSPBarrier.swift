/// What the barrier decided for one push.
public enum BarrierDecision: Sendable, Equatable {
    /// Keep the gradient; the shard still waits for other workers.
    case hold
    /// Apply one update to `shard` for `step`: the mean of the gradients of exactly `ranks` (ascending), summed in
    /// that order. Then call `onApplied(shard:step:)`.
    case apply(shard: Int, step: UInt64, ranks: [WorkerID])
    /// Refuse the push; the reason is a readable sentence for the error frame.
    case reject(String)
}

/// Something the shell must do after a barrier event.
public enum BarrierDirective: Sendable, Equatable {
    /// Apply one update to `shard` for `step` with the mean of exactly `ranks` (ascending); then `onApplied`.
    case apply(shard: Int, step: UInt64, ranks: [WorkerID])
    /// Every shard has applied `step`: release the pulls for `step + 1` (after a checkpoint, if one is due).
    case stepCompleted(UInt64)
}

/// The BSP barrier of every shard: which pushes a shard holds and when it applies a step.
///
/// A pure value type: the shell stores the gradients, calls `onPush` for each push, carries out the `.apply`
/// directives (summing the listed ranks' gradients in rank order, so a run is bitwise reproducible whatever the
/// arrival order) and reports back with `onApplied`. Who is expected at a step comes from `Membership`: live
/// workers whose `activeFromStep` is not after it. A step is applied exactly once per shard.
public struct BSPBarrier: Sendable {
    private struct ShardState: Sendable {
        /// The step this shard collects pushes for.
        var pendingStep: UInt64
        /// Ranks whose gradient for `pendingStep` is held, ascending.
        var arrived: [WorkerID] = []
        /// True between the `.apply` for `pendingStep` and the shell's `onApplied`.
        var applying = false
    }

    private var shards: [ShardState]
    /// The number of steps every shard has applied: steps `0..<completedSteps` are done.
    public private(set) var completedSteps: UInt64

    /// Creates a barrier for `shardCount` shards at step 0.
    public init(shardCount: Int) {
        self.init(shardCount: shardCount, completedSteps: 0)
    }

    /// Creates a barrier restored from a checkpoint taken after `completedSteps` steps: every shard waits for
    /// step `completedSteps`.
    public init(shardCount: Int, completedSteps: UInt64) {
        precondition(shardCount >= 1, "BSPBarrier needs at least one shard")
        self.shards = Array(repeating: ShardState(pendingStep: completedSteps), count: shardCount)
        self.completedSteps = completedSteps
    }

    /// The number of shards.
    public var shardCount: Int { shards.count }

    /// The step `shard` collects pushes for (or is applying).
    public func pendingStep(shard: Int) -> UInt64 {
        shards[shard].pendingStep
    }

    /// The ranks whose gradient `shard` holds for its pending step, ascending.
    public func heldRanks(shard: Int) -> [WorkerID] {
        shards[shard].arrived
    }

    /// True once any shard received a push for `step` (or got past it): a worker joining now is expected from
    /// the first step for which this is false.
    public func hasStarted(step: UInt64) -> Bool {
        shards.contains { shard in
            shard.pendingStep > step || (shard.pendingStep == step && (shard.applying || !shard.arrived.isEmpty))
        }
    }

    /// The first step whose barrier has not started: the `activeFromStep` to give a worker joining now.
    public var firstUnstartedStep: UInt64 {
        var step = completedSteps
        while hasStarted(step: step) { step += 1 }
        return step
    }

    /// True while no shard has applied `step` or started applying it, and every shard collects pushes for it:
    /// a worker joining now can still take part in `step` on every shard.
    public func isOpen(step: UInt64) -> Bool {
        shards.allSatisfy { $0.pendingStep == step && !$0.applying }
    }

    /// Forgets the gradients `rank` holds for `step` on every shard that has not started applying it (the rank's
    /// previous incarnation pushed them; its new incarnation, rejoining at `step`, pushes again).
    public mutating func forget(rank: WorkerID, step: UInt64) {
        for shard in shards.indices where shards[shard].pendingStep == step && !shards[shard].applying {
            shards[shard].arrived.removeAll { $0 == rank }
        }
    }

    /// Records that `rank`'s gradient for (`shard`, `step`) arrived.
    ///
    /// Returns `.apply` when every rank expected at `step` has now pushed to this shard, `.hold` when some are
    /// still missing, and `.reject` for a push to an unknown shard, for a step other than the shard's pending one
    /// (already applied, being applied, or in the future), from a rank that is not live or not yet active at that
    /// step, or a second push from the same rank.
    public mutating func onPush(shard: Int, step: UInt64, rank: WorkerID, membership: Membership) -> BarrierDecision {
        guard shards.indices.contains(shard) else {
            return .reject("unknown shard \(shard): the job has \(shards.count) shards")
        }
        let state = shards[shard]
        if step < state.pendingStep || (step == state.pendingStep && state.applying) {
            return .reject(
                "push for step \(step) to shard \(shard) is too late: the shard already applied step \(step)")
        }
        if step > state.pendingStep || state.applying {
            return .reject(
                "push for step \(step) to shard \(shard) is ahead of the barrier: "
                    + "the shard is at step \(state.pendingStep)")
        }
        guard let worker = membership.worker(rank: rank) else {
            return .reject("rank \(rank) has not joined the job")
        }
        guard worker.state == .live else {
            return .reject("rank \(rank) ('\(worker.name)') is \(worker.state.rawValue); rejoin before pushing")
        }
        guard worker.activeFromStep <= step else {
            return .reject(
                "rank \(rank) ('\(worker.name)') takes part from step \(worker.activeFromStep), not step \(step)")
        }
        guard !state.arrived.contains(rank) else {
            return .reject("duplicate push from rank \(rank) for step \(step) to shard \(shard)")
        }
        let insertAt = state.arrived.firstIndex { $0 > rank } ?? state.arrived.endIndex
        shards[shard].arrived.insert(rank, at: insertAt)
        if let ranks = readyRanks(shard: shard, membership: membership) {
            shards[shard].applying = true
            return .apply(shard: shard, step: step, ranks: ranks)
        }
        return .hold
    }

    /// Re-checks every shard after a death, leave or join: returns `.apply` for each shard whose pending step no
    /// longer waits for anyone. Gradients held from ranks that are no longer expected are left out of the update.
    public mutating func onMembershipChange(membership: Membership) -> [BarrierDirective] {
        var directives: [BarrierDirective] = []
        for shard in shards.indices where !shards[shard].applying {
            if let ranks = readyRanks(shard: shard, membership: membership) {
                shards[shard].applying = true
                directives.append(.apply(shard: shard, step: shards[shard].pendingStep, ranks: ranks))
            }
        }
        return directives
    }

    /// The shell applied (`shard`, `step`) as directed: the shard moves to `step + 1`. Returns `.stepCompleted`
    /// for each step that every shard has now applied.
    public mutating func onApplied(shard: Int, step: UInt64) -> [BarrierDirective] {
        precondition(
            shards.indices.contains(shard) && shards[shard].applying && shards[shard].pendingStep == step,
            "onApplied(shard: \(shard), step: \(step)) without a matching .apply directive")
        shards[shard] = ShardState(pendingStep: step + 1)
        let newlyCompleted = shards.map(\.pendingStep).min() ?? completedSteps
        var directives: [BarrierDirective] = []
        while completedSteps < newlyCompleted {
            directives.append(.stepCompleted(completedSteps))
            completedSteps += 1
        }
        return directives
    }

    /// The ranks to average when `shard`'s pending step is complete, or nil while an expected rank is missing or
    /// when nobody is expected at all (the shell decides what an empty job does).
    private func readyRanks(shard: Int, membership: Membership) -> [WorkerID]? {
        let state = shards[shard]
        let expected = membership.expectedRanks(atStep: state.pendingStep)
        guard !expected.isEmpty, expected.allSatisfy({ state.arrived.contains($0) }) else { return nil }
        return expected
    }
}
