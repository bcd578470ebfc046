import Foundation
import PSCoordinator
import PSPosix
import PSTransport

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
        [
            "type": .string("epoch"), "epoch": .int(Int(epoch)), "test_loss": .double(testLoss),
            "test_accuracy": .double(testAccuracy), "samples": .int(Int(samples)),
            "elapsed_s": .double(Double(elapsedNanos) / 1e9),
        ]
    }
}

extension Coordinator {
    /// The job's fields of the status document, from a copy of the instance.
    func statusFields() -> [String: MetricsValue] {
        let instance = snapshot
        let now = MonotonicClock.nanoseconds()
        let workers: [MetricsValue] = instance.membership.workers.map { worker in
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
            "completed_steps": .int(Int(instance.releasedSteps)),
            "min_clock": .int(Int(instance.membership.minLiveClock ?? 0)),
            "max_clock": .int(Int(instance.membership.maxClock)),
            "barrier_waits": .int(Int(instance.barrierWaits)),
            "job_started": .bool(instance.jobStarted),
            "job_finished": .bool(instance.jobFinished),
            "events": .array(instance.events.suffix(20).map { .string($0) }),
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
