import PSCoordinator
import PSLog
import PSPosix
import PSTransport
import PSWire

/// The coordinator's placement step and its answers to joined servers' `serverCall`s (proto-docs/protocol.md,
/// "serverCall"): the model part each joined server serves, the numbered decisions (BSP releases, snapshots, the
/// end of the job) and the snapshot parts they hand in.
struct ServerLinkService {
    let server: ParameterServer

    /// Once every server registered: lays the model out over every server's shards, keeps the coordinator's own
    /// (the first `--shards`) and keeps the whole model's values for the joined servers to fetch their parts from.
    /// Runs once; later calls return the placement.
    static func completePlacement(server: ParameterServer, coordinator: Coordinator) -> ServerPlacement {
        server.completedPlacement.withLock { done -> ServerPlacement in
            if let done { return done }
            let registered = coordinator.snapshot.placement(coordinatorAddress: "").map {
                ServerPlacement.Server(address: $0.address, shards: $0.shards)
            }
            let placement = ServerPlacement(servers: registered)
            do {
                if let whole = try server.store.relayout(to: placement.storePlacement(ofServer: 0)) {
                    server.initialModel.withLock { $0 = whole }
                }
            } catch {
                server.log.error("placement-failed", ["error": "\(error)"])
            }
            server.placementNanos.store(MonotonicClock.nanoseconds(), ordering: .relaxed)
            server.log.info(
                "placement",
                [
                    "servers": placement.servers.count, "total_shards": placement.totalShards,
                    "map": placement.servers.enumerated().map { "\($0.offset):\($0.element.shards)" }.joined(
                        separator: ","),
                ])
            done = placement
            return placement
        }
    }

    /// Answers one `serverCall` from a joined server.
    func handle(_ call: ServerCall, session: Session, requestID: UInt64) throws(TransportError) {
        guard session.role == .server, let links = server.links, server.coordinator != nil else {
            try session.replyError(
                .invalidState, "serverCall needs a hello with role server, to a coordinator of several servers",
                to: requestID)
            return
        }
        guard let request = LinkCoding.decode(LinkRequest.self, call.header) else {
            try session.replyError(.invalidArgument, "unreadable serverCall header: \(call.header)", to: requestID)
            return
        }
        switch request {
        case .fetchModel(let index):
            links.heard(server: index)
            try fetchModel(server: index, session: session, requestID: requestID)
        case .sync(let index, let after, let stats, let instance, let stuck):
            guard instance == links.instance else {
                try reply(
                    .reregister(reason: "this coordinator restarted since the model part was fetched"),
                    session: session, requestID: requestID)
                return
            }
            links.report(stats, server: index)
            if let stuck, server.rollingBack.withLock({ $0 }) == nil {
                let reason =
                    "joined server \(index) cannot apply released step \(stuck): a worker's gradient never arrived "
                    + "(its host crashed with it unsent?)"
                server.log.error("step-stuck", ["server": index, "step": stuck])
                _ = server.rollBack(because: reason, restartedServer: nil)
            }
            let entries = links.entries(after: after, server: index, seconds: 1)
            try reply(.entries(entries: entries), session: session, requestID: requestID)
        case .part(let index, let gather, let optimizerStep, let versions):
            links.heard(server: index)
            guard let placement = server.completedPlacement.withLock({ $0 }), index >= 1,
                index < placement.servers.count, let model = server.store.current
            else {
                try reply(
                    .refused(reason: "no placement, or no server \(index)"), session: session, requestID: requestID)
                return
            }
            let shards = placement.shards(ofServer: index)
            let elements = model.layout.range(ofShards: shards)
            let slotCount = server.config.optimizer.stateSlotNames.count
            guard call.floats.count == elements.count * (1 + slotCount), versions.count == shards.count else {
                try reply(
                    .refused(
                        reason:
                            "part of server \(index) carries \(call.floats.count) floats and \(versions.count) versions; "
                            + "expected \(elements.count * (1 + slotCount)) and \(shards.count)"),
                    session: session, requestID: requestID)
                return
            }
            let (weights, slots) = PartFloats.split(call.floats, slotCount: slotCount)!  // the length was checked
            let part = PartSnapshot(
                shards: shards, elements: elements, weights: Array(weights), optimizerSlots: slots.map { Array($0) },
                optimizerStep: optimizerStep, versions: versions)
            let taken = links.receive(part: part, server: index, gather: gather)
            try reply(
                taken ? .accepted : .refused(reason: "snapshot \(gather) is no longer gathered"), session: session,
                requestID: requestID)
        }
    }

    private func fetchModel(server index: Int, session: Session, requestID: UInt64) throws(TransportError) {
        let config = server.config
        guard let placement = server.completedPlacement.withLock({ $0 }), index >= 1, index < placement.servers.count
        else {
            try reply(.notReady(reason: "the placement is not complete"), session: session, requestID: requestID)
            return
        }
        guard let whole = server.initialModel.withLock({ $0 }) else {
            try reply(.notReady(reason: "no model is registered yet"), session: session, requestID: requestID)
            return
        }
        let shards = placement.shards(ofServer: index)
        let layout = ShardLayout(
            tensorElementCounts: whole.tensors.map(\.elementCount), shardCount: placement.totalShards)
        let elements = layout.range(ofShards: shards)
        let floats = PartFloats.join(weights: whole.weights[elements], slots: whole.optimizerSlots.map { $0[elements] })
        let part = ModelPart(
            tensors: whole.tensors.map { TensorShape(name: $0.name, shape: $0.shape) }, placement: placement,
            optimizer: config.optimizer, mode: config.mode, maxGradientStaleness: config.maxGradientStaleness,
            stalePolicy: config.stalePolicy, allowNonFinite: config.allowNonFinite,
            completedSteps: server.initialCompletedSteps.withLock { $0 }, sequence: server.links?.lastSequence ?? 0,
            instance: server.links?.instance ?? 0,
            optimizerStep: whole.optimizerStep,
            versions: Array(repeating: whole.shardVersions.max() ?? 0, count: shards.count),
            workers: config.job?.workers ?? 1, staleness: config.mode == .ssp ? config.staleness : .max,
            stuckSeconds: 2 * config.workerTimeoutSeconds,
            liveRanks: server.coordinator?.snapshot.membership.liveRanks ?? [])
        server.log.info("model-part-sent", ["server": index, "shards": "\(shards)", "elements": elements.count])
        try session.reply(
            .serverCallReply(ServerCall(header: LinkCoding.encode(LinkReply.model(part: part)), floats: floats)),
            to: requestID)
    }

    private func reply(_ reply: LinkReply, session: Session, requestID: UInt64) throws(TransportError) {
        try session.reply(.serverCallReply(ServerCall(header: LinkCoding.encode(reply))), to: requestID)
    }
}
