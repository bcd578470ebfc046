import Foundation
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
        if let coordinator = server.coordinator { server.carryOut(coordinator.epoch(epoch, rank: session.rank)) }
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

    /// A joined server registers (`serverJoin`): it gets its index and, once all M servers registered, the
    /// placement (proto-docs/protocol.md, "serverJoin").
    func serverJoin(_ join: ServerJoin, session: Session, requestID: UInt64) throws(TransportError) {
        guard session.role == .server else {
            try session.replyError(.invalidState, "serverJoin needs a hello with role server", to: requestID)
            return
        }
        guard let coordinator = server.coordinator, server.config.servers > 1 else {
            try session.replyError(
                .invalidState, "this server is not a coordinator waiting for servers (--servers)", to: requestID)
            return
        }
        guard let address = Self.resolve(advertise: join.advertise, peer: session.connection.peer) else {
            try session.replyError(
                .invalidArgument, "advertise '\(join.advertise)' is neither host:port nor :port", to: requestID)
            return
        }
        let (result, directives) = coordinator.serverJoin(address: address, shards: Int(join.shards))
        server.carryOut(directives)
        let accepted: ServerJoinAccepted
        switch result {
        case .failure(let refusal):
            try session.replyError(
                refusal.kind == .jobFinished ? .invalidState : .jobFull, refusal.reason, to: requestID)
            return
        case .success(let value):
            accepted = value
        }
        if accepted.rejoined, server.completedPlacement.withLock({ $0 }) != nil, coordinator.snapshot.jobStarted,
            let failure = server.rollBack(
                because: "joined server \(accepted.index) (\(address)) restarted", restartedServer: accepted.index)
        {
            try session.replyError(.invalidState, failure, to: requestID)
            return
        }
        switch coordinator.waitForServers(connection: session.connection) {
        case .ready:
            let placement = ServerLinkService.completePlacement(server: server, coordinator: coordinator)
            try session.reply(
                .serverJoined(ServerJoined(serverIndex: UInt32(accepted.index), config: LinkCoding.encode(placement))),
                to: requestID)
        case .timedOut(let why):
            try session.replyError(.timeout, why, to: requestID)
        case .stopping:
            try session.replyError(.shuttingDown, "the server is shutting down", to: requestID)
        case .peerGone:
            return
        }
    }

    /// The address workers use for a joined server: its `host:port` as sent, or for `:port` the host the
    /// coordinator sees the connection come from; nil for anything else.
    static func resolve(advertise: String, peer: String) -> String? {
        guard let colon = advertise.lastIndex(of: ":"), let port = UInt16(advertise[advertise.index(after: colon)...]),
            port > 0
        else { return nil }
        if colon != advertise.startIndex { return advertise }
        guard let peerColon = peer.lastIndex(of: ":"), peerColon != peer.startIndex else { return nil }
        return "\(peer[..<peerColon]):\(port)"
    }
}
