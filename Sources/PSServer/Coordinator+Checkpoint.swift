import PSCoordinator
import PSPosix

extension Coordinator {
    /// The step a checkpoint taken now records: the number of steps whose updates the weights hold.
    ///
    /// In BSP this is the barrier's completed-step count, which runs ahead of `releasedSteps` while a boundary's
    /// checkpoint is copied (the copy is taken before the next step is released). In SSP and async it is the
    /// slowest live worker's clock (or the largest clock once nobody is live).
    var checkpointStep: UInt64 {
        core.withLock { core in
            switch config.mode {
            case .bsp: core.barrier.completedSteps
            case .ssp, .async: core.membership.minLiveClock ?? core.membership.maxClock
            }
        }
    }
}

extension Coordinator {
    /// After a restore: gives every worker named in the checkpoint its old rank back (its slice of the data order
    /// and rank 0's evaluation stay with the same name) and marks it not yet connected; `mayStartJob` then holds
    /// the job until all of them rejoined. Ranks that are not exactly `0..<n` (n <= K) are left to join order.
    func reserveRestoredRanks(_ ranks: [String: Int]) {
        let ordered = ranks.sorted { $0.value < $1.value }
        guard !ordered.isEmpty, ordered.map(\.value) == Array(0..<ordered.count), ordered.count <= job.workers
        else {
            if !ranks.isEmpty { log.warning("restored-ranks-ignored", ["ranks": "\(ranks)"]) }
            return
        }
        let now = MonotonicClock.nanoseconds()
        update { core in
            for (name, _) in ordered {
                let joined = core.membership.onJoin(name: name, now: now, activeFromStep: core.releasedSteps)
                if case .joined(let rank, _) = joined {
                    _ = core.membership.declareDead(rank: rank, reason: "restored from a checkpoint; not rejoined yet")
                }
            }
            core.awaitingRestoredWorkers = true
        }
    }

    /// Whether the job may start: every rank joined and, after a restore, every worker of the checkpoint is back.
    static func mayStartJob(_ core: Core, workers: Int) -> Bool {
        guard core.membership.allJoined else { return false }
        return !core.awaitingRestoredWorkers || core.membership.liveRanks.count == workers
    }
}
