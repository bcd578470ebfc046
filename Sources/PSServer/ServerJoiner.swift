import Foundation
import PSPosix
import PSTransport
import PSWire

/// Where a joined server stands in the placement, once the coordinator answered its `serverJoin`.
public struct JoinedPlacement: Sendable, Equatable {
    /// This server's index (0 is the coordinator).
    public let index: Int
    /// Every server and its shards.
    public let placement: ServerPlacement

    /// The shard numbers this server owns.
    public var shards: Range<Int> { placement.shards(ofServer: index) }
}

extension ParameterServer {
    /// How one registration attempt ended.
    private enum JoinAttempt {
        case joined(JoinedPlacement)
        /// The coordinator is not reachable yet: try again, for at most `--wait-timeout`.
        case unreachable(String)
        /// The coordinator's wait for the other servers timed out: ask again (it is alive and answering).
        case stillWaiting(String)
        /// The coordinator refused (token, too many servers, a finished job): give up.
        case fatal(String)
    }

    /// `psserver --join`: registers with the coordinator on its own thread, retrying while the coordinator is not
    /// reachable (for at most `--wait-timeout` in a row) and for as long as it answers that it still waits for
    /// other servers; a refusal stops this server with exit code 1 and the coordinator's reason.
    func joinCoordinator() {
        guard let (host, port) = config.join else { return }
        let advertise = config.advertise ?? ":\(self.port)"
        var unreachableSince: UInt64? = nil
        var everJoined = false
        while !stopped.load(ordering: .acquiring) {
            switch attemptJoin(host: host, port: port, advertise: advertise) {
            case .joined(let joined):
                joinedPlacement.withLock { $0 = joined }
                log.info(
                    "joined",
                    [
                        "coordinator": "\(host):\(port)", "index": joined.index,
                        "shards": "\(joined.shards.lowerBound)..<\(joined.shards.upperBound)",
                        "total_shards": joined.placement.totalShards, "servers": joined.placement.servers.count,
                    ])
                everJoined = true
                guard runLink(host: host, port: port, joined: joined) == .reregister else { return }
                // A restarted coordinator (`--restore latest`) does not know this server: register again and
                // take the part it lays out.
                dropModel(reason: "the coordinator restarted; registering again")
                unreachableSince = nil
            case .stillWaiting(let reason):
                unreachableSince = nil
                log.info("join-waiting", ["coordinator": "\(host):\(port)", "reason": reason])
            case .unreachable(let reason):
                let now = MonotonicClock.nanoseconds()
                let since = unreachableSince ?? now
                unreachableSince = since
                // A first registration waits --wait-timeout; one after losing the coordinator, --server-timeout.
                let limit = everJoined ? config.serverTimeoutSeconds : config.waitTimeoutSeconds
                if Double(now - since) / 1e9 > limit {
                    fail("cannot register with the coordinator \(host):\(port): \(reason)")
                    return
                }
                log.warning("join-retry", ["coordinator": "\(host):\(port)", "reason": reason])
                Thread.sleep(forTimeInterval: 0.5)
            case .fatal(let reason):
                fail("the coordinator \(host):\(port) refused this server: \(reason)")
                return
            }
        }
    }

    private func fail(_ reason: String) {
        log.error("join-failed", ["reason": reason])
        stop(exitCode: 1, reason: reason)
    }

    private func attemptJoin(host: String, port: UInt16, advertise: String) -> JoinAttempt {
        let connection: FramedConnection
        do throws(SocketError) {
            connection = try FramedConnection.connect(host: host, port: port, timeout: .seconds(5), tls: tlsClient)
        } catch {
            return .unreachable("\(error)")
        }
        defer { connection.close() }
        do throws(TransportError) {
            try connection.setReceiveTimeout(.seconds(10))
            let hello = Hello(role: .server, name: "server-\(advertise)")
            switch try connection.handshake(hello, token: config.token) {
            case .welcome: break
            case .reject(let reject): return .fatal(reject.reason)
            case .error(let error): return .fatal(error.message)
            case let other: return .fatal("expected welcome, got \(other?.type.name ?? "end of stream")")
            }
            // The coordinator answers once every server registered, or after its --wait-timeout.
            try connection.setReceiveTimeout(.seconds(Int64(config.waitTimeoutSeconds.rounded(.up)) + 30))
            let join = ServerJoin(shards: UInt32(config.shardCount), advertise: advertise)
            try connection.send(.serverJoin(join), requestID: 1)
            switch try connection.readMessage()?.message {
            case .serverJoined(let joined):
                guard let placement = try? JSONDecoder().decode(ServerPlacement.self, from: Data(joined.config.utf8)),
                    Int(joined.serverIndex) < placement.servers.count,
                    placement.servers[Int(joined.serverIndex)].shards == config.shardCount
                else { return .fatal("unreadable or inconsistent placement: \(joined.config)") }
                return .joined(JoinedPlacement(index: Int(joined.serverIndex), placement: placement))
            case .error(let error) where error.code == .timeout:
                return .stillWaiting(error.message)
            case .error(let error):
                return .fatal(error.message)
            case let other:
                return .fatal("expected serverJoined, got \(other?.type.name ?? "end of stream")")
            }
        } catch {
            return .unreachable("\(error)")
        }
    }

    // MARK: The server link

    /// A joined server's link to the coordinator, for the rest of its life: fetches its model part, then follows
    /// the coordinator's numbered decisions (BSP releases, snapshots, the end of the job) in order. A coordinator
    /// that cannot be reached for `--server-timeout` stops this server with exit code 1.
    private enum LinkEnd { case stopped, reregister }

    private func runLink(host: String, port: UInt16, joined: JoinedPlacement) -> LinkEnd {
        var link: FramedConnection? = nil
        var lostSince: UInt64? = nil
        var installed = false
        var seen: UInt64 = 0
        var requestID: UInt64 = 10
        var instance: UInt64 = 0
        while !stopped.load(ordering: .acquiring) {
            if link == nil {
                link = openLink(host: host, port: port)
                if link == nil {
                    let now = MonotonicClock.nanoseconds()
                    let since = lostSince ?? now
                    lostSince = since
                    if Double(now - since) / 1e9 > config.serverTimeoutSeconds {
                        fail(
                            "lost the coordinator \(host):\(port) for --server-timeout \(config.serverTimeoutSeconds) s"
                        )
                        return .stopped
                    }
                    Thread.sleep(forTimeInterval: 0.5)
                    continue
                }
            }
            guard let connection = link else { continue }
            requestID += 1
            let request: LinkRequest =
                installed
                ? .sync(
                    server: joined.index, after: seen, stats: linkStats(), instance: instance,
                    stuck: joinedShards.withLock { $0 }?.stuckStep())
                : .fetchModel(server: joined.index)
            let answer: ServerCall
            do throws(TransportError) {
                try connection.send(.serverCall(ServerCall(header: LinkCoding.encode(request))), requestID: requestID)
                switch try connection.readMessage()?.message {
                case .serverCallReply(let call):
                    answer = call
                case .error(let error):
                    throw .remote(code: error.code, message: error.message)
                case let other:
                    throw .protocolViolation("expected serverCallReply, got \(other?.type.name ?? "end of stream")")
                }
            } catch {
                log.warning("link-lost", ["coordinator": "\(host):\(port)", "error": error])
                connection.close()
                link = nil
                continue
            }
            lostSince = nil
            switch LinkCoding.decode(LinkReply.self, answer.header) {
            case .model(let part):
                do {
                    try install(part, floats: answer.floats, index: joined.index)
                    installed = true
                    seen = part.sequence
                    instance = part.instance
                } catch {
                    fail("cannot install the model part from the coordinator: \(error)")
                    return .stopped
                }
            case .notReady:
                Thread.sleep(forTimeInterval: 0.2)
            case .entries(let entries):
                for entry in entries where entry.sequence > seen {
                    seen = entry.sequence
                    if entry.kind == .rollback {
                        // Everything after it comes with the new model part.
                        dropModel(reason: entry.reason)
                        installed = false
                        break
                    }
                    guard follow(entry, connection: connection, index: joined.index, requestID: &requestID) else {
                        connection.close()
                        return .stopped
                    }
                }
            case .accepted:
                break
            case .reregister(let reason):
                log.warning("link-reregister", ["reason": reason])
                connection.close()
                return .reregister
            case .refused(let reason):
                fail("the coordinator refused this server's call: \(reason)")
                return .stopped
            case nil:
                fail("unreadable reply from the coordinator: \(answer.header)")
                return .stopped
            }
        }
        link?.close()
        return .stopped
    }

    /// This server's counters for the coordinator's status.
    private func linkStats() -> LinkStats {
        let shards = store.current?.shards ?? []
        return LinkStats(
            bytes: shards.reduce(0) { $0 + 4 * $1.elementCount },
            pushes: shards.reduce(0) { $0 + $1.pushCount.load(ordering: .relaxed) },
            pulls: shards.reduce(0) { $0 + $1.pullCount.load(ordering: .relaxed) })
    }

    private func openLink(host: String, port: UInt16) -> FramedConnection? {
        do throws(TransportError) {
            let connection: FramedConnection
            do throws(SocketError) {
                connection = try FramedConnection.connect(
                    host: host, port: port, timeout: .seconds(5), maxPayloadBytes: config.maxFrameBytes,
                    tls: tlsClient)
            } catch {
                throw .socket(error)
            }
            try connection.setReceiveTimeout(.seconds(Int64(config.serverTimeoutSeconds.rounded(.up)) + 10))
            let hello = Hello(role: .server, name: "server-link")
            guard case .welcome = try connection.handshake(hello, token: config.token) else {
                connection.close()
                return nil
            }
            return connection
        } catch {
            return nil
        }
    }

    /// Replaces the placeholder store with the coordinator's model part.
    private func install(_ part: ModelPart, floats: [Float], index: Int) throws(RegistrationError) {
        let placement = part.placement.storePlacement(ofServer: index)
        let store = ShardStore(
            shardCount: config.shardCount, optimizer: part.optimizer, workerSlots: part.workers,
            requiresIdenticalTensors: true, maxModelBytes: config.maxModelBytes)
        let tensors = part.tensors.map { TensorSpec(name: $0.name, shape: $0.shape, initializer: .zeros) }
        guard let (weights, slots) = PartFloats.split(floats, slotCount: part.optimizer.stateSlotNames.count) else {
            throw RegistrationError(code: .invalidArgument, description: "a model part of \(floats.count) floats")
        }
        let n = weights.count
        try store.installPart(
            tensors: tensors, placement: placement, weights: weights, slots: slots, optimizerStep: part.optimizerStep,
            versions: part.versions)
        replaceStore(store)
        joinedShards.withLockAndBroadcast { $0 = JoinedShards(part: part, index: index) }
        log.info(
            "model-installed",
            ["shards": "\(placement.owned)", "elements": n, "mode": part.mode.rawValue, "step": part.completedSteps])
    }

    /// The coordinator rolled the job back: the model goes, and so does every connection (workers reconnect to
    /// the coordinator first, and it welcomes none until every server has the rolled-back model).
    private func dropModel(reason: String) {
        log.warning("rollback", ["reason": reason])
        joinedShards.withLockAndBroadcast { shards in
            shards?.stop()
            shards = nil
        }
        replaceStore(
            ShardStore(
                shardCount: config.shardCount, optimizer: config.optimizer, workerSlots: 1,
                maxModelBytes: config.maxModelBytes))
        for connection in connections.withLock({ Array($0.values) }) { connection.shutdown() }
    }

    /// Carries out one decision of the coordinator; false when this server must stop.
    private func follow(
        _ entry: LinkEntry, connection: FramedConnection, index: Int, requestID: inout UInt64
    ) -> Bool {
        guard let joined = joinedShards.withLock({ $0 }), let model = store.current else { return true }
        switch entry.kind {
        case .release:
            joined.release(step: entry.step, ranks: entry.ranks)
            for (position, shard) in model.shards.enumerated()
            where joined.applyReady(shard, position: position) == .refusedNonFinite {
                shard.refusedNonFiniteCount.wrappingAdd(1, ordering: .relaxed)
                ShardService(server: self).failJoinedStep(step: entry.step, shard: shard.index)
                return false
            }
            return true
        case .snapshot:
            if joined.part.mode == .bsp {
                // The snapshot of step boundary `step`: every shard applied `step` steps and, since the release of
                // the next step comes after this entry, none has applied more.
                guard
                    joined.waitForCompleted(
                        entry.step, deadline: MonotonicClock.deadline(afterSeconds: config.serverTimeoutSeconds),
                        peerGone: { false })
                else {
                    log.error("snapshot-failed", ["step": entry.step, "reason": "the step was not applied in time"])
                    return true
                }
            }
            guard let part = store.partSnapshot() else { return true }
            let floats = PartFloats.join(weights: part.weights, slots: part.optimizerSlots)
            let request = LinkRequest.part(
                server: index, gather: entry.sequence, optimizerStep: part.optimizerStep, versions: part.versions)
            requestID += 1
            do throws(TransportError) {
                try connection.send(
                    .serverCall(ServerCall(header: LinkCoding.encode(request), floats: floats)), requestID: requestID)
                _ = try connection.readMessage()
            } catch {
                log.warning("snapshot-part-failed", ["step": entry.step, "error": error])
            }
            return true
        case .membership:
            joined.membership(entry.ranks)
            return true
        case .rollback:
            return true  // handled by the link loop
        case .finish:
            log.info("job-finished", ["reason": entry.reason])
            stop(exitCode: entry.exitCode, reason: entry.reason)
            return false
        }
    }
}
