import PSWire

/// Bounds on the counters a worker reports (clock, heartbeat, epoch metrics), checked before the coordinator keeps
/// them.
///
/// Status and the metrics file print clocks and sample counts as JSON integers (`Int`) and sum the samples of a
/// step, so a value no worker of the job can send (a clock past the last step, more samples than training rows) is
/// refused with an `invalidArgument` error frame instead of trapping a conversion later.
enum ReportLimits {
    /// Why a clock report cannot come from a worker of `job`, or nil when it can.
    static func problem(with clock: Clock, job: JobDescription) -> String? {
        if let problem = problem(withClock: clock.clock, job: job) { return problem }
        guard clock.samples <= UInt64(job.trainRows) else {
            return "clock reports \(clock.samples) samples, more than the job's \(job.trainRows) training rows"
        }
        return nil
    }

    /// Why a clock (from a clock or heartbeat message) cannot come from a worker of `job`, or nil when it can.
    static func problem(withClock clock: UInt64, job: JobDescription) -> String? {
        guard clock <= UInt64(job.totalSteps) else {
            return "clock \(clock) is past the job's last step (\(job.totalSteps) steps)"
        }
        return nil
    }

    /// Why an epoch report cannot come from a worker, or nil when it can.
    static func problem(with epoch: EpochMetrics) -> String? {
        guard epoch.samples <= UInt64(Int.max) else {
            return "metrics report \(epoch.samples) samples, more than a JSON integer holds"
        }
        return nil
    }
}
