import PSCoordinator
import PSHTTP
import PSMath
import PSPosix
import PSSecurity
import PSWire

/// Everything `psserver` is configured with; validated once at start-up (`validate()`), every default documented.
public struct ServerConfig: Sendable {
    /// Address to listen on (default all IPv4 interfaces).
    public var host: String = "0.0.0.0"
    /// TCP port (default 7000; 0 picks a free port, printed in the `listening` log line).
    public var port: UInt16 = 7000
    /// Number of shards the model is split into (default 4).
    public var shardCount: Int = 4
    /// Largest accepted frame payload (default 512 MiB).
    public var maxFrameBytes: Int = WireProtocol.defaultMaxPayloadBytes
    /// The most memory the registered model may take on this server (`ShardStore.footprintBytes`: weights,
    /// optimizer state and work buffers); default half the physical memory, so that a registration cannot make
    /// the server allocate more than the host holds. A larger registration gets a `resourceExhausted` error frame.
    public var maxModelBytes: Int = ServerConfig.defaultMaxModelBytes
    /// Shared token a handshake must present; nil accepts any client.
    public var token: String? = nil
    /// TLS (`--tls-cert`, `--tls-key`; `--tls-ca` for mutual TLS, and to verify the coordinator with `--join`).
    public var tls = TLSFiles()
    /// Accept NaN and Inf in gradients (default: reject them with an error frame).
    public var allowNonFinite: Bool = false
    /// Optimizer applied on the shards.
    public var optimizer = OptimizerConfig(kind: .sgd, learningRate: 0.1)
    /// Consistency mode (default BSP).
    public var mode: ConsistencyMode = .bsp
    /// SSP staleness bound S (ssp only).
    public var staleness: UInt64 = 0
    /// Stale-gradient bound k (ssp/async); nil: none.
    public var maxGradientStaleness: UInt64? = nil
    /// What to do with a push staler than k.
    public var stalePolicy: StalePolicy = .drop
    /// A worker silent for this long is declared dead (default 10 s).
    public var workerTimeoutSeconds: Double = 10
    /// How long one server-side wait (a pull waiting for a step or for the job to start) may last before the
    /// worker is told to retry (default 30 s).
    public var waitTimeoutSeconds: Double = 30
    /// Scale-out: how long a joined server may go unheard before the coordinator ends the job, and how long a
    /// joined server keeps trying to reach a coordinator it lost (`--server-timeout`).
    public var serverTimeoutSeconds: Double = 30
    /// A new connection must have sent its whole `hello` within this many seconds (default 10).
    public var handshakeTimeoutSeconds: Double = 10
    /// Once a frame's first byte arrived, the whole frame must arrive within this many seconds (default 60);
    /// waiting between frames is not bounded once a connection has said hello.
    public var frameTimeoutSeconds: Double = 60
    /// A reply that makes no progress for this many seconds (the peer does not read) closes the connection
    /// (default 60).
    public var sendTimeoutSeconds: Double = 60
    /// On SIGTERM/SIGINT, how long a running job's stop checkpoint (next step boundary, then durable) may take
    /// before the server stops without it (default 30 s).
    public var stopTimeoutSeconds: Double = 30
    /// Most connections open at once (default 1024), each one thread; the next gets a `resourceExhausted` error
    /// frame and is closed.
    public var maxConnections: Int = 1024
    /// The largest frame accepted before `hello` was accepted (64 KiB): a `hello` is a few hundred bytes, so an
    /// unauthenticated peer cannot make the server buffer a large frame.
    public static let maxPreHandshakePayloadBytes = 64 << 10
    /// The training job; nil makes the server a plain parameter store whose clients register their own tensors.
    public var job: JobDescription? = nil
    /// Model registered at start-up for the job.
    public var jobTensors: [TensorSpec] = []
    /// The job's row-sparse tables (a sparse model's), numbered in this order on the wire; zero-initialised.
    public var sparseTables: [RowSparseTableSpec] = []
    /// The lazy optimizer of the row-sparse tables; nil: the counterpart of `optimizer` (sgd, adagrad, adam).
    public var sparseOptimizer: RowOptimizerConfig? = nil

    /// The optimizer the row-sparse tables use, or nil when `optimizer` has no lazy form (momentum).
    public var effectiveSparseOptimizer: RowOptimizerConfig? {
        sparseOptimizer ?? RowOptimizerConfig(dense: optimizer)
    }
    /// Directory for checkpoints and final weights.
    public var checkpointDirectory: String? = nil
    public var checkpointEverySteps: UInt64? = nil
    public var checkpointEverySeconds: Double? = nil
    /// Keep only the newest N checkpoints (nil: keep all).
    public var keepCheckpoints: Int? = nil
    /// The only directory `export` writes under (`--export-dir`); nil: `<checkpoint-dir>/exports`, and no export
    /// at all without a checkpoint directory.
    public var exportDirectory: String? = nil
    /// Checkpoint directory (or `latest`) to resume from.
    public var restore: String? = nil
    /// File receiving one JSON object per line (step and epoch records).
    public var metricsPath: String? = nil
    /// Port of the HTTP observability endpoint (`/metrics`, `/status.json`, the dashboard); nil: none.
    public var metricsPort: UInt16? = nil
    /// Address the observability endpoint listens on (default: the same as `host`).
    public var metricsHost: String? = nil
    /// The observability endpoint's connection, size and time limits.
    public var httpLimits = HTTPServerLimits()
    /// Keep serving after the job finished (default: exit 0).
    public var keepRunning: Bool = false
    /// Heartbeat interval workers are asked to use.
    public var heartbeatIntervalMillis: Int = 1000
    /// M: the servers the coordinator waits for before step 0, itself included (`--servers`).
    public var servers: Int = 1
    /// The coordinator this server registers with (`--join HOST:PORT`); nil: this server is the coordinator.
    public var join: (host: String, port: UInt16)? = nil
    /// The address workers use to reach this joined server (`--advertise HOST:PORT`); nil: the address the
    /// coordinator sees, with this server's listening port.
    public var advertise: String? = nil

    public init() {}

    /// Half the physical memory (4 GiB if it cannot be read): the default `--max-model-bytes`.
    public static let defaultMaxModelBytes: Int = (Host.physicalMemoryBytes() ?? (8 << 30)) / 2

    /// The longest accepted timeout or interval in seconds (a year): every such flag must be positive, finite and
    /// at most this, so converting it to nanoseconds (`UInt64`) or milliseconds (`Int64`) cannot overflow.
    public static let maxSeconds: Double = 365 * 86_400

    /// Checks every setting and their combination once at start-up; the error names the flag.
    ///
    /// Numbers are checked for range as well as meaning: NaN, infinities and values that would overflow a later
    /// conversion (seconds to nanoseconds, a clock to a status field) are refused here, not trapped on later.
    public func validate() throws(ConfigError) {
        guard shardCount >= 1, shardCount <= WireProtocol.maxShardCount else {
            throw ConfigError("--shards must be between 1 and \(WireProtocol.maxShardCount), got \(shardCount)")
        }
        guard maxFrameBytes >= 4096, maxFrameBytes <= Int(UInt32.max) else {
            throw ConfigError("--max-frame-bytes must be between 4096 and \(UInt32.max), got \(maxFrameBytes)")
        }
        guard maxModelBytes >= 1 else {
            throw ConfigError("--max-model-bytes must be at least 1, got \(maxModelBytes)")
        }
        try Self.requireSeconds(workerTimeoutSeconds, flag: "--worker-timeout")
        try Self.requireSeconds(waitTimeoutSeconds, flag: "--wait-timeout")
        try Self.requireSeconds(serverTimeoutSeconds, flag: "--server-timeout")
        try Self.requireSeconds(handshakeTimeoutSeconds, flag: "--handshake-timeout")
        if let problem = tls.problem(server: true) { throw ConfigError(problem) }
        try Self.requireSeconds(frameTimeoutSeconds, flag: "--frame-timeout")
        try Self.requireSeconds(sendTimeoutSeconds, flag: "--send-timeout")
        try Self.requireSeconds(stopTimeoutSeconds, flag: "--stop-timeout")
        guard maxConnections >= 1, maxConnections <= 100_000 else {
            throw ConfigError("--max-connections must be between 1 and 100000, got \(maxConnections)")
        }
        // Status and metrics report the bound as a JSON integer.
        guard staleness <= UInt64(Int.max) else {
            throw ConfigError("--staleness must be at most \(Int.max), got \(staleness)")
        }
        guard servers >= 1, servers <= WireProtocol.maxShardCount else {
            throw ConfigError("--servers must be between 1 and \(WireProtocol.maxShardCount), got \(servers)")
        }
        if servers > 1, job == nil { throw ConfigError("--servers needs a training job: add --model") }
        if !sparseTables.isEmpty {
            if servers > 1 {
                throw ConfigError(
                    "--servers \(servers): a model with row-sparse tables runs on one server only "
                        + "(scale-out of row-sparse tables is not implemented); drop --servers")
            }
            guard let sparse = effectiveSparseOptimizer else {
                throw ConfigError(
                    "--optimizer \(optimizer.kind) has no lazy row-sparse form: use sgd, adagrad, adam or ftrl")
            }
            do {
                try sparse.validate()
            } catch {
                throw ConfigError(error.message)
            }
            for table in sparseTables where table.rows < 1 || table.width < 1 || table.rows > Int(UInt32.max) + 1 {
                throw ConfigError("row-sparse table \(table.name) has a bad shape \(table.rows) x \(table.width)")
            }
            // A table is held as rows x width floats plus one array per optimizer slot, every row allocated.
            let arrays = 1 + sparse.stateSlotNames.count
            let bytes = sparseTables.reduce(0.0) { $0 + Double($1.rows) * Double($1.width) * 4 * Double(arrays) }
            guard bytes <= Double(maxModelBytes) else {
                throw ConfigError(
                    "the row-sparse tables (\(sparseTables.map { "\($0.name) \($0.rows) x \($0.width)" }.joined(separator: ", ")) "
                        + "with \(sparse.kind) state) take \(Int(bytes)) bytes, more than --max-model-bytes "
                        + "\(maxModelBytes): every row is allocated, so hash the features into fewer rows "
                        + "(--hash-features D) or raise the limit"
                )
            }
        }
        if join != nil {
            if job != nil { throw ConfigError("--join takes the job from the coordinator: drop --model") }
            if servers > 1 { throw ConfigError("--servers is the coordinator's flag: drop it with --join") }
        } else if advertise != nil {
            throw ConfigError("--advertise is for a joined server: add --join HOST:PORT")
        }
        if let keep = keepCheckpoints, keep < 1 { throw ConfigError("--keep-checkpoints must be at least 1") }
        if restore != nil, checkpointDirectory == nil, restore == "latest" {
            throw ConfigError("--restore latest needs --checkpoint-dir")
        }
        if let every = checkpointEverySteps, every == 0 { throw ConfigError("--checkpoint-every-steps must be >= 1") }
        if let every = checkpointEverySeconds {
            try Self.requireSeconds(every, flag: "--checkpoint-every-seconds")
        }
        if (checkpointEverySteps != nil || checkpointEverySeconds != nil), checkpointDirectory == nil {
            throw ConfigError("--checkpoint-every-steps/--checkpoint-every-seconds need --checkpoint-dir")
        }
        do {
            try optimizer.validate()
        } catch {
            throw ConfigError("\(error)")
        }
        let totalElements = jobTensors.reduce(0) { $0 + $1.elementCount }
        let largest = WireProtocol.largestShardElements(totalElements: totalElements, shardCount: shardCount)
        guard largest <= WireProtocol.maxShardElements(maxPayloadBytes: maxFrameBytes) else {
            throw ConfigError(
                "--model: the largest of --shards \(shardCount) shards holds \(largest) floats, more than a "
                    + "--max-frame-bytes \(maxFrameBytes) frame carries; raise --shards or --max-frame-bytes")
        }
        let footprint = ShardStore.footprintBytes(
            elementCount: totalElements, optimizer: optimizer, workerSlots: job?.workers ?? 1)
        guard jobTensors.isEmpty || footprint <= maxModelBytes else {
            throw ConfigError(
                "--model needs \(footprint) bytes of server memory (weights, optimizer state, work buffers), more "
                    + "than --max-model-bytes \(maxModelBytes)")
        }
        // The planner builds the job from validated flags; this catches a job built by hand (an embedding program,
        // a test) before the coordinator sizes its membership and barrier by it.
        if let job {
            do {
                try job.validate()
            } catch {
                throw ConfigError("the job's \(error.field) \(error.message) (--workers, --batch, --epochs)")
            }
        }
    }

    private static func requireSeconds(_ seconds: Double, flag: String) throws(ConfigError) {
        guard seconds > 0, seconds <= maxSeconds else {
            throw ConfigError(
                "\(flag) must be a positive number of seconds, at most \(Int(maxSeconds)), got \(seconds)")
        }
    }

    /// Where exports go: `--export-dir`, else `<checkpoint-dir>/exports`; nil when neither is configured.
    public var resolvedExportDirectory: String? {
        exportDirectory ?? checkpointDirectory.map { $0 + "/exports" }
    }

    /// The staleness rule for non-BSP pushes.
    var stalenessRule: StalenessRule {
        StalenessRule(maxGradientStaleness: maxGradientStaleness, policy: stalePolicy)
    }
}

/// A configuration that cannot run; the message names the flag.
public struct ConfigError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
