import PSCoordinator
import PSMath
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
        let rules = self.rules
        guard
            case .accepted(let bound) = try checkGradient(
                gradient, named: "gradient for shard \(shardIndex)", rules: rules, session: session,
                requestID: requestID)
        else { return }
        shard.pushCount.wrappingAdd(1, ordering: .relaxed)
        if rules.mode == .bsp, server.coordinator == nil {
            try session.replyError(
                .invalidState, "a joined server takes BSP gradients in exchange requests only", to: requestID)
            return
        }
        if let coordinator = server.coordinator, server.config.mode == .bsp {
            try bspPush(
                coordinator: coordinator, shard: shard, prefix: prefix, gradient: UnsafeBufferPointer(gradient),
                bound: bound ?? .infinity, header: header, session: session)
        } else {
            try asyncPush(
                shard: shard, prefix: prefix, gradient: gradient, bound: bound, rule: rules.stalenessRule,
                header: header, session: session)
        }
    }

    /// SSP/async (and a plain store): applies now, under the shard's lock, with the stale-gradient rule.
    private func asyncPush(
        shard: Shard, prefix: PushPrefix, gradient: UnsafeMutableBufferPointer<Float>, bound: Double?,
        rule: StalenessRule, header: FrameHeader, session: Session
    ) throws(TransportError) {
        guard
            let outcome = applyNow(
                shard: shard, baseVersion: prefix.baseVersion, gradient: gradient, bound: bound, rule: rule,
                rank: session.rank)
        else {
            try session.replyError(
                .nonFinite, Self.refusedMessage(shards: [shard.index], version: shard.version), to: header.requestID)
            return
        }
        if header.type == .pushPull, outcome.status != .droppedStale {
            try sendShard(shard, session: session, requestID: header.requestID)
        } else {
            try session.connection.sendPushAck(
                PushAck(
                    shard: prefix.shard, status: outcome.status, version: outcome.version,
                    staleness: outcome.staleness), requestID: header.requestID)
        }
    }

    /// The error message of an update refused because it would have made weights non-finite.
    static func refusedMessage(shards: [Int], version: UInt64? = nil) -> String {
        let which = shards.count == 1 ? "shard \(shards[0])" : "shards \(shards)"
        let at = version.map { " (kept at version \($0))" } ?? ""
        return "update refused: it would make weights of \(which) NaN or infinite; nothing was applied\(at) "
            + "(psserver --allow-nonfinite accepts such updates)"
    }

    /// SSP/async: applies `gradient` to `shard` under its lock with the stale-gradient rule, and counts it; nil
    /// (nothing applied, counted as refused) when the update would make a weight non-finite. `bound` is at least
    /// the gradient's largest `|g|`; nil turns that check off.
    private func applyNow(
        shard: Shard, baseVersion: UInt64, gradient: UnsafeMutableBufferPointer<Float>, bound: Double?,
        rule: StalenessRule, rank: Int?
    ) -> (status: PushStatus, version: UInt64, staleness: UInt64)? {
        let started = MonotonicClock.nanoseconds()
        let decided = shard.state.withLock { state in
            Self.decideAndApply(&state, rule: rule, baseVersion: baseVersion, gradient: gradient, bound: bound)
        }
        return account(shard: shard, outcome: decided, rank: rank, started: started)
    }

    /// The stale-gradient rule and the checked update for one shard whose lock the caller holds; nil when refused.
    private static func decideAndApply(
        _ state: inout ShardState, rule: StalenessRule, baseVersion: UInt64,
        gradient: UnsafeMutableBufferPointer<Float>,
        bound: Double?
    ) -> (status: PushStatus, version: UInt64, staleness: UInt64)? {
        switch rule.decide(currentVersion: state.version, baseVersion: baseVersion) {
        case .apply:
            let staleness = StalenessRule.staleness(currentVersion: state.version, baseVersion: baseVersion)
            guard state.applyChecked(gradient: gradient, gradientBound: bound, lrScale: 1) else { return nil }
            return (.applied, state.version, staleness)
        case .applyScaled(let scale, let staleness):
            guard state.applyChecked(gradient: gradient, gradientBound: bound, lrScale: scale) else { return nil }
            return (.appliedScaled, state.version, staleness)
        case .drop(let staleness):
            return (.droppedStale, state.version, staleness)
        }
    }

    /// Counts one shard's SSP/async outcome (nil: refused) in the shard's, the server's and the coordinator's
    /// counters.
    private func account(
        shard: Shard, outcome decided: (status: PushStatus, version: UInt64, staleness: UInt64)?, rank: Int?,
        started: UInt64
    ) -> (status: PushStatus, version: UInt64, staleness: UInt64)? {
        guard let outcome = decided else {
            shard.refusedNonFiniteCount.wrappingAdd(1, ordering: .relaxed)
            return nil
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
        bound: Double, header: FrameHeader, session: Session
    ) throws(TransportError) {
        guard let rank = session.rank else {
            try session.replyError(.invalidState, "only a joined worker can push in bsp mode", to: header.requestID)
            return
        }
        let step = prefix.clock
        shard.state.withLock { $0.hold(step: step, rank: rank, gradient: gradient, bound: bound) }
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

    /// A worker's whole step (`exchange`): reads the flat gradient (BSP on the coordinator: each shard's slice
    /// into a slab of the session's that becomes the held gradient; otherwise into the connection's buffer),
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
        server.serverMetrics.exchangeGradientBytes.wrappingAdd(UInt64(floatBytes), ordering: .relaxed)
        let rules = self.rules
        let coordinator = server.coordinator
        let bsp = coordinator != nil && server.config.mode == .bsp
        let joined = server.joinedShards.withLock { $0 }
        // BSP on the coordinator, float32: each shard's slice goes straight from the socket into a slab of this
        // session's that becomes the shard's held gradient by a swap, so the server copies no gradient. Otherwise
        // the gradient is read (or decompressed) into one buffer and each shard's slice is taken from it.
        let readsIntoSlabs = bsp && joined == nil && prefix.encoding == .none && session.rank != nil
        var gradient = UnsafeMutableBufferPointer<Float>(start: nil, count: 0)
        let bound: Double?
        if readsIntoSlabs {
            try session.readGradientSlabs(sizes: model.shards.map { $0.elementCount })
            var largest = 0.0
            var offset = 0
            for index in session.gradientSlabs.indices {
                let check = try session.gradientSlabs[index].withUnsafeMutableBufferPointer {
                    (slab) throws(TransportError) in
                    try checkGradient(
                        slab, named: "exchange gradient", elementOffset: offset, rules: rules, session: session,
                        requestID: requestID)
                }
                guard case .accepted(let slabBound) = check else { return }
                largest = max(largest, slabBound ?? .infinity)
                offset += session.gradientSlabs[index].count
            }
            bound = rules.allowNonFinite ? nil : largest
        } else {
            let raw = try connection.readPayload(length: floatBytes)
            if prefix.encoding == .none {
                gradient = UnsafeMutableBufferPointer(mutating: raw.bindMemory(to: Float.self))
            } else {
                // Decompressed into the session's own buffer; from here on the step is an ordinary float32 one.
                guard
                    let dense = try decompress(
                        raw, prefix: prefix, model: model, session: session, requestID: requestID)
                else { return }
                gradient = dense
            }
            guard
                case .accepted(let checkedBound) = try checkGradient(
                    gradient, named: "exchange gradient", rules: rules, session: session, requestID: requestID)
            else { return }
            bound = checkedBound
        }
        if bsp && session.rank == nil {
            try session.replyError(.invalidState, "only a joined worker can push in bsp mode", to: requestID)
            return
        }
        if let joined {
            try joinedExchange(
                joined, model: model, prefix: prefix, gradient: gradient, bound: bound, session: session,
                requestID: requestID)
            return
        }
        // Every shard's slice at once, on the connection's thread and the server's shard helpers.
        let shards = model.shards
        let rank = session.rank
        let baseVersions = prefix.baseVersions
        let step = prefix.clock
        // What the per-shard work leaves for after it (it may run on several threads): refusals, and the BSP
        // applies to share out.
        let outcome = LockedValue(PerShardOutcome())
        let base = elements.lowerBound
        var appliedAtomically = false
        if !bsp, let bound,
            !shards.allSatisfy({ shard in shard.state.withLock { $0.provesFinite(gradientBound: bound) } })
        {
            // Some shard's update is not provably finite: all of them at once under every shard lock, or none.
            let refused = applyAllOrNothing(
                shards[...], gradient: gradient, base: base, bound: bound, baseVersions: baseVersions,
                rule: rules.stalenessRule, rank: rank)
            if !refused.isEmpty {
                try session.replyError(.nonFinite, Self.refusedMessage(shards: refused), to: requestID)
                return
            }
            appliedAtomically = true
        }
        // BSP with shards small enough to run here one after another: the applies this push completes are shared
        // with the connection threads waiting on the step rather than run inside the loop (`shareApplies`).
        let sharesApplies = bsp && server.shardWorkers.runsInline(shards.count, elements: elements.count)
        // The slabs' distinct elements are swapped from several threads while this thread waits in `forEach`.
        session.gradientSlabs.withUnsafeMutableBufferPointer { lent in
            let slabs = lent  // the buffer itself, not the inout binding, goes into the helpers' closure
            server.shardWorkers.forEach(shards.count, elements: elements.count) { [self] index in
                let shard = shards[index]
                // The shard's part of the one-buffer gradient; never evaluated on the slab path (`gradient` empty).
                var slice: UnsafeMutableBufferPointer<Float> {
                    UnsafeMutableBufferPointer(
                        rebasing: gradient[(shard.range.lowerBound - base)..<(shard.range.upperBound - base)])
                }
                shard.pushCount.wrappingAdd(1, ordering: .relaxed)
                if bsp, let coordinator, let rank {
                    shard.state.withLock {
                        if readsIntoSlabs {
                            $0.hold(step: step, rank: rank, swapping: &slabs[index], bound: bound ?? .infinity)
                        } else {
                            $0.hold(
                                step: step, rank: rank, gradient: UnsafeBufferPointer(slice), bound: bound ?? .infinity)
                        }
                    }
                    let (verdict, directives) = coordinator.bspPush(shard: shard.index, step: step, rank: rank)
                    if case .rejected(let reason) = verdict {
                        shard.state.withLock { $0.dropHeld(rank: rank) }
                        outcome.withLock { $0.rejections.append((.invalidState, reason)) }
                        return
                    }
                    guard sharesApplies else {
                        server.carryOut(directives)
                        return
                    }
                    for directive in directives {
                        if case .apply = directive {
                            outcome.withLock { $0.applies.append(directive) }
                        } else {
                            server.carryOut([directive])
                        }
                    }
                } else if !appliedAtomically,
                    applyNow(
                        shard: shard, baseVersion: baseVersions[index], gradient: slice, bound: bound,
                        rule: rules.stalenessRule, rank: rank) == nil
                {
                    // Proved finite a moment ago: only a concurrent push to this very shard can have changed that.
                    outcome.withLock {
                        $0.rejections.append((.nonFinite, Self.refusedMessage(shards: [shard.index])))
                    }
                }
            }
        }
        let (applies, rejection) = outcome.withLock { ($0.applies, $0.rejections.first) }
        if let coordinator, !applies.isEmpty {
            coordinator.shareApplies(applies)
            while let apply = coordinator.claimSharedApply() { server.carryOut([apply]) }
        }
        if let rejection {
            try session.replyError(rejection.code, rejection.reason, to: requestID)
            return
        }
        var jobState = JobState.running
        var minClock = prefix.clock + 1
        var records: [JobDirective] = []
        // The step records this clock completes (a metrics line: JSON text and a file write) are carried out once
        // the reply is on its way, whatever way this request ends: the worker need not wait for them.
        defer { server.carryOut(records) }
        if let coordinator, let rank = session.rank {
            let (state, slowest, directives) = coordinator.clock(
                rank: rank, clock: prefix.clock + 1, loss: prefix.loss, samples: prefix.samples)
            records = directives
            jobState = state
            minClock = slowest
        }
        guard try waitUntilReadable(step: prefix.clock + 1, session: session, requestID: requestID) else { return }
        try sendOwnedWeights(
            model, jobState: jobState, minClock: minClock, encoding: prefix.replyEncoding, session: session,
            requestID: requestID, weightsStayUntilNextStep: bsp)
    }

    /// What an exchange's per-shard work hands back to the connection's thread.
    private struct PerShardOutcome {
        /// Refusals, each an error reply's code and reason; the first is sent.
        var rejections: [(code: ErrorCode, reason: String)] = []
        /// BSP: the `.apply` directives the push completed, to share with the threads waiting on the step.
        var applies: [JobDirective] = []
    }

    /// Decodes a compressed exchange body into the session's decompression buffer, shard by shard as the model's
    /// owned shards lay it out; nil (after an `invalidArgument` error reply, nothing applied) when the body is
    /// malformed: an index out of its shard or not ascending, a wrong length, a k larger than its shard.
    private func decompress(
        _ body: UnsafeRawBufferPointer, prefix: ExchangePrefix, model: ShardedModel, session: Session,
        requestID: UInt64
    ) throws(TransportError) -> UnsafeMutableBufferPointer<Float>? {
        let dense = session.decompressionBuffer(count: Int(prefix.count))
        let shardSizes = model.shards.map { $0.elementCount }
        do {
            try GradientCodec.decode(prefix.encoding, body: body, shardSizes: shardSizes, into: dense)
        } catch {
            try session.replyError(.invalidArgument, "refused, nothing applied: \(error)", to: requestID)
            return nil
        }
        return dense
    }

    /// Answers an exchange with every owned shard's weights and versions in one frame (copied under each shard's
    /// lock on the shard helpers, sent after every lock is released). In BSP (`weightsStayUntilNextStep`) float32
    /// weights go out from the shards' own arrays instead (`sendWeightsInPlace`).
    ///
    /// With `encoding` fp16 or bf16 (the exchange asked for it: `psserver --compress-pulls`) the weights are
    /// rounded into the session's byte buffer after the copy and travel at 2 bytes each.
    private func sendOwnedWeights(
        _ model: ShardedModel, jobState: JobState, minClock: UInt64, encoding: GradientEncoding, session: Session,
        requestID: UInt64, weightsStayUntilNextStep: Bool
    ) throws(TransportError) {
        let shards = model.shards
        let elements = model.ownedElements
        if encoding == .none, weightsStayUntilNextStep {
            try sendWeightsInPlace(
                shards, count: elements.count, jobState: jobState, minClock: minClock, session: session,
                requestID: requestID)
            return
        }
        let base = elements.lowerBound
        if session.sendBuffer.count != elements.count {
            session.sendBuffer = [Float](repeating: 0, count: elements.count)
        }
        let versions = LockedValue([UInt64](repeating: 0, count: shards.count))
        session.sendBuffer.withUnsafeMutableBufferPointer { buffer in
            let destination = buffer  // forEach returns only after every copy into it finished
            server.shardWorkers.forEach(shards.count, elements: elements.count) { index in
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
            jobState: jobState, minClock: minClock, versions: versions.withLock { $0 }, count: UInt32(elements.count),
            encoding: encoding)
        if encoding != .none {
            if session.sendBytes.count != 2 * elements.count {
                session.sendBytes = [UInt8](repeating: 0, count: 2 * elements.count)
            }
            session.sendBuffer.withUnsafeBufferPointer { floats in
                session.sendBytes.withUnsafeMutableBytes { GradientCodec.encodeHalf(encoding, floats, into: $0) }
            }
            server.serverMetrics.exchangeWeightBytes.wrappingAdd(UInt64(2 * elements.count), ordering: .relaxed)
            try session.sendBytes.withUnsafeBufferPointer { (bytes) throws(TransportError) in
                try session.connection.sendExchangeReply(
                    prefix: replyPrefix, body: UnsafeRawBufferPointer(bytes), requestID: requestID)
            }
            return
        }
        server.serverMetrics.exchangeWeightBytes.wrappingAdd(UInt64(4 * elements.count), ordering: .relaxed)
        try session.sendBuffer.withUnsafeBufferPointer { (floats) throws(TransportError) in
            try session.connection.sendExchangeReply(prefix: replyPrefix, floats: floats, requestID: requestID)
        }
    }

    /// Answers an exchange with the shards' weight arrays themselves: each is retained under its lock (with its
    /// version) and sent from where it lies after the lock is released, with no copy. Safe in any mode: the arrays
    /// are copy-on-write, so an update that comes while a reply still holds one copies the shard first and the
    /// reply keeps the weights it was given. Used in BSP, where no update comes before every worker has sent its
    /// next gradient (so after this reply has gone), and the copy never happens.
    private func sendWeightsInPlace(
        _ shards: [Shard], count: Int, jobState: JobState, minClock: UInt64, session: Session, requestID: UInt64
    ) throws(TransportError) {
        var arrays: [[Float]] = []
        var versions: [UInt64] = []
        arrays.reserveCapacity(shards.count)
        versions.reserveCapacity(shards.count)
        for shard in shards {
            shard.state.withLock { state in
                arrays.append(state.weights)
                versions.append(state.version)
            }
            shard.pullCount.wrappingAdd(1, ordering: .relaxed)
        }
        let replyPrefix = ExchangeReplyPrefix(
            jobState: jobState, minClock: minClock, versions: versions, count: UInt32(count), encoding: .none)
        server.serverMetrics.exchangeWeightBytes.wrappingAdd(UInt64(4 * count), ordering: .relaxed)
        try arrays.withUnsafeBufferPointers { (parts) throws(TransportError) in
            try session.connection.sendExchangeReply(prefix: replyPrefix, parts: parts, requestID: requestID)
        }
    }

    /// A joined server's exchange. BSP: holds each shard's slice for the step under the worker's rank, applies
    /// whatever the coordinator has released, and answers once every owned shard applied the step. SSP/async:
    /// applies at once under the stale-gradient rule and answers (the coordinator's exchange enforces the bound).
    private func joinedExchange(
        _ joined: JoinedShards, model: ShardedModel, prefix: ExchangePrefix,
        gradient: UnsafeMutableBufferPointer<Float>, bound: Double?,
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
            server.shardWorkers.forEach(shards.count, elements: gradient.count) { index in
                let shard = shards[index]
                let slice = UnsafeBufferPointer(
                    rebasing: gradient[(shard.range.lowerBound - base)..<(shard.range.upperBound - base)])
                shard.pushCount.wrappingAdd(1, ordering: .relaxed)
                shard.state.withLock { $0.hold(step: step, rank: rank, gradient: slice, bound: bound ?? .infinity) }
                if joined.applyReady(shard, position: index) == .refusedNonFinite {
                    shard.refusedNonFiniteCount.wrappingAdd(1, ordering: .relaxed)
                    failJoinedStep(step: step, shard: shard.index)
                }
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
            server.shardWorkers.forEach(shards.count, elements: gradient.count) { [self] index in
                let shard = shards[index]
                let slice = UnsafeMutableBufferPointer(
                    rebasing: gradient[(shard.range.lowerBound - base)..<(shard.range.upperBound - base)])
                shard.pushCount.wrappingAdd(1, ordering: .relaxed)
                _ = applyNow(
                    shard: shard, baseVersion: baseVersions[index], gradient: slice, bound: bound,
                    rule: joined.stalenessRule, rank: nil)
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
        try sendOwnedWeights(
            model, jobState: .running, minClock: step + 1, encoding: prefix.replyEncoding, session: session,
            requestID: requestID, weightsStayUntilNextStep: joined.part.mode == .bsp)
    }

    /// SSP/async `exchange` whose update some shard could not prove finite: takes every shard's lock in shard
    /// order (as `ShardStore.snapshot` does), applies each slice with the stale-gradient rule, and if any shard
    /// refuses puts every shard already updated back as it was (copy-on-write backups). Returns the refused
    /// shards: empty when every slice was applied (or dropped as stale), and counted like `applyNow`.
    private func applyAllOrNothing(
        _ shards: ArraySlice<Shard>, gradient: UnsafeMutableBufferPointer<Float>, base: Int, bound: Double,
        baseVersions: [UInt64], rule: StalenessRule, rank: Int?
    ) -> [Int] {
        let started = MonotonicClock.nanoseconds()
        var outcomes: [(status: PushStatus, version: UInt64, staleness: UInt64)] = []
        let refused = Self.lockAndApply(
            shards, gradient: gradient, base: base, bound: bound, baseVersions: baseVersions, rule: rule,
            outcomes: &outcomes)
        if let refused {
            shards[refused].refusedNonFiniteCount.wrappingAdd(1, ordering: .relaxed)
            return [shards[refused].index]
        }
        for (shard, outcome) in zip(shards, outcomes) {
            _ = account(shard: shard, outcome: outcome, rank: rank, started: started)
        }
        return []
    }

    /// Applies the first shard's slice under its lock, then recurses into the rest with that lock still held;
    /// on a refusal further in, restores this shard too. Returns the position of the refusing shard, if any.
    private static func lockAndApply(
        _ shards: ArraySlice<Shard>, gradient: UnsafeMutableBufferPointer<Float>, base: Int, bound: Double,
        baseVersions: [UInt64], rule: StalenessRule,
        outcomes: inout [(status: PushStatus, version: UInt64, staleness: UInt64)]
    ) -> Int? {
        guard let shard = shards.first else { return nil }
        return shard.state.withLock { state -> Int? in
            let backup = state
            let slice = UnsafeMutableBufferPointer(
                rebasing: gradient[(shard.range.lowerBound - base)..<(shard.range.upperBound - base)])
            guard
                let outcome = decideAndApply(
                    &state, rule: rule, baseVersion: baseVersions[shards.startIndex], gradient: slice, bound: bound)
            else { return shards.startIndex }
            outcomes.append(outcome)
            if let refused = lockAndApply(
                shards.dropFirst(), gradient: gradient, base: base, bound: bound, baseVersions: baseVersions,
                rule: rule,
                outcomes: &outcomes)
            {
                state = backup
                return refused
            }
            return nil
        }
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

    /// A joined server refused a BSP step whose update would make weights non-finite: the step can never be
    /// applied here, so the server stops with exit code 1 naming it (the coordinator then sees it silent and ends
    /// the job after `--server-timeout`, with the last checkpoint intact).
    func failJoinedStep(step: UInt64, shard: Int) {
        let reason =
            "step \(step) refused on shard \(shard): its update would make weights NaN or infinite "
            + "(psserver --allow-nonfinite accepts such updates)"
        server.log.error("job-failed", ["reason": reason])
        server.stop(exitCode: 1, reason: reason)
    }

    /// What the gradient check decided.
    private enum GradientCheck {
        /// Go on; `bound` is at least the gradient's largest `|g|` (nil: non-finite values are allowed).
        case accepted(bound: Double?)
        /// A NaN or infinity was found and answered with an error frame.
        case refused
    }

    /// Refuses a gradient holding a NaN or infinity (unless `--allow-nonfinite`) with an error frame naming the
    /// first bad element; otherwise returns the bound the update's finiteness proof uses.
    private func checkGradient(
        _ gradient: UnsafeMutableBufferPointer<Float>, named what: @autoclosure () -> String, elementOffset: Int = 0,
        rules: ShardRules, session: Session, requestID: UInt64
    ) throws(TransportError) -> GradientCheck {
        guard !rules.allowNonFinite else { return .accepted(bound: nil) }
        let check = checkFinite(UnsafeBufferPointer(gradient))
        guard let bad = check.firstNonFinite else { return .accepted(bound: check.bound) }
        try session.replyError(
            .nonFinite,
            "\(what()) has a non-finite value (\(gradient[bad]) at element \(elementOffset + bad)); nothing was applied",
            to: requestID)
        return .refused
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
    func waitUntilReadable(step: UInt64, session: Session, requestID: UInt64) throws(TransportError) -> Bool {
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
        let gate = coordinator.waitForStep(step, rank: session.rank, connection: session.connection) { [server] in
            server.carryOut([$0])
            server.serverMetrics.sharedApplies.wrappingAdd(1, ordering: .relaxed)
        }
        server.serverMetrics.observe(server.serverMetrics.barrierWait, since: started)
        switch gate {
        case .ready:
            return true
        case .timedOut(let why):
            try session.replyError(.timeout, "timed out waiting: \(why); retry", to: requestID)
            return false
        case .stopping:
            if let reason = server.failureReason.withLock({ $0 }) {
                try session.replyError(.nonFinite, "the job failed: \(reason)", to: requestID)
            } else {
                try session.replyError(.shuttingDown, "the server is shutting down", to: requestID)
            }
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

/// The index of the first NaN or infinity, if any; otherwise the largest `|value|`, which bounds the gradient for
/// the check that an update keeps every weight finite (`ShardState.applyChecked`).
func checkFinite(_ values: UnsafeBufferPointer<Float>) -> (firstNonFinite: Int?, bound: Double) {
    // One fast pass; only a non-finite result needs the element-wise search.
    let bound = MagnitudeBounds.maxMagnitude(values)
    if bound.isFinite { return (nil, bound) }
    return (values.firstIndex { !$0.isFinite }, bound)
}
