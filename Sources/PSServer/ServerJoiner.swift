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
                return
            case .stillWaiting(let reason):
                unreachableSince = nil
                log.info("join-waiting", ["coordinator": "\(host):\(port)", "reason": reason])
            case .unreachable(let reason):
                let now = MonotonicClock.nanoseconds()
                let since = unreachableSince ?? now
                unreachableSince = since
                if Double(now - since) / 1e9 > config.waitTimeoutSeconds {
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
}
