import PSCoordinator
import PSHTTP
import PSMath
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
    /// Shared token a handshake must present; nil accepts any client.
    public var token: String? = nil
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
    /// The training job; nil makes the server a plain parameter store whose clients register their own tensors.
    public var job: JobDescription? = nil
    /// Model registered at start-up for the job.
    public var jobTensors: [TensorSpec] = []
    /// Directory for checkpoints and final weights.
    public var checkpointDirectory: String? = nil
    public var checkpointEverySteps: UInt64? = nil
    public var checkpointEverySeconds: Double? = nil
    /// Keep only the newest N checkpoints (nil: keep all).
    public var keepCheckpoints: Int? = nil
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

    public init() {}

    /// Checks the combination of settings; the error names the flag.
    public func validate() throws(ConfigError) {
        guard shardCount >= 1, shardCount <= 1024 else {
            throw ConfigError("--shards must be between 1 and 1024, got \(shardCount)")
        }
        guard maxFrameBytes >= 4096 else { throw ConfigError("--max-frame-bytes must be at least 4096") }
        guard workerTimeoutSeconds > 0, workerTimeoutSeconds.isFinite else {
            throw ConfigError("--worker-timeout must be a positive number of seconds")
        }
        if let keep = keepCheckpoints, keep < 1 { throw ConfigError("--keep-checkpoints must be at least 1") }
        if restore != nil, checkpointDirectory == nil, restore == "latest" {
            throw ConfigError("--restore latest needs --checkpoint-dir")
        }
        if let every = checkpointEverySteps, every == 0 { throw ConfigError("--checkpoint-every-steps must be >= 1") }
        if (checkpointEverySteps != nil || checkpointEverySeconds != nil), checkpointDirectory == nil {
            throw ConfigError("--checkpoint-every-steps/--checkpoint-every-seconds need --checkpoint-dir")
        }
    }

    /// The staleness rule for non-BSP pushes.
    var stalenessRule: StalenessRule {
        let threshold: UInt64? = maxGradientStaleness ?? (stalePolicy == .scale ? 0 : nil)
        return StalenessRule(maxStaleness: threshold, policy: stalePolicy)
    }
}

/// A configuration that cannot run; the message names the flag.
public struct ConfigError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
