import PSCoordinator
import PSTransport
import PSWire

/// A worker's part in the job besides tensors: clocks (with the step's loss), heartbeats, epoch evaluations and
/// leaving. On a plain store (no job) each is acknowledged and changes nothing.
struct JobService {
    let server: ParameterServer

    func clock(_ clock: ClockReport, session: Session, requestID: UInt64) throws(TransportError) {
        guard let coordinator = server.coordinator, let rank = session.rank else {
            try session.reply(.clockAck(ClockAck(jobState: .running, minClock: clock.clock)), to: requestID)
            return
        }
        if let problem = ReportLimits.problem(with: clock, job: coordinator.job) {
            try session.replyError(.invalidArgument, problem, to: requestID)
            return
        }
        let (state, minClock, directives) = coordinator.clock(
            rank: rank, clock: clock.clock, loss: clock.loss, samples: clock.samples)
        server.carryOut(directives)
        try session.reply(.clockAck(ClockAck(jobState: state, minClock: minClock)), to: requestID)
    }

    func heartbeat(_ heartbeat: Heartbeat, session: Session, requestID: UInt64) throws(TransportError) {
        var state = JobState.running
        if let coordinator = server.coordinator, let rank = session.rank {
            if let problem = ReportLimits.problem(withClock: heartbeat.clock, job: coordinator.job) {
                try session.replyError(.invalidArgument, problem, to: requestID)
                return
            }
            state = coordinator.heartbeat(rank: rank, clock: heartbeat.clock)
        }
        try session.reply(.heartbeatAck(HeartbeatAck(jobState: state)), to: requestID)
    }

    func epoch(_ epoch: EpochMetrics, session: Session, requestID: UInt64) throws(TransportError) {
        if let problem = ReportLimits.problem(with: epoch) {
            try session.replyError(.invalidArgument, problem, to: requestID)
            return
        }
        if let coordinator = server.coordinator { server.carryOut(coordinator.epoch(epoch)) }
        try session.reply(.metricsAck, to: requestID)
    }

    /// A worker leaves. In BSP its last gradients must still count: the leave takes effect once every step it
    /// pushed has been applied (bounded by the wait timeout).
    func leave(_ leave: Leave, session: Session, requestID: UInt64) throws(TransportError) {
        guard let coordinator = server.coordinator, let rank = session.rank else {
            try session.reply(.leaveAck, to: requestID)
            return
        }
        if server.config.mode == .bsp {
            _ = coordinator.waitForLeave(rank: rank, connection: session.connection)
        }
        server.carryOut(coordinator.leave(rank: rank, finished: leave.reason.rawValue == 0))
        session.rank = nil
        try session.reply(.leaveAck, to: requestID)
    }
}
