import Foundation
import PSCoordinator
import PSLog
import PSPosix
import PSTransport
import PSWire

// How the shell turns the job coordinator's records into log lines, metrics-file lines and status fields.
// Everything here runs on copies, after the coordinator's lock was released.

extension Logger {
    /// Writes a log line the job coordinator asked for.
    func write(_ record: LogRecord) {
        let level: Level =
            switch record.level {
            case .info: .info
            case .warning: .warning
            case .error: .error
            }
        log(level, record.event, fields: record.fields.map { (key: $0.key, value: $0.value) })
    }
}

extension StepRecord {
    /// The metrics file's `step` line.
    var metricsFields: [String: MetricsValue] {
        [
            "type": .string("step"), "step": .int(Int(step)), "loss": .double(loss),
            "workers": .int(workers), "samples": .int(Int(samples)),
            "min_clock": .int(Int(minClock)), "max_clock": .int(Int(maxClock)),
            "clocks": .object(clocks.mapValues { .int(Int($0)) }),
            "live_clocks": .object(liveClocks.mapValues { .int(Int($0)) }),
            "stale_dropped": .int(Int(staleDropped)), "stale_scaled": .int(Int(staleScaled)),
            "elapsed_s": .double(Double(elapsedNanos) / 1e9),
        ]
    }
}

extension EpochRecord {
    /// The metrics file's `epoch` line.
    var metricsFields: [String: MetricsValue] {
        var fields: [String: MetricsValue] = [
            "type": .string("epoch"), "epoch": .int(Int(epoch)), "test_loss": .double(testLoss),
            "test_accuracy": .double(testAccuracy), "samples": .int(Int(samples)),
            "elapsed_s": .double(Double(elapsedNanos) / 1e9),
        ]
        // Which weights the record evaluated: those of `weights_at_step`, while live workers were between
        // `min_clock` and `max_clock` (equal in BSP).
        if let weightsAtStep { fields["weights_at_step"] = .int(Int(weightsAtStep)) }
        if let minClock { fields["min_clock"] = .int(Int(minClock)) }
        if let maxClock { fields["max_clock"] = .int(Int(maxClock)) }
        return fields
    }
}

extension Coordinator {
    /// The job's part of the status document, from a copy of the instance.
    func jobStatus() -> StatusDocument.JobStatus {
        let instance = snapshot
        let now = MonotonicClock.nanoseconds()
        let workers = instance.membership.workers.map { worker in
            StatusDocument.Worker(
                name: worker.name, rank: worker.rank, state: worker.state.rawValue, clock: worker.clock,
                pushes: worker.pushes, lastSeenSeconds: Double(now &- min(worker.lastSeen, now)) / 1e9,
                rejoins: worker.rejoins)
        }
        return StatusDocument.JobStatus(
            job: job, workers: workers, expectedWorkers: job.workers, completedSteps: instance.releasedSteps,
            minClock: instance.membership.minLiveClock ?? 0, maxClock: instance.membership.maxClock,
            barrierWaits: instance.barrierWaits, jobStarted: instance.jobStarted, jobFinished: instance.jobFinished,
            events: Array(instance.events.suffix(20)), staleness: config.staleness)
    }
}
