import Foundation
import PSCoordinator
import PSPosix
import PSTransport
import PSWire

/// Serves one connection on its own thread: handshake first, then one request at a time, replies written with
/// one `writev`. A malformed frame closes the connection after an error frame; a well-formed but invalid request
/// gets an error frame and the connection stays usable.
final class ConnectionHandler {
    let server: ParameterServer
    let connection: FramedConnection
    let id: UInt64
    var role: Role? = nil
    var rank: Int? = nil
    var name = ""
    /// Reused buffer for pull replies: filled under the shard lock, sent after it is released.
    var sendBuffer: [Float] = []

    init(server: ParameterServer, connection: FramedConnection, id: UInt64) {
        self.server = server
        self.connection = connection
        self.id = id
    }

    var log: Logger { server.log }

    func run() {
        log.info("connection-open", ["id": id, "peer": connection.peer])
        var closeReason = "peer closed"
        while true {
            let header: FrameHeader
            do {
                guard let next = try connection.readHeader() else { break }
                header = next
            } catch {
                closeReason = describe(error)
                if case .wire(let wireError) = error {
                    try? connection.sendError(wireError.code, "\(wireError)", requestID: 0)
                    log.warning("malformed-frame", ["id": id, "peer": connection.peer, "error": wireError])
                }
                break
            }
            server.activeHandlers.wrappingAdd(1, ordering: .acquiringAndReleasing)
            defer { server.activeHandlers.wrappingSubtract(1, ordering: .acquiringAndReleasing) }
            do {
                if try !handle(header) {
                    closeReason = "closed by server"
                    break
                }
            } catch {
                closeReason = describe(error)
                if case .wire(let wireError) = error {
                    try? connection.sendError(wireError.code, "\(wireError)", requestID: header.requestID)
                    log.warning("malformed-frame", ["id": id, "peer": connection.peer, "error": wireError])
                }
                break
            }
        }
        if let rank, server.coordinator != nil {
            // The worker's liveness now depends on heartbeats from a new connection; the ticker declares it dead
            // after --worker-timeout if none comes.
            log.info("worker-disconnected", ["name": name, "rank": rank])
        }
        log.info("connection-close", ["id": id, "peer": connection.peer, "reason": closeReason])
    }

    private func describe(_ error: TransportError) -> String {
        if case .socket(.endOfStream) = error { return "peer closed mid-frame" }
        return "\(error)"
    }

    /// Handles one frame; returns false when the connection must close.
    private func handle(_ header: FrameHeader) throws(TransportError) -> Bool {
        let requestID = header.requestID
        guard header.type.isKnown else {
            try connection.skipPayload(length: Int(header.payloadLength))
            try connection.sendError(
                .unknownMessageType, "unknown message type 0x\(String(header.type.rawValue, radix: 16))",
                requestID: requestID)
            return true
        }
        if role == nil, header.type != .hello {
            try connection.skipPayload(length: Int(header.payloadLength))
            try connection.sendError(.handshakeRequired, "the first frame must be hello", requestID: requestID)
            return false
        }
        switch header.type {
        case .push, .pushPull:
            try handlePush(header)
            return true
        default:
            break
        }
        let payload = try connection.readPayload(length: Int(header.payloadLength))
        let message: Message
        do {
            message = try MessageCodec.decodePayload(type: header.type, payload)
        } catch {
            throw .wire(error)
        }
        return try handle(message, requestID: requestID)
    }

    private func handle(_ message: Message, requestID: UInt64) throws(TransportError) -> Bool {
        switch message {
        case .hello(let hello):
            return try handleHello(hello, requestID: requestID)
        case .register(let register):
            if let problem = ReportLimits.problem(
                withRegistration: register.tensors, shardCount: server.config.shardCount,
                maxFrameBytes: server.config.maxFrameBytes)
            {
                try connection.sendError(.invalidArgument, problem, requestID: requestID)
                return true
            }
            let registered: Result<ShardedModel, RegistrationError> = Result { () throws(RegistrationError) in
                try server.store.register(register.tensors)
            }
            switch registered {
            case .success(let model):
                try connection.send(.registered(Registered(layout: model.layout)), requestID: requestID)
            case .failure(let error):
                try connection.sendError(error.code, error.description, requestID: requestID)
            }
        case .pull(let pull):
            try handlePull(shardIndex: Int(pull.shard), step: pull.clock, requestID: requestID)
        case .clock(let clock):
            guard let coordinator = server.coordinator, let rank else {
                try connection.send(
                    .clockAck(ClockAck(jobState: .running, minClock: clock.clock)), requestID: requestID)
                return true
            }
            if let problem = ReportLimits.problem(with: clock, job: coordinator.job) {
                try connection.sendError(.invalidArgument, problem, requestID: requestID)
                return true
            }
            let (state, minClock) = coordinator.recordClock(
                rank: rank, clock: clock.clock, loss: clock.loss, samples: clock.samples)
            try connection.send(.clockAck(ClockAck(jobState: state, minClock: minClock)), requestID: requestID)
        case .heartbeat(let heartbeat):
            var state = JobState.running
            if let coordinator = server.coordinator, let rank {
                if let problem = ReportLimits.problem(withClock: heartbeat.clock, job: coordinator.job) {
                    try connection.sendError(.invalidArgument, problem, requestID: requestID)
                    return true
                }
                coordinator.heartbeat(rank: rank, clock: heartbeat.clock)
                state = coordinator.jobState
            }
            try connection.send(.heartbeatAck(HeartbeatAck(jobState: state)), requestID: requestID)
        case .metrics(let epoch):
            if let problem = ReportLimits.problem(with: epoch) {
                try connection.sendError(.invalidArgument, problem, requestID: requestID)
                return true
            }
            server.coordinator?.recordEpoch(epoch)
            try connection.send(.metricsAck, requestID: requestID)
        case .leave(let leave):
            if let coordinator = server.coordinator, let rank {
                if server.config.mode == .bsp {
                    // A finished worker's last gradients must still count: its leave takes effect once every step
                    // it pushed has been applied (bounded by the wait timeout).
                    _ = coordinator.wait(
                        rank: rank, connection: connection,
                        describe: {
                            "worker \(rank) leaving after step \($0.membership.worker(rank: rank)?.clock ?? 0)"
                        },
                        isReady: { core in core.releasedSteps >= (core.membership.worker(rank: rank)?.clock ?? 0) })
                }
                server.carryOut(coordinator.leave(rank: rank, reason: leave.reason.rawValue))
                self.rank = nil
                try connection.send(.leaveAck, requestID: requestID)
                server.finishJobIfDone()
            } else {
                try connection.send(.leaveAck, requestID: requestID)
            }
        case .status:
            try connection.send(.statusReply(StatusReply(json: server.statusJSON())), requestID: requestID)
        case .checkpoint(let request):
            try handleCheckpoint(wait: request.wait, requestID: requestID)
        case .export(let request):
            try handleExport(path: request.path, requestID: requestID)
        case .shutdown:
            try connection.send(.shutdownAck, requestID: requestID)
            let server = self.server
            let thread = Thread { server.stop(exitCode: 0, reason: "shutdown requested") }
            thread.start()
            return false
        default:
            try connection.sendError(
                .invalidState, "\(message.type.name) is not a request a server accepts", requestID: requestID)
        }
        return true
    }

    // MARK: Handshake

    private func handleHello(_ hello: Hello, requestID: UInt64) throws(TransportError) -> Bool {
        if role != nil {
            try connection.sendError(
                .invalidState, "hello was already received on this connection", requestID: requestID)
            return true
        }
        if let token = server.config.token, !constantTimeEquals(token, hello.token) {
            try connection.send(
                .reject(Reject(code: .unauthorized, reason: "wrong or missing token")), requestID: requestID)
            log.warning("handshake-rejected", ["peer": connection.peer, "reason": "bad token"])
            return false
        }
        role = hello.role
        name = hello.name
        var startStep: UInt64 = 0
        var assignedRank: Int32 = -1
        if hello.role == .worker, let coordinator = server.coordinator {
            switch coordinator.join(name: hello.name, connectionID: id) {
            case .failure(let refusal):
                try connection.send(.reject(Reject(code: refusal.code, reason: refusal.reason)), requestID: requestID)
                log.warning("join-refused", ["name": hello.name, "reason": refusal.reason])
                return false
            case .success(let joined):
                rank = joined.rank
                assignedRank = Int32(joined.rank)
                startStep = joined.startStep
                if let replaced = joined.replacedConnection, replaced != id,
                    let old = server.connections.withLock({ $0[replaced] })
                {
                    // The name's previous incarnation is gone (or stuck): its connection must not act for the rank.
                    log.info("replaced-connection", ["name": hello.name, "rank": joined.rank, "old_id": replaced])
                    old.socket.shutdown()
                }
                server.carryOut(joined.directives)
            }
        }
        let model = server.store.current
        let welcome = WelcomeConfig(
            job: server.config.job, startStep: startStep, shardCount: server.config.shardCount,
            shardMap: Array(repeating: "", count: server.config.shardCount),
            tensors: model?.tensorShapes ?? [], heartbeatIntervalMillis: server.config.heartbeatIntervalMillis,
            rejectsNonFinite: !server.config.allowNonFinite)
        let json = (try? JSONEncoder().encode(welcome)).flatMap { String(data: $0, encoding: .utf8) } ?? "{}"
        try connection.send(
            .welcome(Welcome(assignedID: UInt32(truncatingIfNeeded: id), rank: assignedRank, config: json)),
            requestID: requestID)
        log.info("handshake", ["id": id, "role": "\(hello.role)", "name": hello.name])
        return true
    }

    // MARK: Push and pull

    private func handlePush(_ header: FrameHeader) throws(TransportError) {
        let requestID = header.requestID
        let payloadLength = Int(header.payloadLength)
        guard payloadLength >= PushPrefix.size else {
            throw .wire(.payloadTooShort(type: header.type, minimum: PushPrefix.size, got: payloadLength))
        }
        let prefixBytes = try connection.readPayload(length: PushPrefix.size)
        let prefix: PushPrefix
        do {
            prefix = try PushPrefix.decode(prefixBytes)
            try PushPrefix.validate(prefix, payloadLength: payloadLength, type: header.type)
        } catch {
            throw .wire(error)
        }
        let floatBytes = payloadLength - PushPrefix.size
        guard let model = server.store.current else {
            try connection.skipPayload(length: floatBytes)
            try connection.sendError(.notRegistered, "push before any tensor was registered", requestID: requestID)
            return
        }
        let shardIndex = Int(prefix.shard)
        guard shardIndex < model.shards.count else {
            try connection.skipPayload(length: floatBytes)
            try connection.sendError(
                .unknownShard, "shard \(shardIndex) does not exist (the server has \(model.shards.count) shards)",
                requestID: requestID)
            return
        }
        let shard = model.shards[shardIndex]
        guard Int(prefix.count) == shard.elementCount else {
            try connection.skipPayload(length: floatBytes)
            try connection.sendError(
                .lengthMismatch,
                "push to shard \(shardIndex) carries \(prefix.count) floats but the shard holds \(shard.elementCount)",
                requestID: requestID)
            return
        }
        // The gradient lands straight in the connection's reusable receive buffer.
        let raw = try connection.readPayload(length: floatBytes)
        let gradient = UnsafeMutableBufferPointer(
            mutating: raw.bindMemory(to: Float.self))
        if !server.config.allowNonFinite, let bad = firstNonFinite(UnsafeBufferPointer(gradient)) {
            try connection.sendError(
                .nonFinite,
                "gradient for shard \(shardIndex) has a non-finite value (\(gradient[bad]) at element \(bad)); "
                    + "nothing was applied", requestID: requestID)
            return
        }
        shard.pushCount.wrappingAdd(1, ordering: .relaxed)
        if let coordinator = server.coordinator, server.config.mode == .bsp {
            try bspPush(
                coordinator: coordinator, shard: shard, prefix: prefix, gradient: UnsafeBufferPointer(gradient),
                header: header)
            return
        }
        // Async / SSP: apply now, under the shard's lock, with the stale-gradient rule.
        let rule = server.config.stalenessRule
        let outcome: (status: PushStatus, version: UInt64, staleness: UInt64) = shard.state.withLock { state in
            switch rule.decide(currentVersion: state.version, baseVersion: prefix.baseVersion) {
            case .apply:
                let staleness = StalenessRule.staleness(currentVersion: state.version, baseVersion: prefix.baseVersion)
                state.apply(gradient: gradient, lrScale: 1)
                return (.applied, state.version, staleness)
            case .applyScaled(let scale, let staleness):
                state.apply(gradient: gradient, lrScale: scale)
                return (.appliedScaled, state.version, staleness)
            case .drop(let staleness):
                return (.droppedStale, state.version, staleness)
            }
        }
        if outcome.status == .droppedStale {
            shard.droppedStaleCount.wrappingAdd(1, ordering: .relaxed)
            server.coordinator?.countStale(dropped: true)
        }
        if outcome.status == .appliedScaled {
            shard.scaledStaleCount.wrappingAdd(1, ordering: .relaxed)
            server.coordinator?.countStale(dropped: false)
        }
        if let rank, let coordinator = server.coordinator { coordinator.countPush(rank: rank) }
        if header.type == .pushPull, outcome.status != .droppedStale {
            try sendShard(shard, requestID: requestID)
        } else {
            try connection.send(
                .pushAck(
                    PushAck(
                        shard: prefix.shard, status: outcome.status, version: outcome.version,
                        staleness: outcome.staleness)), requestID: requestID)
        }
    }

    private func bspPush(
        coordinator: Coordinator, shard: Shard, prefix: PushPrefix, gradient: UnsafeBufferPointer<Float>,
        header: FrameHeader
    ) throws(TransportError) {
        guard let rank else {
            try connection.sendError(
                .invalidState, "only a joined worker can push in bsp mode", requestID: header.requestID)
            return
        }
        let step = prefix.clock
        shard.state.withLock { $0.hold(step: step, rank: rank, gradient: gradient) }
        switch coordinator.bspPush(shard: shard.index, step: step, rank: rank) {
        case .reject(let reason):
            shard.state.withLock { $0.dropHeld(rank: rank) }
            try connection.sendError(.invalidState, reason, requestID: header.requestID)
            return
        case .hold:
            break
        case .apply(let shardIndex, let appliedStep, let ranks):
            server.carryOut([.apply(shard: shardIndex, step: appliedStep, ranks: ranks)])
        }
        coordinator.countPush(rank: rank)
        if header.type == .pushPull {
            try handlePull(shardIndex: shard.index, step: step + 1, requestID: header.requestID)
        } else {
            try connection.send(
                .pushAck(PushAck(shard: prefix.shard, status: .accepted, version: shard.version, staleness: 0)),
                requestID: header.requestID)
        }
    }

    private func handlePull(shardIndex: Int, step: UInt64, requestID: UInt64) throws(TransportError) {
        guard let model = server.store.current else {
            try connection.sendError(.notRegistered, "pull before any tensor was registered", requestID: requestID)
            return
        }
        guard shardIndex < model.shards.count else {
            try connection.sendError(
                .unknownShard, "shard \(shardIndex) does not exist (the server has \(model.shards.count) shards)",
                requestID: requestID)
            return
        }
        if let coordinator = server.coordinator, role == .worker {
            let outcome = coordinator.wait(
                rank: rank, connection: connection,
                describe: { coordinator.describeWait(step: step, core: $0) },
                isReady: { coordinator.mayPull(step: step, core: $0) })
            switch outcome {
            case .ready:
                break
            case .timedOut(let why):
                try connection.sendError(.timeout, "timed out waiting: \(why); retry", requestID: requestID)
                return
            case .stopping:
                try connection.sendError(.shuttingDown, "the server is shutting down", requestID: requestID)
                return
            case .peerGone:
                throw .closed
            }
        }
        try sendShard(model.shards[shardIndex], requestID: requestID)
    }

    /// Copies the shard under its lock into this connection's buffer, then sends it after the lock is released.
    private func sendShard(_ shard: Shard, requestID: UInt64) throws(TransportError) {
        if sendBuffer.count != shard.elementCount {
            sendBuffer = [Float](repeating: 0, count: shard.elementCount)
        }
        let version = sendBuffer.withUnsafeMutableBufferPointer { destination in
            shard.state.withLock { state in
                state.weights.withUnsafeBufferPointer { _ = destination.update(fromContentsOf: $0) }
                return state.version
            }
        }
        shard.pullCount.wrappingAdd(1, ordering: .relaxed)
        let prefix = PullReplyPrefix(shard: UInt32(shard.index), count: UInt32(shard.elementCount), version: version)
        try sendBuffer.withUnsafeBufferPointer { (floats) throws(TransportError) in
            try connection.sendPullReply(prefix: prefix, floats: floats, requestID: requestID)
        }
    }

    // MARK: Checkpoints

    private func handleCheckpoint(wait: Bool, requestID: UInt64) throws(TransportError) {
        guard let checkpoints = server.checkpoints else {
            try connection.sendError(
                .checkpointFailed, "the server was started without --checkpoint-dir", requestID: requestID)
            return
        }
        let result = checkpoints.requestCheckpoint(server: server, wait: wait)
        switch result {
        case .success(let written):
            try connection.send(
                .checkpointReply(CheckpointReply(step: written.step, durable: written.durable, path: written.path)),
                requestID: requestID)
        case .failure(let error):
            try connection.sendError(.checkpointFailed, error.description, requestID: requestID)
        }
    }

    private func handleExport(path: String, requestID: UInt64) throws(TransportError) {
        guard let snapshot = server.store.snapshot() else {
            try connection.sendError(.notRegistered, "nothing to export: no tensor is registered", requestID: requestID)
            return
        }
        do {
            let step = try CheckpointManager.exportWeights(snapshot: snapshot, to: path)
            try connection.send(.exportReply(ExportReply(step: step, path: path)), requestID: requestID)
            log.info("exported", ["path": path])
        } catch {
            try connection.sendError(.checkpointFailed, "export to \(path) failed: \(error)", requestID: requestID)
        }
    }
}

/// The index of the first NaN or infinity, if any.
func firstNonFinite(_ values: UnsafeBufferPointer<Float>) -> Int? {
    // Summing first is one fast pass; only a non-finite sum needs the element-wise search.
    var sum: Float = 0
    for value in values { sum += value * 0 }
    if sum.isFinite { return nil }
    return values.firstIndex { !$0.isFinite }
}

/// Compares two strings in time that depends only on their lengths, not on where they differ.
func constantTimeEquals(_ a: String, _ b: String) -> Bool {
    let x = Array(a.utf8)
    let y = Array(b.utf8)
    var difference = UInt8(x.count == y.count ? 0 : 1)
    for i in 0..<max(x.count, y.count) {
        let left = i < x.count ? x[i] : 0
        let right = i < y.count ? y[i] : 0
        difference |= left ^ right
    }
    return difference == 0
}
