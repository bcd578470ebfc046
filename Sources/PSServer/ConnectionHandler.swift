import Foundation
import PSCoordinator
import PSLog
import PSPosix
import PSSecurity
import PSTransport
import PSWire

/// What one connection established (its role, its worker rank) and its reusable buffers.
///
/// Touched only by the connection's own thread.
final class Session {
    let id: UInt64
    let connection: FramedConnection
    var role: Role? = nil
    /// The worker's rank once a worker's hello was accepted (and until it left).
    var rank: Int? = nil
    var name = ""
    /// The hello waiting for its `authenticate`, and the nonce it was challenged with (a server with a token).
    var pendingChallenge: (hello: Hello, nonce: [UInt8])? = nil
    /// Reused buffer for pull replies: filled under the shard lock, sent after it is released.
    var sendBuffer: [Float] = []
    /// Reused buffer for fp16/bf16 exchange replies (`--compress-pulls`).
    var sendBytes: [UInt8] = []
    /// A compressed exchange's gradient, decoded to float32 (reused from step to step, freed with the session).
    private var decompressed = UnsafeMutableBufferPointer<Float>(start: nil, count: 0)
    /// A BSP exchange's gradient, one array per owned shard, read straight from the socket; each becomes its
    /// shard's held gradient by a swap and the slot's previous array comes back here (`ShardState.hold`).
    var gradientSlabs: [[Float]] = []

    init(id: UInt64, connection: FramedConnection) {
        self.id = id
        self.connection = connection
    }

    deinit { decompressed.deallocate() }

    /// Reads the next `sizes.reduce(0, +)` floats of the frame into `gradientSlabs`, one slab per size in order.
    func readGradientSlabs(sizes: [Int]) throws(TransportError) {
        if gradientSlabs.count != sizes.count { gradientSlabs = sizes.map { _ in [] } }
        for (index, size) in sizes.enumerated() {
            // A slab swapped in from a slot was that shard's size too; only the first steps allocate.
            if gradientSlabs[index].count != size { gradientSlabs[index] = [Float](repeating: 0, count: size) }
            try gradientSlabs[index].withUnsafeMutableBufferPointer { (floats) throws(TransportError) in
                try connection.readPayload(into: UnsafeMutableRawBufferPointer(floats))
            }
        }
    }

    /// The decompression buffer, `count` floats long; valid until the next call or the session's end.
    func decompressionBuffer(count: Int) -> UnsafeMutableBufferPointer<Float> {
        if decompressed.count != count {
            decompressed.deallocate()
            decompressed = .allocate(capacity: count)
        }
        return decompressed
    }

    func reply(_ message: Message, to requestID: UInt64) throws(TransportError) {
        try connection.send(message, requestID: requestID)
    }

    func replyError(_ code: ErrorCode, _ text: String, to requestID: UInt64) throws(TransportError) {
        try connection.sendError(code, text, requestID: requestID)
    }
}

/// Serves one connection on its own thread: the frame loop and the handshake, then each request handed to the
/// service it belongs to (`ShardService` for tensors, `JobService` for a worker's part in the job,
/// `ControlService` for operators). A malformed frame closes the connection after an error frame; a well-formed
/// but invalid request gets an error frame and the connection stays usable.
final class ConnectionHandler {
    let server: ParameterServer
    let session: Session
    private let shards: ShardService
    private let job: JobService
    private let control: ControlService

    init(server: ParameterServer, connection: FramedConnection, id: UInt64) {
        self.server = server
        session = Session(id: id, connection: connection)
        shards = ShardService(server: server)
        job = JobService(server: server)
        control = ControlService(server: server)
    }

    private var log: Logger { server.log }
    private var connection: FramedConnection { session.connection }

    /// The frame loop: runs until the peer closes, a frame is malformed, or a request ends the connection.
    func run() {
        // Debug: every psctl call and health probe opens a connection; workers get an info line at handshake.
        log.debug("connection-open", ["id": session.id, "peer": connection.peer])
        let config = server.config
        let handshakeDeadline = MonotonicClock.deadline(afterSeconds: config.handshakeTimeoutSeconds)
        let tick = min(1, config.handshakeTimeoutSeconds, config.frameTimeoutSeconds)
        do {
            // Before hello the whole hello (waiting included) must arrive by the handshake deadline; after it,
            // waiting between frames is free and each frame has --frame-timeout.
            try connection.setReadDeadlines(
                tick: .nanoseconds(Int64(tick * 1e9)), frame: .nanoseconds(Int64(config.handshakeTimeoutSeconds * 1e9)),
                // Weak: the connection stores this closure and the session holds the connection.
                keepWaiting: { [weak session] in
                    session?.role != nil || MonotonicClock.nanoseconds() < handshakeDeadline
                })
            try connection.setSendTimeout(.nanoseconds(Int64(config.sendTimeoutSeconds * 1e9)))
        } catch {
            log.warning("connection-setup-failed", ["id": session.id, "error": error])
            return
        }
        var closeReason = "peer closed"
        while true {
            let header: FrameHeader
            do {
                guard let next = try connection.readHeader() else { break }
                header = next
            } catch {
                closeReason = describe(error)
                reportMalformed(error, requestID: 0)
                reportTimeout(error)
                if case .socket(.tls(let reason)) = error {
                    log.warning("tls-refused", ["id": session.id, "peer": connection.peer, "reason": reason])
                }
                break
            }
            do {
                let keepOpen = try server.serving { () throws(TransportError) in try handle(header) }
                if !keepOpen {
                    closeReason = "closed by server"
                    break
                }
            } catch {
                closeReason = describe(error)
                reportMalformed(error, requestID: header.requestID)
                reportTimeout(error)
                break
            }
        }
        if session.rank != nil { server.coordinator?.connectionClosed(session.id) }
        if session.role == .worker { server.workerConnectionIDs.withLockAndBroadcast { _ = $0.remove(session.id) } }
        if let rank = session.rank, server.coordinator != nil {
            // The worker's liveness now depends on heartbeats from a new connection; the ticker declares it dead
            // after --worker-timeout if none comes.
            log.info("worker-disconnected", ["name": session.name, "rank": rank])
        }
        log.log(
            session.role == .worker || session.role == .server ? .info : .debug, "connection-close",
            ["id": session.id, "peer": connection.peer, "reason": closeReason])
    }

    private func reportMalformed(_ error: TransportError, requestID: UInt64) {
        guard case .wire(let wireError) = error else { return }
        try? connection.sendError(wireError.code, "\(wireError)", requestID: requestID)
        log.warning("malformed-frame", ["id": session.id, "peer": connection.peer, "error": wireError])
    }

    /// Tells a peer that ran past a read deadline why it is being closed (best effort: it may not be reading).
    private func reportTimeout(_ error: TransportError) {
        guard case .socket(.timedOut(let operation)) = error, operation != "write" else { return }
        let config = server.config
        let text =
            session.role == nil
            ? "no complete hello within --handshake-timeout \(config.handshakeTimeoutSeconds) s; closing"
            : "frame not complete within --frame-timeout \(config.frameTimeoutSeconds) s; closing"
        try? connection.sendError(.timeout, text, requestID: 0)
        log.warning("connection-timeout", ["id": session.id, "peer": connection.peer, "reason": text])
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
            try session.replyError(
                .unknownMessageType, "unknown message type 0x\(String(header.type.rawValue, radix: 16))",
                to: requestID)
            return true
        }
        if session.role == nil, Int(header.payloadLength) > ServerConfig.maxPreHandshakePayloadBytes {
            // Not read: an unauthenticated peer cannot make the server buffer a large frame.
            try session.replyError(
                .frameTooLarge,
                "a frame before the handshake may carry at most \(ServerConfig.maxPreHandshakePayloadBytes) bytes, "
                    + "not \(header.payloadLength)", to: requestID)
            return false
        }
        if session.role == nil {
            // Before the handshake completes only its next step is accepted: hello, or the challenge's answer.
            let expected: MessageType = session.pendingChallenge == nil ? .hello : .authenticate
            if header.type != expected {
                try connection.skipPayload(length: Int(header.payloadLength))
                let text =
                    expected == .hello
                    ? "the first frame must be hello" : "the frame after a challenge must be authenticate"
                try session.replyError(.handshakeRequired, text, to: requestID)
                return false
            }
        }
        if header.type == .exchange {
            try shards.exchange(header, session: session)
            return true
        }
        if header.type == .push || header.type == .pushPull {
            // Tensor frames are read straight into the connection's buffer, never decoded as a whole message.
            try shards.push(header, session: session)
            return true
        }
        let payload = try connection.readPayload(length: Int(header.payloadLength))
        let message: Message
        do {
            message = try MessageCodec.decodePayload(type: header.type, payload)
        } catch {
            throw .wire(error)
        }
        switch message {
        case .hello(let hello):
            return try handshake(hello, requestID: requestID)
        case .authenticate(let answer):
            return try authenticate(answer, requestID: requestID)
        case .register(let register):
            try shards.register(register, session: session, requestID: requestID)
        case .pull(let pull):
            try shards.pull(shard: Int(pull.shard), step: pull.clock, session: session, requestID: requestID)
        case .clock(let clock):
            try job.clock(clock, session: session, requestID: requestID)
        case .heartbeat(let heartbeat):
            try job.heartbeat(heartbeat, session: session, requestID: requestID)
        case .metrics(let epoch):
            try job.epoch(epoch, session: session, requestID: requestID)
        case .leave(let leave):
            try job.leave(leave, session: session, requestID: requestID)
        case .serverJoin(let join):
            try job.serverJoin(join, session: session, requestID: requestID)
        case .sparsePull(let pull):
            try shards.sparsePull(pull, session: session, requestID: requestID)
        case .sparsePush(let push):
            try shards.sparsePush(push, session: session, requestID: requestID)
        case .serverCall(let call):
            try ServerLinkService(server: server).handle(call, session: session, requestID: requestID)
        case .status:
            try control.status(session: session, requestID: requestID)
        case .checkpoint(let request):
            try control.checkpoint(wait: request.wait, session: session, requestID: requestID)
        case .export(let request):
            try control.export(path: request.path, session: session, requestID: requestID)
        case .shutdown(let request):
            return try control.shutdown(request, session: session, requestID: requestID)
        default:
            try session.replyError(
                .invalidState, "\(message.type.name) is not a request a server accepts", to: requestID)
        }
        return true
    }

    // MARK: Handshake

    /// The first frame. A server with a token answers it with a challenge (a fresh nonce) and admits the peer
    /// only once `authenticate` proves the token; a server without one admits it at once.
    private func handshake(_ hello: Hello, requestID: UInt64) throws(TransportError) -> Bool {
        if session.role != nil {
            try session.replyError(.invalidState, "hello was already received on this connection", to: requestID)
            return true
        }
        guard server.config.token != nil else { return try admit(hello, requestID: requestID) }
        let nonce = Crypto.randomBytes(count: Challenge.size)
        session.pendingChallenge = (hello, nonce)
        try session.reply(.challenge(Challenge(nonce: nonce)), to: requestID)
        return true
    }

    /// The answer to the challenge: HMAC-SHA256(token, nonce), compared in constant time. One try per connection.
    private func authenticate(_ answer: Authenticate, requestID: UInt64) throws(TransportError) -> Bool {
        guard session.role == nil, let pending = session.pendingChallenge, let token = server.config.token else {
            try session.replyError(.invalidState, "authenticate answers a challenge; none is pending", to: requestID)
            return true
        }
        session.pendingChallenge = nil
        let expected = Crypto.hmacSHA256(token: token, message: pending.nonce)
        guard Crypto.constantTimeEquals(expected, answer.mac) else {
            try session.reply(.reject(Reject(code: .unauthorized, reason: "wrong token")), to: requestID)
            log.warning("handshake-rejected", ["peer": connection.peer, "reason": "bad token"])
            return false
        }
        return try admit(pending.hello, requestID: requestID)
    }

    /// Admits an authenticated peer: its role and name, and for a worker a place in the job (rank and start step).
    private func admit(_ hello: Hello, requestID: UInt64) throws(TransportError) -> Bool {
        session.role = hello.role
        session.name = hello.name
        connection.setFrameBudget(.nanoseconds(Int64(server.config.frameTimeoutSeconds * 1e9)))
        var startStep: UInt64 = 0
        var assignedRank: Int32 = -1
        if hello.role == .worker, server.links != nil, let why = server.rollingBack.withLock({ $0 }) {
            try session.reply(
                .reject(
                    Reject(code: .timeout, reason: "the job is rolling back to its last checkpoint (\(why)); retry")),
                to: requestID)
            return false
        }
        if hello.role == .worker, let coordinator = server.coordinator, server.links != nil,
            server.completedPlacement.withLock({ $0 }) == nil
        {
            // Scale-out: a worker's welcome carries the shard map, so it waits until every server registered.
            switch coordinator.waitForServers(connection: connection) {
            case .ready:
                _ = ServerLinkService.completePlacement(server: server, coordinator: coordinator)
            case .timedOut(let why):
                try session.reply(.reject(Reject(code: .timeout, reason: "waiting for servers: \(why)")), to: requestID)
                return false
            case .stopping, .peerGone:
                return false
            }
        }
        if hello.role == .worker, let coordinator = server.coordinator {
            let server = self.server
            let (result, directives) = coordinator.join(name: hello.name, connectionID: session.id) { previous in
                // A poll on the old socket, outside the coordinator's lock; a closed one counts as hung up.
                server.connections.withLock { $0[previous] }?.peerHasHungUp() ?? true
            }
            server.carryOut(directives)
            switch result {
            case .failure(let refusal):
                let code: ErrorCode = refusal.kind == .jobFull ? .jobFull : .invalidState
                try session.reply(.reject(Reject(code: code, reason: refusal.reason)), to: requestID)
                log.warning("join-refused", ["name": hello.name, "reason": refusal.reason])
                return false
            case .success(let joined):
                session.rank = joined.rank
                server.workerConnectionIDs.withLock { _ = $0.insert(session.id) }
                assignedRank = Int32(joined.rank)
                startStep = joined.startStep
            }
        }
        let config = server.config
        // The shard map: "" for a shard of this server; in a scale-out job the address of the server owning it.
        let placement = server.completedPlacement.withLock { $0 }
        let shardCount = placement?.totalShards ?? config.shardCount
        let welcome = WelcomeConfig(
            job: config.job, startStep: startStep, shardCount: shardCount,
            shardMap: placement?.shardMap ?? Array(repeating: "", count: shardCount),
            tensors: server.store.current?.tensorShapes ?? [], heartbeatIntervalMillis: config.heartbeatIntervalMillis,
            rejectsNonFinite: !config.allowNonFinite)
        let json = (try? JSONEncoder().encode(welcome)).flatMap { String(data: $0, encoding: .utf8) } ?? "{}"
        try session.reply(
            .welcome(Welcome(assignedID: UInt32(truncatingIfNeeded: session.id), rank: assignedRank, config: json)),
            to: requestID)
        log.log(
            hello.role == .control ? .debug : .info, "handshake",
            ["id": session.id, "role": "\(hello.role)", "name": hello.name])
        return true
    }
}
