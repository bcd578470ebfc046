import Foundation
import PSData
import PSPosix

/// Gathers the next step's batch on a producer thread while the current step computes and exchanges (a bounded
/// producer-consumer queue of depth one batch beyond the one in use).
///
/// `batch(step:rank:)` hands back the batch of (step, rank): the prefetched one when it matches, otherwise one
/// gathered on the calling thread (the first step, or after a rejoin moved the worker to another step or rank);
/// then it asks the producer for (step + 1, rank). The batches are exactly what `DataOrder` and
/// `Dataset.gather` give inline, so training is bitwise the same with or without the producer.
final class BatchPrefetcher: Sendable {
    /// One gathered batch.
    struct Batch: Sendable {
        let step: Int
        let rank: Int
        var features: [Float]
        var labels: [Float]
    }

    private struct State: Sendable {
        /// What the producer should gather next, if anything.
        var wanted: (step: Int, rank: Int)? = nil
        /// The batch the producer gathered last, until taken.
        var ready: Batch? = nil
        /// The producer is gathering `wanted` now (outside the lock).
        var gathering = false
        var stopping = false
        var producerDone = false
    }

    private let data: Dataset
    private let order: DataOrder
    private let rowsPerBatch: Int
    private let state = LockedValue(State())

    /// Starts the producer thread; `stop()` ends it.
    init(data: Dataset, order: DataOrder, rowsPerBatch: Int) {
        self.data = data
        self.order = order
        self.rowsPerBatch = rowsPerBatch
        let thread = Thread { [self] in produce() }
        thread.name = "psworker-prefetch"
        thread.start()
    }

    /// The batch of `step` for `rank`, and the producer set to work on the next one.
    func batch(step: Int, rank: Int) -> Batch {
        // A batch being gathered for exactly this step is worth waiting for (bounded: it is a copy).
        let prefetched = state.wait(
            until: MonotonicClock.deadline(afterSeconds: 10),
            while: { $0.gathering && $0.wanted?.step == step && $0.wanted?.rank == rank }
        ) { state, _ -> Batch? in
            defer { state.ready = nil }
            guard let ready = state.ready, ready.step == step, ready.rank == rank else { return nil }
            return ready
        }
        let batch = prefetched ?? gather(step: step, rank: rank)
        state.withLockAndBroadcast { $0.wanted = (step + 1, rank) }
        return batch
    }

    /// Ends the producer thread and waits (bounded) until it has.
    func stop() {
        state.withLockAndBroadcast { $0.stopping = true }
        state.wait(until: MonotonicClock.deadline(afterSeconds: 10), while: { !$0.producerDone })
    }

    /// Gathers into arrays that are not zeroed first: every element is written by the gather (one row per slot,
    /// `rowsPerBatch` rows), so a zero fill would be a wasted pass over the batch.
    private func gather(step: Int, rank: Int) -> Batch {
        let rows = order.rows(step: step, rank: rank)
        precondition(rows.count == rowsPerBatch, "BatchPrefetcher: \(rows.count) rows for a batch of \(rowsPerBatch)")
        let featureCount = rowsPerBatch * data.featureCount
        var labels: [Float] = []
        let features = [Float](unsafeUninitializedCapacity: featureCount) { f, featuresInitialized in
            labels = [Float](unsafeUninitializedCapacity: rowsPerBatch) { l, labelsInitialized in
                data.gather(rows: rows, into: f, labels: l)
                labelsInitialized = rowsPerBatch
            }
            featuresInitialized = featureCount
        }
        return Batch(step: step, rank: rank, features: features, labels: labels)
    }

    private func produce() {
        defer { state.withLockAndBroadcast { $0.producerDone = true } }
        while true {
            // Idle until asked for a batch that is not already there; the consumer's `stop` ends the wait.
            let job: (step: Int, rank: Int)? = state.wait(
                until: nil,
                while: { state in
                    !state.stopping
                        && (state.wanted == nil
                            || (state.ready?.step == state.wanted?.step && state.ready?.rank == state.wanted?.rank))
                }
            ) { state, _ in
                guard !state.stopping, let wanted = state.wanted else { return nil }
                state.gathering = true
                return wanted
            }
            guard let job else { return }
            let batch = gather(step: job.step, rank: job.rank)
            state.withLockAndBroadcast { state in
                state.gathering = false
                // Kept only if still wanted (a rejoin may have moved the worker meanwhile).
                if state.wanted?.step == job.step && state.wanted?.rank == job.rank { state.ready = batch }
            }
        }
    }
}
