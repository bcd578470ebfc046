import PSClient
import PSWire

/// The servers a worker talks to: the coordinator, and in a scale-out job one connection per joined server.
///
/// The welcome's shard map gives each shard's server: "" for the coordinator's own shards, `host:port` for a
/// joined server's. Every server owns one contiguous run of shards, so each member covers one contiguous part
/// of the flat parameter vector. A step's requests go to every server before any reply is awaited (`sendOrder`):
/// the joined servers first, each worker starting at a different one so that the workers' pushes spread over
/// their links, and the coordinator last. Last, because by the time the coordinator holds a worker's gradient
/// (and may count it in a step's release) every joined server's copy is already written to its socket, so a
/// worker killed between its sends never leaves a joined server without a gradient of a released step. (A worker
/// host that crashes with data unsent can: that server reports the step stuck and the coordinator rolls the job
/// back to its last checkpoint.)
final class ServerSet {
    /// One server and the shards (and flat elements) it owns.
    struct Member {
        let client: ParameterClient
        let shards: Range<Int>
        let elements: Range<Int>
        let isCoordinator: Bool
    }

    let coordinator: ParameterClient
    /// Joined servers first (in shard order), the coordinator last.
    let members: [Member]
    private let owner: [Int]

    private init(coordinator: ParameterClient, members: [Member]) {
        self.coordinator = coordinator
        let ordered = members.filter { !$0.isCoordinator } + members.filter(\.isCoordinator)
        self.members = ordered
        var owner = [Int](repeating: 0, count: members.map(\.shards.upperBound).max() ?? 0)
        for (index, member) in ordered.enumerated() {
            for shard in member.shards { owner[shard] = index }
        }
        self.owner = owner
    }

    /// Whether the job spreads its shards over more than one server.
    var isScaleOut: Bool { members.count > 1 }

    /// The order `rank` sends a step's requests in (indices into `members`): the joined servers starting at
    /// joined server `rank mod J`, then the coordinator (always last member).
    func sendOrder(rank: Int) -> [Int] {
        let joined = members.count - 1
        guard joined > 0 else { return [0] }
        return (0..<joined).map { (max(rank, 0) + $0) % joined } + [joined]
    }

    /// The client serving `shard`.
    func client(forShard shard: Int) -> ParameterClient { members[owner[shard]].client }

    /// Opens a connection to every joined server the coordinator's welcome names; `connect` opens one (with the
    /// worker's retries). Refuses a shard map that does not give each server one contiguous run of shards.
    static func open(
        coordinator: ParameterClient, layout: ShardLayout,
        connect: (_ host: String, _ port: UInt16) throws(WorkerError) -> ParameterClient
    ) throws(WorkerError) -> ServerSet {
        let map = coordinator.config.shardMap
        guard map.count == layout.shardCount else {
            throw WorkerError(
                "invalid welcome: the shard map lists \(map.count) shards but the job has \(layout.shardCount)")
        }
        var runs: [(address: String, shards: Range<Int>)] = []
        for (shard, address) in map.enumerated() {
            if let last = runs.last, last.address == address {
                runs[runs.count - 1].shards = last.shards.lowerBound..<(shard + 1)
            } else {
                guard !runs.contains(where: { $0.address == address }) else {
                    throw WorkerError("invalid welcome: the shards of server '\(address)' are not contiguous")
                }
                runs.append((address, shard..<(shard + 1)))
            }
        }
        var members: [Member] = []
        do throws(WorkerError) {
            for run in runs {
                let elements = layout.range(ofShards: run.shards)
                if run.address.isEmpty {
                    members.append(
                        Member(client: coordinator, shards: run.shards, elements: elements, isCoordinator: true))
                    continue
                }
                guard let (host, port) = Self.parse(run.address) else {
                    throw WorkerError("invalid welcome: '\(run.address)' is not host:port")
                }
                members.append(
                    Member(
                        client: try connect(host, port), shards: run.shards, elements: elements, isCoordinator: false)
                )
            }
        } catch {
            for member in members where !member.isCoordinator { member.client.close() }
            throw error
        }
        guard members.contains(where: \.isCoordinator) else {
            for member in members { member.client.close() }
            throw WorkerError("invalid welcome: the shard map gives the coordinator no shard")
        }
        return ServerSet(coordinator: coordinator, members: members)
    }

    /// Closes the joined servers' connections (the coordinator's is the worker's to close).
    func closeJoined() {
        for member in members where !member.isCoordinator { member.client.close() }
    }

    /// `host:port` or `[v6]:port`.
    static func parse(_ address: String) -> (String, UInt16)? {
        guard let colon = address.lastIndex(of: ":"), let port = UInt16(address[address.index(after: colon)...]),
            port > 0
        else { return nil }
        var host = String(address[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return host.isEmpty ? nil : (host, port)
    }
}
