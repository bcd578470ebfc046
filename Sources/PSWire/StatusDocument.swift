import Foundation

/// The server's status: what `psctl status` prints and `psctl status --json` passes through, carried as JSON in
/// a `statusReply` frame (proto-docs: "status / statusReply"). Keys are snake_case; job fields are absent on a
/// plain parameter store.
public struct StatusDocument: Codable, Sendable, Equatable {
    /// `bsp`, `ssp`, `async`, or `store` for a plain parameter store.
    public var mode: String
    public var optimizer: String
    public var uptimeSeconds: Double
    public var connections: Int
    public var shardCount: Int
    public var shards: [Shard]
    public var tensors: [TensorShape]
    /// SSP/async pushes the stale-gradient bound dropped or applied scaled, over every shard.
    public var staleDropped: UInt64
    public var staleScaled: UInt64
    /// The newest checkpoint directory written, when the server writes checkpoints.
    public var lastCheckpoint: String?
    public var jobStatus: JobStatus?
    /// Scheduled checkpoints skipped because the previous one was still being written (absent without
    /// `--checkpoint-dir`).
    public var checkpointsSkipped: UInt64?
    /// Updates refused because they would have made a weight NaN or infinite (absent when none was).
    public var nonFiniteRefused: UInt64? = nil

    /// Scale-out: every server of the placement, in index order; absent with one server (no `--servers`/`--join`).
    public var servers: [Server]? = nil

    /// The job's row-sparse tables, in wire order; absent when it has none (and in documents of older servers).
    public var tables: [Table]? = nil

    /// One row-sparse table, as status reports it.
    public struct Table: Codable, Sendable, Equatable {
        public var name: String
        public var rows: Int
        public var width: Int
        /// The lazy row optimizer: `sgd`, `adagrad`, `adam` or `ftrl`.
        public var optimizer: String
        /// Rows at least one update has touched since the server started or last restored a checkpoint.
        public var rowsTouched: Int
        /// Updates applied (async: one per push; BSP: one per step, the mean of the workers' pushes).
        public var updatesApplied: UInt64
        /// Pushes accepted and pulls answered.
        public var pushes: UInt64
        public var pulls: UInt64

        public init(
            name: String, rows: Int, width: Int, optimizer: String, rowsTouched: Int, updatesApplied: UInt64,
            pushes: UInt64, pulls: UInt64
        ) {
            self.name = name
            self.rows = rows
            self.width = width
            self.optimizer = optimizer
            self.rowsTouched = rowsTouched
            self.updatesApplied = updatesApplied
            self.pushes = pushes
            self.pulls = pulls
        }

        enum CodingKeys: String, CodingKey {
            case name, rows, width, optimizer, pushes, pulls
            case rowsTouched = "rows_touched"
            case updatesApplied = "updates_applied"
        }
    }

    /// One server of a scale-out placement, as status reports it.
    public struct Server: Codable, Sendable, Equatable {
        /// 0 is the coordinator, joined servers count up in registration order.
        public var index: Int
        /// The address workers use; empty for the coordinator (the address workers named).
        public var address: String
        /// The shard numbers it owns: `[firstShard, firstShard + shards)`.
        public var firstShard: Int
        public var shards: Int
        /// Whether this entry is the server that answered the status request.
        public var isSelf: Bool
        /// The bytes of weights it holds, and the pushes and pulls its shards served (as last reported to the
        /// coordinator; absent until known).
        public var bytes: Int? = nil
        public var pushes: UInt64? = nil
        public var pulls: UInt64? = nil
        /// Seconds since the coordinator last heard from it (joined servers, on the coordinator).
        public var heartbeatAgeSeconds: Double? = nil

        public init(index: Int, address: String, firstShard: Int, shards: Int, isSelf: Bool) {
            self.index = index
            self.address = address
            self.firstShard = firstShard
            self.shards = shards
            self.isSelf = isSelf
        }

        enum CodingKeys: String, CodingKey {
            case index, address, shards, bytes, pushes, pulls
            case firstShard = "first_shard"
            case isSelf = "self"
            case heartbeatAgeSeconds = "heartbeat_age_s"
        }

        /// The servers of `placement`, marking `selfIndex`.
        public static func list(_ placement: ServerPlacement, selfIndex: Int) -> [Server] {
            placement.servers.indices.map {
                Server(
                    index: $0, address: placement.servers[$0].address,
                    firstShard: placement.firstShard(ofServer: $0), shards: placement.servers[$0].shards,
                    isSelf: $0 == selfIndex)
            }
        }
    }

    /// One shard's counters.
    public struct Shard: Codable, Sendable, Equatable {
        public var index: Int
        public var version: UInt64
        public var elements: Int
        public var bytes: Int
        public var pushes: UInt64
        public var pulls: UInt64
        public var staleDropped: UInt64
        public var staleScaled: UInt64

        public init(
            index: Int, version: UInt64, elements: Int, pushes: UInt64, pulls: UInt64, staleDropped: UInt64,
            staleScaled: UInt64
        ) {
            self.index = index
            self.version = version
            self.elements = elements
            self.bytes = elements * 4
            self.pushes = pushes
            self.pulls = pulls
            self.staleDropped = staleDropped
            self.staleScaled = staleScaled
        }

        enum CodingKeys: String, CodingKey {
            case index, version, elements, bytes, pushes, pulls
            case staleDropped = "stale_dropped"
            case staleScaled = "stale_scaled"
        }
    }

    /// One worker as the coordinator sees it.
    public struct Worker: Codable, Sendable, Equatable {
        public var name: String
        public var rank: Int
        /// `live`, `dead` or `left`.
        public var state: String
        public var clock: UInt64
        public var pushes: UInt64
        /// Seconds since the worker's last message.
        public var lastSeenSeconds: Double
        public var rejoins: Int

        public init(
            name: String, rank: Int, state: String, clock: UInt64, pushes: UInt64, lastSeenSeconds: Double,
            rejoins: Int
        ) {
            self.name = name
            self.rank = rank
            self.state = state
            self.clock = clock
            self.pushes = pushes
            self.lastSeenSeconds = lastSeenSeconds
            self.rejoins = rejoins
        }

        enum CodingKeys: String, CodingKey {
            case name, rank, state, clock, pushes, rejoins
            case lastSeenSeconds = "last_seen_s"
        }
    }

    /// The coordinator's part: the job, its workers and its progress.
    public struct JobStatus: Codable, Sendable, Equatable {
        public var job: JobDescription
        public var workers: [Worker]
        public var expectedWorkers: Int
        public var completedSteps: UInt64
        public var minClock: UInt64
        public var maxClock: UInt64
        public var barrierWaits: UInt64
        public var jobStarted: Bool
        public var jobFinished: Bool
        /// Notable events (deaths), newest last, at most 20.
        public var events: [String]
        public var staleness: UInt64

        public init(
            job: JobDescription, workers: [Worker], expectedWorkers: Int, completedSteps: UInt64, minClock: UInt64,
            maxClock: UInt64, barrierWaits: UInt64, jobStarted: Bool, jobFinished: Bool, events: [String],
            staleness: UInt64
        ) {
            self.job = job
            self.workers = workers
            self.expectedWorkers = expectedWorkers
            self.completedSteps = completedSteps
            self.minClock = minClock
            self.maxClock = maxClock
            self.barrierWaits = barrierWaits
            self.jobStarted = jobStarted
            self.jobFinished = jobFinished
            self.events = events
            self.staleness = staleness
        }

        enum CodingKeys: String, CodingKey {
            case job, workers, events, staleness
            case expectedWorkers = "expected_workers"
            case completedSteps = "completed_steps"
            case minClock = "min_clock"
            case maxClock = "max_clock"
            case barrierWaits = "barrier_waits"
            case jobStarted = "job_started"
            case jobFinished = "job_finished"
        }
    }

    public init(
        mode: String, optimizer: String, uptimeSeconds: Double, connections: Int, shardCount: Int, shards: [Shard],
        tensors: [TensorShape], lastCheckpoint: String?, jobStatus: JobStatus?, checkpointsSkipped: UInt64? = nil
    ) {
        self.mode = mode
        self.optimizer = optimizer
        self.uptimeSeconds = uptimeSeconds
        self.connections = connections
        self.shardCount = shardCount
        self.shards = shards
        self.tensors = tensors
        self.staleDropped = shards.reduce(0) { $0 + $1.staleDropped }
        self.staleScaled = shards.reduce(0) { $0 + $1.staleScaled }
        self.lastCheckpoint = lastCheckpoint
        self.checkpointsSkipped = checkpointsSkipped
        self.jobStatus = jobStatus
    }

    enum CodingKeys: String, CodingKey {
        case mode, optimizer, connections, shards, tensors
        case uptimeSeconds = "uptime_s"
        case shardCount = "shard_count"
        case staleDropped = "stale_dropped"
        case staleScaled = "stale_scaled"
        case lastCheckpoint = "last_checkpoint"
        case checkpointsSkipped = "checkpoints_skipped"
        case nonFiniteRefused = "nonfinite_refused"
        case servers, tables
    }

    // The job's fields sit at the top level of the document, beside the server's.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        mode = try container.decode(String.self, forKey: .mode)
        optimizer = try container.decode(String.self, forKey: .optimizer)
        uptimeSeconds = try container.decode(Double.self, forKey: .uptimeSeconds)
        connections = try container.decode(Int.self, forKey: .connections)
        shardCount = try container.decode(Int.self, forKey: .shardCount)
        shards = try container.decode([Shard].self, forKey: .shards)
        tensors = try container.decode([TensorShape].self, forKey: .tensors)
        staleDropped = try container.decode(UInt64.self, forKey: .staleDropped)
        staleScaled = try container.decode(UInt64.self, forKey: .staleScaled)
        lastCheckpoint = try container.decodeIfPresent(String.self, forKey: .lastCheckpoint)
        checkpointsSkipped = try container.decodeIfPresent(UInt64.self, forKey: .checkpointsSkipped)
        nonFiniteRefused = try container.decodeIfPresent(UInt64.self, forKey: .nonFiniteRefused)
        servers = try container.decodeIfPresent([Server].self, forKey: .servers)
        tables = try container.decodeIfPresent([Table].self, forKey: .tables)
        let jobContainer = try decoder.container(keyedBy: JobStatus.CodingKeys.self)
        jobStatus = jobContainer.contains(.job) ? try JobStatus(from: decoder) : nil
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(mode, forKey: .mode)
        try container.encode(optimizer, forKey: .optimizer)
        try container.encode(uptimeSeconds, forKey: .uptimeSeconds)
        try container.encode(connections, forKey: .connections)
        try container.encode(shardCount, forKey: .shardCount)
        try container.encode(shards, forKey: .shards)
        try container.encode(tensors, forKey: .tensors)
        try container.encode(staleDropped, forKey: .staleDropped)
        try container.encode(staleScaled, forKey: .staleScaled)
        try container.encodeIfPresent(lastCheckpoint, forKey: .lastCheckpoint)
        try container.encodeIfPresent(checkpointsSkipped, forKey: .checkpointsSkipped)
        try container.encodeIfPresent(nonFiniteRefused, forKey: .nonFiniteRefused)
        try container.encodeIfPresent(servers, forKey: .servers)
        try container.encodeIfPresent(tables, forKey: .tables)
        try jobStatus?.encode(to: encoder)
    }

    /// The document as one line of JSON with sorted keys.
    public func json() -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        guard let data = try? encoder.encode(self) else { return "{}" }
        return String(decoding: data, as: UTF8.self)
    }

    /// Decodes a document a server sent.
    public static func decode(json: String) throws -> StatusDocument {
        try JSONDecoder().decode(StatusDocument.self, from: Data(json.utf8))
    }
}
