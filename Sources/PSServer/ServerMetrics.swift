import PSCoordinator
import PSMetrics
import PSPosix
import Synchronization  // Atomic

/// The counters and histograms only the server's code paths can see (per-shard push and pull counts live on the
/// shards; worker and job facts in the coordinator). Each recording site is one line; the histograms sit behind
/// their own small locks, taken for an array increment only.
///
/// Also keeps the run's history (loss per step, test metrics per epoch) for the dashboard, bounded.
public final class ServerMetrics: Sendable {
    /// Seconds a worker's pull waited at the gate (BSP: the barrier; SSP: the staleness bound), including the
    /// shared applies its connection thread carried out meanwhile (`Coordinator.shareApplies`).
    let barrierWait = LockedValue(Histogram(bounds: Histogram.exponentialBounds(start: 0.0001, factor: 4, count: 10)))
    /// Seconds one update took to apply on a shard (the optimizer's arithmetic under the shard's lock).
    let applyTime = LockedValue(Histogram(bounds: Histogram.exponentialBounds(start: 0.00001, factor: 4, count: 10)))
    /// Seconds one checkpoint took to write and make durable.
    let checkpointTime = LockedValue(Histogram(bounds: Histogram.exponentialBounds(start: 0.001, factor: 4, count: 9)))
    let checkpointBytes = Atomic<UInt64>(0)
    /// BSP shard applies carried out by a connection thread waiting on the step (`Coordinator.shareApplies`).
    let sharedApplies = Atomic<UInt64>(0)
    /// Gradient bytes of `exchange` payloads as they travelled (compressed or not), after the prefix.
    let exchangeGradientBytes = Atomic<UInt64>(0)
    /// Weight bytes of `exchangeReply` payloads, after the prefix.
    let exchangeWeightBytes = Atomic<UInt64>(0)
    let checkpointFailures = Atomic<UInt64>(0)
    /// Row-sparse requests that named no table of the job (per-table counters live on `RowSparseTable`).
    let sparseUnknownTable = Atomic<UInt64>(0)
    let history = LockedValue(RunHistory())

    public init() {}

    /// Records the time since `startNanos` (a `MonotonicClock` reading) in `histogram`.
    func observe(_ histogram: LockedValue<Histogram>, since startNanos: UInt64) {
        let seconds = Double(MonotonicClock.nanoseconds() &- startNanos) / 1e9
        histogram.withLock { $0.observe(seconds) }
    }

    func checkpointWritten(seconds: Double, bytes: UInt64) {
        checkpointTime.withLock { $0.observe(seconds) }
        checkpointBytes.wrappingAdd(bytes, ordering: .relaxed)
    }
}

/// The loss of every recorded step and the test metrics of every epoch, oldest first, capped at
/// ``RunHistory/maxSteps`` steps (older steps are dropped, and ``droppedSteps`` says how many).
struct RunHistory: Sendable {
    static let maxSteps = 20_000

    struct Step: Sendable {
        var step: UInt64
        var loss: Double
        var samples: UInt64
        var elapsed: Double
        var workers: Int
    }

    struct Epoch: Sendable {
        var epoch: UInt32
        var testLoss: Double
        var testAccuracy: Double
        var elapsed: Double
    }

    var steps: [Step] = []
    var droppedSteps = 0
    var epochs: [Epoch] = []
    /// Samples over all recorded steps (for the samples counter).
    var samples: UInt64 = 0
    var lastLoss: Double? = nil

    mutating func record(_ record: StepRecord) {
        if steps.count >= Self.maxSteps {
            steps.removeFirst(Self.maxSteps / 4)
            droppedSteps += Self.maxSteps / 4
        }
        steps.append(
            Step(
                step: record.step, loss: record.loss, samples: record.samples,
                elapsed: Double(record.elapsedNanos) / 1e9, workers: record.workers))
        samples &+= record.samples
        lastLoss = record.loss
    }

    mutating func record(_ record: EpochRecord) {
        epochs.append(
            Epoch(
                epoch: record.epoch, testLoss: record.testLoss, testAccuracy: record.testAccuracy,
                elapsed: Double(record.elapsedNanos) / 1e9))
    }
}
