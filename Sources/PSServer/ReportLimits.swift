import PSWire

/// Bounds on what a peer reports (clock, heartbeat, epoch metrics) or registers, checked before the server keeps it.
///
/// Status and the metrics file print clocks and sample counts as JSON integers (`Int`) and sum the samples of a
/// step, so a value no worker of the job can send (a clock past the last step, samples whose sum over the workers
/// overflows) is refused with an `invalidArgument` error frame instead of trapping a conversion later; so is a registration
/// whose shards could not travel in a frame.
enum ReportLimits {
    /// Why a clock report cannot come from a worker of `job`, or nil when it can.
    static func problem(with clock: ClockReport, job: JobDescription) -> String? {
        if let problem = problem(withClock: clock.clock, job: job) { return problem }
        // A step record sums one report per worker: keep that sum within a JSON integer.
        let limit = UInt64(Int.max / job.workers)
        guard clock.samples <= limit else {
            return "clock reports \(clock.samples) samples, more than \(limit) (2^63 - 1 over \(job.workers) workers)"
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

    /// Why a registration cannot be served: a shard of it would not fit one frame of `maxFrameBytes` (its pull
    /// reply could not be sent, and the store would allocate it first), or nil when it can.
    static func problem(withRegistration tensors: [TensorSpec], shardCount: Int, maxFrameBytes: Int) -> String? {
        // The codec caps a registration at WireProtocol.maxTensorElements, so the sum cannot overflow.
        let total = tensors.reduce(0) { $0 + $1.elementCount }
        let largest = WireProtocol.largestShardElements(totalElements: total, shardCount: shardCount)
        let limit = WireProtocol.maxShardElements(maxPayloadBytes: maxFrameBytes)
        guard largest <= limit else {
            return "the registration puts \(largest) floats in one of \(shardCount) shards; a frame carries at most "
                + "\(limit) (--max-frame-bytes \(maxFrameBytes))"
        }
        return nil
    }
}
