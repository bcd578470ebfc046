import Foundation
import PSCheckpoint
import PSPosix

extension ParameterServer {
    /// Scale-out: a joined server that died came back (same address) while the job runs, so its shards' state is
    /// gone; or a joined server cannot apply a released step because one of its gradients will never arrive (a
    /// worker host crashed with it unsent). Either way the whole job goes back to the last checkpoint, as after a
    /// coordinator restart with `--restore latest`: every worker connection closes, the coordinator reloads the checkpoint (its own shards,
    /// and the whole model for the joined servers' parts), every joined server drops its model and fetches its
    /// part again, and only then are workers welcomed back, at the checkpoint's step. In BSP the final weights are
    /// those of a run that was never interrupted.
    ///
    /// Returns nil once the rollback is under way (the joined servers' part finishes on a thread of its own), or
    /// the reason it cannot be done, after stopping the job with exit code 1.
    func rollBack(because reason: String, restartedServer index: Int?) -> String? {
        guard let coordinator, let links, let checkpoints, checkpoints.lastWritten != nil else {
            let failure =
                "\(reason), and there is no checkpoint to roll back to (--checkpoint-dir, --checkpoint-every-steps)"
            log.error("rollback-failed", ["reason": failure])
            stop(exitCode: 1, reason: failure)
            return failure
        }
        let alreadyRollingBack = rollingBack.withLock { current -> Bool in
            if current != nil { return true }
            current = reason
            return false
        }
        if alreadyRollingBack { return nil }
        log.warning("rollback-started", ["reason": reason])
        // No worker acts on the old state any more: their connections close (they reconnect, and are refused
        // until the rollback is done).
        let workerIDs = workerConnectionIDs.withLock { $0 }
        for id in workerIDs { connections.withLock { $0[id] }?.shutdown() }
        workerConnectionIDs.wait(until: MonotonicClock.deadline(afterSeconds: 10), while: { !$0.isEmpty })
        checkpoints.waitForWrites()
        do {
            let whole = ShardStore(shardCount: 1, optimizer: config.optimizer, workerSlots: config.job?.workers ?? 1)
            _ = try checkpoints.restore(spec: "latest", into: whole, expectedTensors: config.jobTensors)
            let restored = try checkpoints.restore(spec: "latest", into: store, expectedTensors: config.jobTensors)
            initialModel.withLock { $0 = whole.snapshot() }
            initialCompletedSteps.withLock { $0 = restored.step }
            if let index { links.forget(server: index) }
            carryOut(
                coordinator.rollBack(
                    completedSteps: restored.step, restoredClocks: restored.workerClocks,
                    ranks: restored.workerRanks))
            let sequence = links.publishRollback(step: restored.step, reason: reason)
            log.info("rollback-checkpoint", ["path": restored.path, "step": restored.step])
            let thread = Thread { [self] in
                let deadline = MonotonicClock.deadline(afterSeconds: config.serverTimeoutSeconds)
                guard links.waitUntilCarriedOut(sequence, deadline: deadline) else {
                    let failure = "a joined server did not take the rolled-back model within --server-timeout"
                    log.error("rollback-failed", ["reason": failure])
                    stop(exitCode: 1, reason: failure)
                    return
                }
                rollingBack.withLock { $0 = nil }
                log.info("rollback-done", ["step": restored.step])
            }
            thread.name = "psserver-rollback"
            thread.start()
            return nil
        } catch {
            let failure = "cannot roll back to the last checkpoint: \(error)"
            log.error("rollback-failed", ["reason": failure])
            stop(exitCode: 1, reason: failure)
            return failure
        }
    }
}
