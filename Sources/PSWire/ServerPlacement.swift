/// Which server owns which shards: the coordinator's placement, carried as JSON by `serverJoined` and, as the
/// per-shard `shardMap`, by every worker's welcome (proto-docs/protocol.md, "serverJoined").
///
/// Servers are listed in index order (0 is the coordinator, then joined servers in registration order) and each
/// owns the next contiguous run of shard numbers: server i owns `[firstShard(i), firstShard(i) + servers[i].shards)`.
/// The elements of each shard come from the one shared layout (`ShardLayout`) over `totalShards` shards, so the
/// arithmetic of a job does not depend on how the shards are spread over servers.
public struct ServerPlacement: Codable, Sendable, Equatable {
    /// One server of the placement.
    public struct Server: Codable, Sendable, Equatable {
        /// `host:port` workers use to reach the server.
        public var address: String
        /// How many shards it serves (its `--shards`).
        public var shards: Int

        /// Creates a server entry.
        public init(address: String, shards: Int) {
            self.address = address
            self.shards = shards
        }
    }

    /// Every server, in index order.
    public var servers: [Server]

    /// Creates a placement.
    public init(servers: [Server]) {
        self.servers = servers
    }

    /// The total shard count: the sum of every server's shards.
    public var totalShards: Int { servers.reduce(0) { $0 + $1.shards } }

    /// The first shard number server `index` owns.
    public func firstShard(ofServer index: Int) -> Int {
        servers[..<index].reduce(0) { $0 + $1.shards }
    }

    /// The shard numbers server `index` owns.
    public func shards(ofServer index: Int) -> Range<Int> {
        let first = firstShard(ofServer: index)
        return first..<(first + servers[index].shards)
    }

    /// The address owning each shard, by shard number.
    public var shardMap: [String] { servers.flatMap { Array(repeating: $0.address, count: $0.shards) } }
}
