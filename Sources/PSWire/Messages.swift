// The message values of protocol v1, one type per payload layout (proto-docs/protocol.md, "Messages").

/// The kind of peer saying hello.
public enum Role: UInt8, Sendable, Equatable, CaseIterable, CustomStringConvertible {
    /// A training worker (`psworker`).
    case worker = 1
    /// A parameter server joining the cluster (`psserver --join`).
    case server = 2
    /// An operator tool (`psctl`).
    case control = 3

    /// The role's name, e.g. `worker`.
    public var description: String {
        switch self {
        case .worker: "worker"
        case .server: "server"
        case .control: "control"
        }
    }
}

/// The handshake: the first frame a peer sends on a connection (`hello`, 0x0001).
public struct Hello: Sendable, Equatable {
    /// What kind of peer this is.
    public var role: Role
    /// The highest protocol version the peer speaks (at least 1).
    public var maxVersion: UInt16
    /// The peer's name; a worker that reconnects with the same name gets its old rank back.
    public var name: String

    /// Creates a hello. It carries no secret: a server with a token answers it with a ``Challenge``.
    public init(role: Role, maxVersion: UInt16 = WireProtocol.version, name: String) {
        self.role = role
        self.maxVersion = maxVersion
        self.name = name
    }
}

/// A server's answer to a `hello` when it requires the shared token (`challenge`, 0x0005): a fresh random nonce,
/// which the peer must answer with `authenticate` carrying HMAC-SHA256(token, nonce).
public struct Challenge: Sendable, Equatable {
    /// The size of the nonce, and of the HMAC-SHA256 tag that answers it, in bytes.
    public static let size = 32
    /// The only algorithm of protocol v1: HMAC-SHA256 keyed with the token's UTF-8 bytes, over the nonce.
    public static let hmacSHA256: UInt16 = 1

    /// 32 random bytes, never reused.
    public var nonce: [UInt8]

    /// Creates a challenge; `nonce` must hold exactly ``size`` bytes.
    public init(nonce: [UInt8]) {
        precondition(nonce.count == Self.size, "a challenge nonce has \(Self.size) bytes")
        self.nonce = nonce
    }
}

/// A peer's answer to a ``Challenge`` (`authenticate`, 0x0006): HMAC-SHA256 of the nonce under the token.
public struct Authenticate: Sendable, Equatable {
    /// The 32-byte tag.
    public var mac: [UInt8]

    /// Creates an answer; `mac` must hold exactly ``Challenge/size`` bytes.
    public init(mac: [UInt8]) {
        precondition(mac.count == Challenge.size, "an authenticate tag has \(Challenge.size) bytes")
        self.mac = mac
    }
}

/// The answer to an accepted hello (`welcome`, 0x0002).
public struct Welcome: Sendable, Equatable {
    /// The id the server gave this connection's peer.
    public var assignedID: UInt32
    /// The worker's rank, or -1 for a peer that is not a worker.
    public var rank: Int32
    /// The job configuration and shard map as UTF-8 JSON; opaque to PSWire.
    public var config: String

    /// Creates a welcome.
    public init(assignedID: UInt32, rank: Int32, config: String) {
        self.assignedID = assignedID
        self.rank = rank
        self.config = config
    }
}

/// The answer to a refused hello (`reject`, 0x0003); the server closes the connection after sending it.
public struct Reject: Sendable, Equatable {
    /// Why, as a code.
    public var code: ErrorCode
    /// Why, in words.
    public var reason: String

    /// Creates a reject.
    public init(code: ErrorCode, reason: String) {
        self.code = code
        self.reason = reason
    }
}

/// The answer to a request that failed (`error`, 0x0004).
public struct ErrorMessage: Sendable, Equatable {
    /// What went wrong, as a code.
    public var code: ErrorCode
    /// What went wrong, in words a person can act on.
    public var message: String

    /// Creates an error message.
    public init(code: ErrorCode, message: String) {
        self.code = code
        self.message = message
    }

    /// Creates the error message answering a decoding failure: its code and its description.
    public init(_ error: WireError) {
        self.init(code: error.code, message: error.description)
    }
}

/// How the server fills a tensor when it is registered.
public enum InitSpec: Sendable, Equatable {
    /// All zeros.
    case zeros
    /// Every element equal to the value.
    case constant(Double)
    /// Uniform in [low, high) from splitmix64 seeded with `seed`.
    case uniform(low: Double, high: Double, seed: UInt64)
    /// Normal with the given mean and standard deviation from splitmix64 seeded with `seed`.
    case normal(mean: Double, std: Double, seed: UInt64)
    /// Glorot (Xavier) uniform from splitmix64 seeded with `seed`.
    case glorotUniform(seed: UInt64)
}

/// One tensor of a registration: its name, shape and initializer.
public struct TensorSpec: Sendable, Equatable {
    /// The tensor's name, e.g. `fc1.weight`.
    public var name: String
    /// The dimensions, outermost first (row-major); an empty shape is a scalar.
    public var shape: [Int]
    /// How the server fills it.
    public var initializer: InitSpec

    /// Creates a tensor specification.
    public init(name: String, shape: [Int], initializer: InitSpec) {
        self.name = name
        self.shape = shape
        self.initializer = initializer
    }

    /// The number of elements: the product of the dimensions (1 for a scalar).
    public var elementCount: Int { shape.reduce(1, *) }
}

/// The model's tensors, in the order that fixes the flat layout (`register`, 0x0010).
public struct Register: Sendable, Equatable {
    /// The tensors in registration order.
    public var tensors: [TensorSpec]

    /// Creates a registration.
    public init(tensors: [TensorSpec]) {
        self.tensors = tensors
    }
}

/// The answer to `register`: how many elements each shard holds (`registered`, 0x0011).
public struct Registered: Sendable, Equatable {
    /// The elements of each shard, in shard order.
    public var shardElements: [UInt64]
    /// The number of tensors registered.
    public var tensorCount: UInt32
    /// The sum of all tensors' elements; equals the sum of `shardElements`.
    public var totalElements: UInt64

    /// Creates a registered answer.
    public init(shardElements: [UInt64], tensorCount: UInt32, totalElements: UInt64) {
        self.shardElements = shardElements
        self.tensorCount = tensorCount
        self.totalElements = totalElements
    }

    /// Creates the answer describing `layout`.
    public init(layout: ShardLayout) {
        self.init(
            shardElements: (0..<layout.shardCount).map { UInt64(layout.elementCount(ofShard: $0)) },
            tensorCount: UInt32(layout.tensorElementCounts.count),
            totalElements: UInt64(layout.totalElements)
        )
    }
}

/// A gradient for one shard (`push`, 0x0012; also the payload of `pushPull`, 0x0016).
public struct Push: Sendable, Equatable {
    /// The shard the gradient is for.
    public var shard: UInt32
    /// The step the gradient was computed at.
    public var clock: UInt64
    /// The shard version the gradient was computed from.
    public var baseVersion: UInt64
    /// The gradient, one value per element of the shard.
    public var floats: [Float]

    /// Creates a push; the wire's `count` is `floats.count`.
    public init(shard: UInt32, clock: UInt64, baseVersion: UInt64, floats: [Float]) {
        self.shard = shard
        self.clock = clock
        self.baseVersion = baseVersion
        self.floats = floats
    }

    /// The fixed prefix this push is sent with.
    public var prefix: PushPrefix {
        PushPrefix(shard: shard, count: UInt32(floats.count), clock: clock, baseVersion: baseVersion)
    }
}

/// What a shard did with a push.
public struct PushStatus: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    /// The code as it appears on the wire.
    public var rawValue: UInt32

    /// Wraps any code, known or not.
    public init(rawValue: UInt32) {
        self.rawValue = rawValue
    }

    /// Applied to the shard at once.
    public static let applied = PushStatus(rawValue: 0)
    /// Held for the BSP barrier; applied when every worker has pushed for the step.
    public static let accepted = PushStatus(rawValue: 1)
    /// Dropped: staler than the bound; the worker should pull again.
    public static let droppedStale = PushStatus(rawValue: 2)
    /// Applied with its learning rate divided by (staleness + 1).
    public static let appliedScaled = PushStatus(rawValue: 3)

    /// The status's name, e.g. `droppedStale`, or `unknown(7)`.
    public var description: String {
        switch self {
        case .applied: "applied"
        case .accepted: "accepted"
        case .droppedStale: "droppedStale"
        case .appliedScaled: "appliedScaled"
        default: "unknown(\(rawValue))"
        }
    }
}

/// The answer to a push (`pushAck`, 0x0013).
public struct PushAck: Sendable, Equatable {
    /// The shard the push was for.
    public var shard: UInt32
    /// What the shard did with it.
    public var status: PushStatus
    /// The shard's version after this push.
    public var version: UInt64
    /// The shard's version minus the push's base version (0 if not behind).
    public var staleness: UInt64

    /// Creates a push acknowledgement.
    public init(shard: UInt32, status: PushStatus, version: UInt64, staleness: UInt64) {
        self.shard = shard
        self.status = status
        self.version = version
        self.staleness = staleness
    }

    /// The payload size in bytes.
    public static let size = 24

    /// Writes the 24-byte payload (the same bytes as `MessageCodec.encodePayload`) with no allocation.
    public func encode(into buffer: UnsafeMutableRawBufferPointer) {
        precondition(buffer.count >= Self.size, "a push ack needs 24 bytes")
        buffer.storeBytes(of: shard.littleEndian, toByteOffset: 0, as: UInt32.self)
        buffer.storeBytes(of: status.rawValue.littleEndian, toByteOffset: 4, as: UInt32.self)
        buffer.storeBytes(of: version.littleEndian, toByteOffset: 8, as: UInt64.self)
        buffer.storeBytes(of: staleness.littleEndian, toByteOffset: 16, as: UInt64.self)
    }
}

/// A request for one shard's weights (`pull`, 0x0014).
public struct Pull: Sendable, Equatable {
    /// The shard wanted.
    public var shard: UInt32
    /// The step the puller is about to compute; the server may hold the answer per the consistency mode.
    public var clock: UInt64

    /// Creates a pull.
    public init(shard: UInt32, clock: UInt64) {
        self.shard = shard
        self.clock = clock
    }

    /// The payload size in bytes.
    public static let size = 16

    /// Writes the 16-byte payload (the same bytes as `MessageCodec.encodePayload`) with no allocation.
    public func encode(into buffer: UnsafeMutableRawBufferPointer) {
        precondition(buffer.count >= Self.size, "a pull needs 16 bytes")
        buffer.storeBytes(of: shard.littleEndian, toByteOffset: 0, as: UInt32.self)
        buffer.storeBytes(of: UInt32(0), toByteOffset: 4, as: UInt32.self)
        buffer.storeBytes(of: clock.littleEndian, toByteOffset: 8, as: UInt64.self)
    }
}

/// One shard's weights (`pullReply`, 0x0015).
public struct PullReply: Sendable, Equatable {
    /// The shard the weights belong to.
    public var shard: UInt32
    /// The shard's version the weights are at.
    public var version: UInt64
    /// The weights, one value per element of the shard.
    public var floats: [Float]

    /// Creates a pull reply; the wire's `count` is `floats.count`.
    public init(shard: UInt32, version: UInt64, floats: [Float]) {
        self.shard = shard
        self.version = version
        self.floats = floats
    }

    /// The fixed prefix this reply is sent with.
    public var prefix: PullReplyPrefix {
        PullReplyPrefix(shard: shard, count: UInt32(floats.count), version: version)
    }
}

/// A worker's report that it completed a step (`clock`, 0x0020); not `Clock`, which would shadow `Swift.Clock`.
public struct ClockReport: Sendable, Equatable {
    /// The worker's rank.
    public var rank: UInt32
    /// The number of steps the worker has completed.
    public var clock: UInt64
    /// The mean loss of the completed step's batch.
    public var loss: Double
    /// The number of samples the worker has trained on so far.
    public var samples: UInt64

    /// Creates a clock report.
    public init(rank: UInt32, clock: UInt64, loss: Double, samples: UInt64) {
        self.rank = rank
        self.clock = clock
        self.loss = loss
        self.samples = samples
    }
}

/// The job's state as the coordinator sees it.
public struct JobState: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    /// The code as it appears on the wire.
    public var rawValue: UInt32

    /// Wraps any code, known or not.
    public init(rawValue: UInt32) {
        self.rawValue = rawValue
    }

    /// Training goes on.
    public static let running = JobState(rawValue: 0)
    /// Every worker completed its steps.
    public static let finished = JobState(rawValue: 1)
    /// The server is shutting down; workers should leave.
    public static let stopping = JobState(rawValue: 2)

    /// The state's name, e.g. `running`, or `unknown(9)`.
    public var description: String {
        switch self {
        case .running: "running"
        case .finished: "finished"
        case .stopping: "stopping"
        default: "unknown(\(rawValue))"
        }
    }
}

/// The answer to a clock report (`clockAck`, 0x0021).
public struct ClockAck: Sendable, Equatable {
    /// The job's state.
    public var jobState: JobState
    /// The smallest clock among the live workers.
    public var minClock: UInt64

    /// Creates a clock acknowledgement.
    public init(jobState: JobState, minClock: UInt64) {
        self.jobState = jobState
        self.minClock = minClock
    }
}

/// A worker's liveness signal (`heartbeat`, 0x0022).
public struct Heartbeat: Sendable, Equatable {
    /// The worker's rank.
    public var rank: UInt32
    /// The number of steps the worker has completed.
    public var clock: UInt64

    /// Creates a heartbeat.
    public init(rank: UInt32, clock: UInt64) {
        self.rank = rank
        self.clock = clock
    }
}

/// The answer to a heartbeat (`heartbeatAck`, 0x0023).
public struct HeartbeatAck: Sendable, Equatable {
    /// The job's state.
    public var jobState: JobState

    /// Creates a heartbeat acknowledgement.
    public init(jobState: JobState) {
        self.jobState = jobState
    }
}

/// Evaluation results at the end of an epoch (`metrics`, 0x0024).
public struct EpochMetrics: Sendable, Equatable {
    /// The epoch just completed (0-based), or `finalWeights`.
    public var epoch: UInt32

    /// The `epoch` of a report that evaluates the job's final weights, after every worker's last push
    /// (SSP/async); the server reports it as the job's accuracy instead of recording an epoch.
    public static let finalWeights = UInt32.max
    /// The mean loss over the test split.
    public var testLoss: Double
    /// The accuracy over the test split, in [0, 1].
    public var testAccuracy: Double
    /// The number of samples the worker has trained on so far.
    public var samples: UInt64

    /// Creates an epoch report.
    public init(epoch: UInt32, testLoss: Double, testAccuracy: Double, samples: UInt64) {
        self.epoch = epoch
        self.testLoss = testLoss
        self.testAccuracy = testAccuracy
        self.samples = samples
    }
}

/// Why a worker leaves.
public struct LeaveReason: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    /// The code as it appears on the wire.
    public var rawValue: UInt32

    /// Wraps any code, known or not.
    public init(rawValue: UInt32) {
        self.rawValue = rawValue
    }

    /// The worker completed its training.
    public static let finished = LeaveReason(rawValue: 0)
    /// The worker hit an error it cannot recover from.
    public static let error = LeaveReason(rawValue: 1)
    /// The worker was interrupted (SIGINT/SIGTERM).
    public static let interrupted = LeaveReason(rawValue: 2)

    /// The reason's name, e.g. `finished`, or `unknown(5)`.
    public var description: String {
        switch self {
        case .finished: "finished"
        case .error: "error"
        case .interrupted: "interrupted"
        default: "unknown(\(rawValue))"
        }
    }
}

/// A worker's goodbye (`leave`, 0x0026).
public struct Leave: Sendable, Equatable {
    /// The worker's rank.
    public var rank: UInt32
    /// Why it leaves.
    public var reason: LeaveReason

    /// Creates a leave.
    public init(rank: UInt32, reason: LeaveReason) {
        self.rank = rank
        self.reason = reason
    }
}

/// A request for the job's status (`status`, 0x0030).
public struct StatusRequest: Sendable, Equatable {
    /// The only format protocol v1 defines: JSON.
    public static let jsonFormat: UInt32 = 0

    /// The format wanted; `jsonFormat` is the only one v1 accepts.
    public var format: UInt32

    /// Creates a status request.
    public init(format: UInt32 = StatusRequest.jsonFormat) {
        self.format = format
    }
}

/// The job's status (`statusReply`, 0x0031).
public struct StatusReply: Sendable, Equatable {
    /// The status as a UTF-8 JSON document.
    public var json: String

    /// Creates a status reply.
    public init(json: String) {
        self.json = json
    }
}

/// A request for a checkpoint (`checkpoint`, 0x0032).
public struct CheckpointRequest: Sendable, Equatable {
    /// Whether the answer waits until the checkpoint is durable on disk (flags bit 0).
    public var wait: Bool

    /// Creates a checkpoint request.
    public init(wait: Bool) {
        self.wait = wait
    }
}

/// A request to stop the server (`shutdown`, 0x0034).
public struct ShutdownRequest: Sendable, Equatable {
    /// Whether a server running a job first takes a checkpoint at the next step boundary (bounded by its
    /// `--stop-timeout`); false (flags bit 0, `psctl shutdown --no-checkpoint`) stops at once. An empty payload,
    /// as protocol v1 clients before this field send, means true.
    public var checkpoint: Bool

    /// Creates a shutdown request.
    public init(checkpoint: Bool = true) {
        self.checkpoint = checkpoint
    }
}

/// The answer to a checkpoint request (`checkpointReply`, 0x0033).
public struct CheckpointReply: Sendable, Equatable {
    /// The step the checkpoint captures.
    public var step: UInt64
    /// Whether it is already durable (fsynced and renamed into place).
    public var durable: Bool
    /// Its directory on the server's disk.
    public var path: String

    /// Creates a checkpoint reply.
    public init(step: UInt64, durable: Bool, path: String) {
        self.step = step
        self.durable = durable
        self.path = path
    }
}

/// A request to export the model as .npy files (`export`, 0x0036).
public struct ExportRequest: Sendable, Equatable {
    /// The directory to write, on the server's disk.
    public var path: String

    /// Creates an export request.
    public init(path: String) {
        self.path = path
    }
}

/// The answer to an export request (`exportReply`, 0x0037).
public struct ExportReply: Sendable, Equatable {
    /// The step the exported weights are at.
    public var step: UInt64
    /// The directory written.
    public var path: String

    /// Creates an export reply.
    public init(step: UInt64, path: String) {
        self.step = step
        self.path = path
    }
}

/// A joined server registers with the coordinator (`serverJoin`, 0x0040), after a `hello` with role server.
public struct ServerJoin: Sendable, Equatable {
    /// How many shards this server serves (`--shards`).
    public var shards: UInt32
    /// The address workers use to reach this server (`--advertise`); empty: the address the coordinator sees.
    public var advertise: String

    /// Creates a server join.
    public init(shards: UInt32, advertise: String) {
        self.shards = shards
        self.advertise = advertise
    }
}

/// The coordinator's answer to `serverJoin` (`serverJoined`, 0x0041), sent once every expected server registered.
public struct ServerJoined: Sendable, Equatable {
    /// This server's index: 0 is the coordinator, joined servers count up in registration order.
    public var serverIndex: UInt32
    /// The placement as UTF-8 JSON (`ServerPlacement`); opaque to the frame codec.
    public var config: String

    /// Creates a server-joined reply.
    public init(serverIndex: UInt32, config: String) {
        self.serverIndex = serverIndex
        self.config = config
    }
}

/// A call between a joined server and the coordinator over the joined server's server link (`serverCall`,
/// 0x0042, and its reply `serverCallReply`, 0x0043): a JSON header, opaque to the frame codec, that names what is
/// asked or answered (proto-docs/protocol.md, "serverCall"), and the float32 values that go with it (a model
/// part, a snapshot part), possibly none.
public struct ServerCall: Sendable, Equatable {
    /// What the call asks or answers, as UTF-8 JSON.
    public var header: String
    /// The values that go with it.
    public var floats: [Float]

    /// Creates a server call.
    public init(header: String, floats: [Float] = []) {
        self.header = header
        self.floats = floats
    }
}

/// Any message of protocol v1, with its payload decoded.
public enum Message: Sendable, Equatable {
    case hello(Hello)
    case welcome(Welcome)
    case reject(Reject)
    case error(ErrorMessage)
    case challenge(Challenge)
    case authenticate(Authenticate)
    case register(Register)
    case registered(Registered)
    case push(Push)
    case pushAck(PushAck)
    case pull(Pull)
    case pullReply(PullReply)
    case pushPull(Push)
    case exchange(Exchange)
    case exchangeReply(ExchangeReply)
    case clock(ClockReport)
    case clockAck(ClockAck)
    case heartbeat(Heartbeat)
    case heartbeatAck(HeartbeatAck)
    case metrics(EpochMetrics)
    case metricsAck
    case leave(Leave)
    case leaveAck
    case status(StatusRequest)
    case statusReply(StatusReply)
    case checkpoint(CheckpointRequest)
    case checkpointReply(CheckpointReply)
    case shutdown(ShutdownRequest = ShutdownRequest())
    case shutdownAck
    case export(ExportRequest)
    case exportReply(ExportReply)
    case serverJoin(ServerJoin)
    case serverJoined(ServerJoined)
    case serverCall(ServerCall)
    case serverCallReply(ServerCall)
    case sparsePull(SparsePull)
    case sparsePullReply(SparsePullReply)
    case sparsePush(SparsePush)

    /// The message's type code.
    public var type: MessageType {
        switch self {
        case .hello: .hello
        case .welcome: .welcome
        case .reject: .reject
        case .error: .error
        case .challenge: .challenge
        case .authenticate: .authenticate
        case .register: .register
        case .registered: .registered
        case .push: .push
        case .pushAck: .pushAck
        case .pull: .pull
        case .pullReply: .pullReply
        case .pushPull: .pushPull
        case .exchange: .exchange
        case .exchangeReply: .exchangeReply
        case .clock: .clock
        case .clockAck: .clockAck
        case .heartbeat: .heartbeat
        case .heartbeatAck: .heartbeatAck
        case .metrics: .metrics
        case .metricsAck: .metricsAck
        case .leave: .leave
        case .leaveAck: .leaveAck
        case .status: .status
        case .statusReply: .statusReply
        case .checkpoint: .checkpoint
        case .checkpointReply: .checkpointReply
        case .shutdown: .shutdown
        case .shutdownAck: .shutdownAck
        case .export: .export
        case .exportReply: .exportReply
        case .serverJoin: .serverJoin
        case .serverJoined: .serverJoined
        case .serverCall: .serverCall
        case .serverCallReply: .serverCallReply
        case .sparsePull: .sparsePull
        case .sparsePullReply: .sparsePullReply
        case .sparsePush: .sparsePush
        }
    }

    /// Whether the message answers a request (its frame carries the REPLY flag).
    public var isReply: Bool { type.isReply }
}
