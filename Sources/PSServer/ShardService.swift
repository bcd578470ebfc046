import PSCoordinator
import PSPosix
import PSTransport
import PSWire

/// Tensor requests: register, push, pull and push-pull, with each consistency mode's rule (BSP holds and applies
/// at the barrier; SSP and async apply at once under the stale-gradient bound; pulls wait for the mode's gate).
///
/// Shard locks are held only around the optimizer's arithmetic or a copy; every send happens after release.
struct ShardService {
    let server: ParameterServer

    func register(_ register: Register, session: Session, requestID: UInt64) throws(TransportError) {
        if let problem = ReportLimits.problem(
            withRegistration: register.tensors, shardCount: server.config.shardCount,
            maxFrameBytes: server.config.maxFrameBytes)
        {
            try session.replyError(.invalidArgument, problem, to: requestID)
            return
        }
        let registered: Result<ShardedModel, RegistrationError> = Result { () throws(RegistrationError) in
            if server.links != nil, server.store.current == nil {
                // Scale-out: the joined servers fetch their parts of the first registration's initial values.
                let whole = ShardStore(shardCount: 1, optimizer: server.config.optimizer, workerSlots: 1)
                try whole.register(register.tensors)
                let model = try server.store.register(register.tensors)
                if let snapshot = whole.snapshot() { server.initialModel.withLock { if $0 == nil { $0 = snapshot } } }
                return model
            }
            return try server.store.register(register.tensors)
        }
        switch registered {
        case .success(let model):
            try session.reply(.registered(Registered(layout: model.layout)), to: requestID)
        case .failure(let error):
            try session.replyError(error.code, error.description, to: requestID)
        }
    }

    // MARK: Push

    /// Reads a push or push-pull frame's gradient straight into the connection's buffer, validates it and applies
    /// (or holds) it; a push-pull then answers with the shard's weights.
    func push(_ header: FrameHeader, session: Session) throws(TransportError) {
        let connection = session.connection
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
        guard let model = currentModel() else {
            try connection.skipPayload(length: floatBytes)
            try session.replyError(.notRegistered, "push before any tensor was registered", to: requestID)
            return
        }
        let shardIndex = Int(prefix.shard)
        guard let shard = model.shard(shardIndex) else {
            try connection.skipPayload(length: floatBytes)
            try session.replyError(.unknownShard, Self.notOwned(shardIndex, model), to: requestID)
            return
        }
        guard Int(prefix.count) == shard.elementCount else {
            try connection.skipPayload(length: floatBytes)
            try session.replyError(
                .lengthMismatch,
                "push to shard \(shardIndex) carries \(prefix.count) floats but the shard holds \(shard.elementCount)",
                to: requestID)
            return
        }
        // The gradient lands straight in the connection's reusable receive buffer.
        let raw = try connection.readPayload(length: floatBytes)
        let gradient = UnsafeMutableBufferPointer(mutating: raw.bindMemory(to: Float.self))
        if !rules.allowNonFinite, let bad = firstNonFinite(UnsafeBufferPointer(gradient)) {
            try session.replyError(
                .nonFinite,
                "gradient for shard \(shardIndex) has a non-finite value (\(gradient[bad]) at element \(bad)); "
                    + "nothing was applied", to: requestID)
            return
        }
        shard.pushCount.wrappingAdd(1, ordering: .relaxed)
        if rules.mode == .bsp, server.coordinator == nil {
            try session.replyError(
                .invalidState, "a joined server takes BSP gradients in exchange requests only", to: requestID)
            return
        }
        if let coordinator = server.coordinator, server.config.mode == .bsp {
            try bspPush(
                coordinator: coordinator, shard: shard, prefix: prefix, gradient: UnsafeBufferPointer(gradient),
                header: header, session: session)
        } else {
            try asyncPush(shard: shard, prefix: prefix, gradient: gradient, header: header, session: session)
        }
    }

    /// SSP/async (and a plain store): applies now, under the shard's lock, with the stale-gradient rule.
    private func asyncPush(
        shard: Shard, prefix: PushPrefix, gradient: UnsafeMutableBufferPointer<Float>, header: FrameHeader,
        session: Session
    ) throws(TransportError) {
        let outcome = applyNow(shard: shard, baseVersion: prefix.baseVersion, gradient: gradient, rank: session.rank)
        if header.type == .pushPull, outcome.status != .droppedStale {
            try sendShard(shard, session: session, requestID: header.requestID)
        } else {
            try session.connection.sendPushAck(
                PushAck(
                    shard: prefix.shard, status: outcome.status, version: outcome.version,
                    staleness: outcome.staleness), requestID: header.requestID)
        }
    }

    /// SSP/async: applies `gradient` to `shard` under its lock with the stale-gradient rule, and counts it.
    private func applyNow(
        shard: Shard, baseVersion: UInt64, gradient: UnsafeMutableBufferPointer<Float>, rank: Int?
    ) -> (status: PushStatus, version: UInt64, staleness: UInt64) {
        let rule = rules.stalenessRule
        let started = MonotonicClock.nanoseconds()
        let outcome: (status: PushStatus, version: UInt64, staleness: UInt64) = shard.state.withLock { state in
            switch rule.decide(currentVersion: state.version, baseVersion: baseVersion) {
            case .apply:
                let staleness = StalenessRule.staleness(currentVersion: state.version, baseVersion: baseVersion)
                state.apply(gradient: gradient, lrScale: 1)
                return (.applied, state.version, staleness)
            case .applyScaled(let scale, let staleness):
                state.apply(gradient: gradient, lrScale: scale)
                return (.appliedScaled, state.version, staleness)
            case .drop(let staleness):
                return (.droppedStale, state.version, staleness)
            }
        }
        if outcome.status != .droppedStale {
            server.serverMetrics.observe(server.serverMetrics.applyTime, since: started)
        }
        if outcome.status == .droppedStale { shard.droppedStaleCount.wrappingAdd(1, ordering: .relaxed) }
        if outcome.status == .appliedScaled { shard.scaledStaleCount.wrappingAdd(1, ordering: .relaxed) }
        server.coordinator?.asyncPush(rank: rank, status: outcome.status)
        return outcome
    }

    /// BSP: holds the gradient in the shard for the pending step; the push that completes the step applies it.
    private func bspPush(
        coordinator: Coordinator, shard: Shard, prefix: PushPrefix, gradient: UnsafeBufferPointer<Float>,
        header: FrameHeader, session: Session
    ) throws(TransportError) {
        guard let rank = session.rank else {
            try session.replyError(.invalidState, "only a joined worker can push in bsp mode", to: header.requestID)
            return
        }
        let step = prefix.clock
        shard.state.withLock { $0.hold(step: step, rank: rank, gradient: gradient) }
        let (verdict, directives) = coordinator.bspPush(shard: shard.index, step: step, rank: rank)
        if case .rejected(let reason) = verdict {
            shard.state.withLock { $0.dropHeld(rank: rank) }
            try session.replyError(.invalidState, reason, to: header.requestID)
            return
        }
        server.carryOut(directives)
        if header.type == .pushPull {
            try pull(shard: shard.index, step: step + 1, session: session, requestID: header.requestID)
        } else {
            try session.connection.sendPushAck(
                PushAck(shard: prefix.shard, status: .accepted, version: shard.version, staleness: 0),
                requestID: header.requestID)
        }
    }

    // MARK: Exchange

    /// A worker's whole step (`exchange`): reads the flat gradient straight into the connection's buffer,
    /// validates all of it, gives every shard its slice as a push would (BSP: held; SSP/async: applied now),
    /// records the clock, waits until the weights of step `clock + 1` may be read, and answers with all of them
    /// in one frame.
    func exchange(_ header: FrameHeader, session: Session) throws(TransportError) {
        let connection = session.connection
        let requestID = header.requestID
        let payloadLength = Int(header.payloadLength)
        let fixed = try connection.readPayload(length: ExchangePrefix.fixedSize)
        var prefix: ExchangePrefix
        let shardCount: Int
        do {
            (prefix, shardCount) = try ExchangePrefix.decodeFixed(fixed, payloadLength: payloadLength)
        } catch {
            throw .wire(error)
        }
        let tail = try connection.readPayload(length: 8 * shardCount + 8)
        do {
            try prefix.decodeTail(tail, shardCount: shardCount)
            try ExchangePrefix.validate(prefix, payloadLength: payloadLength)
        } catch {
            throw .wire(error)
        }
        let floatBytes = payloadLength - prefix.size
        guard let model = currentModel() else {
            try connection.skipPayload(length: floatBytes)
            try session.replyError(.notRegistered, "exchange before any tensor was registered", to: requestID)
            return
        }
        // The server's own shards: all of them, or in a scale-out job its run of the layout.
        let elements = model.ownedElements
        guard shardCount == model.shards.count, Int(prefix.count) == elements.count else {
            try connection.skipPayload(length: floatBytes)
            try session.replyError(
                .lengthMismatch,
                "exchange carries \(shardCount) shards and \(prefix.count) floats but the server has "
                    + "\(model.shards.count) shards and \(elements.count) floats", to: requestID)
            return
        }
        let raw = try connection.readPayload(length: floatBytes)
        let gradient = UnsafeMutableBufferPointer(mutating: raw.bindMemory(to: Float.self))
        if !rules.allowNonFinite, let bad = firstNonFinite(UnsafeBufferPointer(gradient)) {
            try session.replyError(
                .nonFinite,
                "exchange gradient has a non-finite value (\(gradient[bad]) at element \(bad)); nothing was applied",
                to: requestID)
            return
        }
        let coordinator = server.coordinator
        let bsp = coordinator != nil && server.config.mode == .bsp
        if bsp && session.rank == nil {
            try session.replyError(.invalidState, "only a joined worker can push in bsp mode", to: requestID)
            return
        }
        if let joined = server.joinedShards.withLock({ $0 }) {
            try joinedExchange(
                joined, model: model, prefix: prefix, gradient: gradient, session: session, requestID: requestID)
            return
        }
        // Every shard's slice at once, on the connection's thread and the server's shard helpers.
        let shards = model.shards
        let rank = session.rank
        let baseVersions = prefix.baseVersions
        let step = prefix.clock
        let rejections = LockedValue<[String]>([])
        let base = elements.lowerBound
        server.shardWorkers.forEach(shards.count) { [self] index in
            let shard = shards[index]
            let slice = UnsafeMutableBufferPointer(
                rebasing: gradient[(shard.range.lowerBound - base)..<(shard.range.upperBound - base)])
            shard.pushCount.wrappingAdd(1, ordering: .relaxed)
            if bsp, let coordinator, let rank {
                shard.state.withLock { $0.hold(step: step, rank: rank, gradient: UnsafeBufferPointer(slice)) }
                let (verdict, directives) = coordinator.bspPush(shard: shard.index, step: step, rank: rank)
                if case .rejected(let reason) = verdict {
                    shard.state.withLock { $0.dropHeld(rank: rank) }
                    rejections.withLock { $0.append(reason) }
                    return
                }
                server.carryOut(directives)
            } else {
                _ = applyNow(shard: shard, baseVersion: baseVersions[index], gradient: slice, rank: rank)
            }
        }
        if let reason = rejections.withLock({ $0.first }) {
            try session.replyError(.invalidState, reason, to: requestID)
            return
        }
        var jobState = JobState.running
        var minClock = prefix.clock + 1
        if let coordinator, let rank = session.rank {
            let (state, slowest, directives) = coordinator.clock(
                rank: rank, clock: prefix.clock + 1, loss: prefix.loss, samples: prefix.samples)
            server.carryOut(directives)
            jobState = state
            minClock = slowest
        }
        guard try waitUntilReadable(step: prefix.clock + 1, session: session, requestID: requestID) else { return }
        try sendOwnedWeights(model, jobState: jobState, minClock: minClock, session: session, requestID: requestID)
    }

    /// Answers an exchange with every owned shard's weights and versions in one frame (copied under each shard's
    /// lock on the shard helpers, sent after every lock is released).
    private func sendOwnedWeights(
        _ model: ShardedModel, jobState: JobState, minClock: UInt64, session: Session, requestID: UInt64
    ) throws(TransportError) {
        let shards = model.shards
        let elements = model.ownedElements
        let base = elements.lowerBound
        if session.sendBuffer.count != elements.count {
            session.sendBuffer = [Float](repeating: 0, count: elements.count)
        }
        let versions = LockedValue([UInt64](repeating: 0, count: shards.count))
        session.sendBuffer.withUnsafeMutableBufferPointer { buffer in
            let destination = buffer  // forEach returns only after every copy into it finished
            server.shardWorkers.forEach(shards.count) { index in
                let shard = shards[index]
                let local = (shard.range.lowerBound - base)..<(shard.range.upperBound - base)
                let version = shard.state.withLock { state in
                    state.weights.withUnsafeBufferPointer {
                        _ = UnsafeMutableBufferPointer(rebasing: destination[local]).update(fromContentsOf: $0)
                    }
                    return state.version
                }
                versions.withLock { $0[index] = version }
                shard.pullCount.wrappingAdd(1, ordering: .relaxed)
            }
        }
        let replyPrefix = ExchangeReplyPrefix(
            jobState: jobState, minClock: minClock, versions: versions.withLock { $0 }, count: UInt32(elements.count))
        try session.sendBuffer.withUnsafeBufferPointer { (floats) throws(TransportError) in
            try session.connection.sendExchangeReply(prefix: replyPrefix, floats: floats, requestID: requestID)
        }
    }

    /// A joined server's exchange. BSP: holds each shard's slice for the step under the worker's rank, applies
    /// whatever the coordinator has released, and answers once every owned shard applied the step. SSP/async:
    /// applies at once under the stale-gradient rule and answers (the coordinator's exchange enforces the bound).
    private func joinedExchange(
        _ joined: JoinedShards, model: ShardedModel, prefix: ExchangePrefix,
        gradient: UnsafeMutableBufferPointer<Float>,
        session: Session, requestID: UInt64
    ) throws(TransportError) {
        let shards = model.shards
        let base = model.ownedElements.lowerBound
        let rank = Int(prefix.rank)
        let step = prefix.clock
        if joined.part.mode == .bsp {
            guard rank < joined.part.workers else {
                try session.replyError(
                    .invalidArgument, "rank \(rank) is not a rank of this job (K = \(joined.part.workers))",
                    to: requestID)
                return
            }
            server.shardWorkers.forEach(shards.count) { index in
                let shard = shards[index]
                let slice = UnsafeBufferPointer(
                    rebasing: gradient[(shard.range.lowerBound - base)..<(shard.range.upperBound - base)])
                shard.pushCount.wrappingAdd(1, ordering: .relaxed)
                shard.state.withLock { $0.hold(step: step, rank: rank, gradient: slice) }
                joined.applyReady(shard, position: index)
            }
            let connection = session.connection
            let ready = joined.waitForCompleted(
                step + 1, deadline: MonotonicClock.deadline(afterSeconds: server.config.waitTimeoutSeconds),
                peerGone: { connection.peerHasHungUp() })
            guard ready else {
                if server.stopped.load(ordering: .acquiring) {
                    try session.replyError(.shuttingDown, "the server is shutting down", to: requestID)
                } else {
                    try session.replyError(
                        .timeout, "timed out waiting: step \(step) is not released on this server yet; retry",
                        to: requestID)
                }
                return
            }
        } else {
            let baseVersions = prefix.baseVersions
            server.shardWorkers.forEach(shards.count) { [self] index in
                let shard = shards[index]
                let slice = UnsafeMutableBufferPointer(
                    rebasing: gradient[(shard.range.lowerBound - base)..<(shard.range.upperBound - base)])
                shard.pushCount.wrappingAdd(1, ordering: .relaxed)
                _ = applyNow(shard: shard, baseVersion: baseVersions[index], gradient: slice, rank: nil)
            }
            if joined.part.mode == .ssp {
                let connection = session.connection
                guard
                    joined.waitForStaleness(
                        rank: rank, clock: step + 1,
                        deadline: MonotonicClock.deadline(afterSeconds: server.config.waitTimeoutSeconds),
                        peerGone: { connection.peerHasHungUp() })
                else {
                    try session.replyError(
                        .timeout, "timed out waiting: step \(step + 1) must wait for the slowest worker; retry",
                        to: requestID)
                    return
                }
            }
        }
        try sendOwnedWeights(model, jobState: .running, minClock: step + 1, session: session, requestID: requestID)
    }

    // MARK: Pull

    /// Answers with the shard's weights once the mode's gate lets a worker at `step` read them.
    func pull(shard shardIndex: Int, step: UInt64, session: Session, requestID: UInt64) throws(TransportError) {
        guard let model = currentModel() else {
            try session.replyError(.notRegistered, "pull before any tensor was registered", to: requestID)
            return
        }
        guard let shard = model.shard(shardIndex) else {
            try session.replyError(.unknownShard, Self.notOwned(shardIndex, model), to: requestID)
            return
        }
        guard try waitUntilReadable(step: step, session: session, requestID: requestID) else { return }
        try sendShard(shard, session: session, requestID: requestID)
    }

    /// The error text for a shard this server does not serve.
    private static func notOwned(_ index: Int, _ model: ShardedModel) -> String {
        model.ownsAll
            ? "shard \(index) does not exist (the server has \(model.shards.count) shards)"
            : "shard \(index) is not served here (this server owns shards \(model.owned.lowerBound)..<"
                + "\(model.owned.upperBound) of \(model.layout.shardCount))"
    }

    /// The registered model; a joined server that has not installed its part yet waits for it (at most
    /// `--wait-timeout`), since workers may reach it first.
    private func currentModel() -> ShardedModel? {
        if let model = server.store.current { return model }
        guard server.config.join != nil else { return nil }
        server.joinedShards.wait(
            until: MonotonicClock.deadline(afterSeconds: server.config.waitTimeoutSeconds), while: { $0 == nil })
        return server.store.current
    }

    /// The rules this server's shards follow: its own flags, or on a joined server the coordinator's.
    private var rules: ShardRules {
        if let joined = server.joinedShards.withLock({ $0 }) {
            return ShardRules(
                mode: joined.part.mode, stalenessRule: joined.stalenessRule, allowNonFinite: joined.part.allowNonFinite)
        }
        return ShardRules(
            mode: server.coordinator == nil ? nil : server.config.mode, stalenessRule: server.config.stalenessRule,
            allowNonFinite: server.config.allowNonFinite)
    }

    /// Waits until the mode's gate lets a worker at `step` read the weights; false (after an error reply) when
    /// the wait timed out or the server is stopping.
    private func waitUntilReadable(step: UInt64, session: Session, requestID: UInt64) throws(TransportError) -> Bool {
        if let joined = server.joinedShards.withLock({ $0 }), joined.part.mode == .bsp, session.role == .worker {
            let connection = session.connection
            guard
                joined.waitForCompleted(
                    step, deadline: MonotonicClock.deadline(afterSeconds: server.config.waitTimeoutSeconds),
                    peerGone: { connection.peerHasHungUp() })
            else {
                try session.replyError(
                    .timeout, "timed out waiting: step \(step) is not applied here yet; retry", to: requestID)
                return false
            }
            return true
        }
        guard let coordinator = server.coordinator, session.role == .worker else { return true }
        let started = MonotonicClock.nanoseconds()
        let gate = coordinator.waitForStep(step, rank: session.rank, connection: session.connection)
        server.serverMetrics.observe(server.serverMetrics.barrierWait, since: started)
        switch gate {
        case .ready:
            return true
        case .timedOut(let why):
            try session.replyError(.timeout, "timed out waiting: \(why); retry", to: requestID)
            return false
        case .stopping:
            try session.replyError(.shuttingDown, "the server is shutting down", to: requestID)
            return false
        case .peerGone:
            throw .closed
        }
    }

    /// Copies the shard under its lock into the session's buffer, then sends it after the lock is released.
    private func sendShard(_ shard: Shard, session: Session, requestID: UInt64) throws(TransportError) {
        if session.sendBuffer.count != shard.elementCount {
            session.sendBuffer = [Float](repeating: 0, count: shard.elementCount)
        }
        let version = session.sendBuffer.withUnsafeMutableBufferPointer { destination in
            shard.state.withLock { state in
                state.weights.withUnsafeBufferPointer { _ = destination.update(fromContentsOf: $0) }
                return state.version
            }
        }
        shard.pullCount.wrappingAdd(1, ordering: .relaxed)
        let prefix = PullReplyPrefix(shard: UInt32(shard.index), count: UInt32(shard.elementCount), version: version)
        try session.sendBuffer.withUnsafeBufferPointer { (floats) throws(TransportError) in
            try session.connection.sendPullReply(prefix: prefix, floats: floats, requestID: requestID)
        }
    }
}

/// The rules a server's shards follow for pushes: the consistency mode (nil for a plain store), the
/// stale-gradient rule and whether non-finite gradients are refused.
struct ShardRules {
    var mode: ConsistencyMode?
    var stalenessRule: StalenessRule
    var allowNonFinite: Bool
}

/// The index of the first NaN or infinity, if any.
func firstNonFinite(_ values: UnsafeBufferPointer<Float>) -> Int? {
    // Summing first is one fast pass; only a non-finite sum needs the element-wise search.
    var sum: Float = 0
    for value in values { sum += value * 0 }
    if sum.isFinite { return nil }
    return values.firstIndex { !$0.isFinite }
}
