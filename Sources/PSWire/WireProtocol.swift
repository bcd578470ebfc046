/// Constants of SwiftPS wire protocol v1 (proto-docs/protocol.md, "Frame").
public enum WireProtocol {
    /// The first four bytes of every frame, `53 57 50 53` ("SWPS"), read as a little-endian `UInt32`.
    public static let magic: UInt32 = 0x5350_5753
    /// The protocol version this module speaks and writes into every header.
    public static let version: UInt16 = 1
    /// The size of the fixed frame header in bytes.
    public static let headerSize = 24
    /// The default limit on a frame's payload length (512 MiB); a longer frame is refused before anything is allocated.
    public static let defaultMaxPayloadBytes = 512 << 20
    /// The largest number of dimensions a registered tensor may have.
    public static let maxTensorRank = 8
    /// The largest number of elements one registered tensor, and a whole registration, may have: 2^40.
    public static let maxTensorElements = 1 << 40
}

/// A message type code (the header's `type` field); unknown codes from newer peers are representable.
///
/// See proto-docs/protocol.md, "Message types".
public struct MessageType: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    /// The 16-bit code as it appears on the wire.
    public var rawValue: UInt16

    /// Wraps any code, known or not.
    public init(rawValue: UInt16) {
        self.rawValue = rawValue
    }

    /// Handshake from a connecting peer (role, highest version, name).
    public static let hello = MessageType(rawValue: 0x0001)
    /// Reply to `hello`: the peer is accepted.
    public static let welcome = MessageType(rawValue: 0x0002)
    /// Reply to `hello`: the peer is refused; the connection closes.
    public static let reject = MessageType(rawValue: 0x0003)
    /// Reply to any request that failed.
    public static let error = MessageType(rawValue: 0x0004)
    /// Reply to `hello` from a server with a token: a nonce to answer with `authenticate`.
    public static let challenge = MessageType(rawValue: 0x0005)
    /// Answers a `challenge` with HMAC-SHA256(token, nonce); answered by `welcome` or `reject`.
    public static let authenticate = MessageType(rawValue: 0x0006)
    /// Registers the model's tensors.
    public static let register = MessageType(rawValue: 0x0010)
    /// Reply to `register`: the shard layout.
    public static let registered = MessageType(rawValue: 0x0011)
    /// A gradient for one shard.
    public static let push = MessageType(rawValue: 0x0012)
    /// Reply to `push` (and to a `pushPull` whose push was dropped as stale).
    public static let pushAck = MessageType(rawValue: 0x0013)
    /// Asks for one shard's weights.
    public static let pull = MessageType(rawValue: 0x0014)
    /// Reply to `pull` and `pushPull`: one shard's weights.
    public static let pullReply = MessageType(rawValue: 0x0015)
    /// A push answered with the weights after it is applied.
    public static let pushPull = MessageType(rawValue: 0x0016)
    /// A worker's whole step: every shard's gradient, the clock report, and a request for the next weights.
    public static let exchange = MessageType(rawValue: 0x0017)
    /// Reply to `exchange`: every shard's weights for the next step.
    public static let exchangeReply = MessageType(rawValue: 0x0018)
    /// A worker finished a step.
    public static let clock = MessageType(rawValue: 0x0020)
    /// Reply to `clock`.
    public static let clockAck = MessageType(rawValue: 0x0021)
    /// A worker is alive.
    public static let heartbeat = MessageType(rawValue: 0x0022)
    /// Reply to `heartbeat`.
    public static let heartbeatAck = MessageType(rawValue: 0x0023)
    /// Evaluation results at the end of an epoch.
    public static let metrics = MessageType(rawValue: 0x0024)
    /// Reply to `metrics`.
    public static let metricsAck = MessageType(rawValue: 0x0025)
    /// A worker leaves the job.
    public static let leave = MessageType(rawValue: 0x0026)
    /// Reply to `leave`.
    public static let leaveAck = MessageType(rawValue: 0x0027)
    /// Asks for the job's status.
    public static let status = MessageType(rawValue: 0x0030)
    /// Reply to `status`: a JSON document.
    public static let statusReply = MessageType(rawValue: 0x0031)
    /// Asks for a checkpoint.
    public static let checkpoint = MessageType(rawValue: 0x0032)
    /// Reply to `checkpoint`.
    public static let checkpointReply = MessageType(rawValue: 0x0033)
    /// Asks the server to shut down.
    public static let shutdown = MessageType(rawValue: 0x0034)
    /// Reply to `shutdown`.
    public static let shutdownAck = MessageType(rawValue: 0x0035)
    /// Asks the server to export the model to a directory.
    public static let export = MessageType(rawValue: 0x0036)
    /// Reply to `export`.
    public static let exportReply = MessageType(rawValue: 0x0037)
    /// A joined server (`psserver --join`) registers with the coordinator.
    public static let serverJoin = MessageType(rawValue: 0x0040)
    /// Reply to `serverJoin`, sent once every expected server has registered.
    public static let serverJoined = MessageType(rawValue: 0x0041)
    /// A joined server's call to the coordinator over its server link (model fetch, sync, snapshot part).
    public static let serverCall = MessageType(rawValue: 0x0042)
    /// Reply to `serverCall`.
    public static let serverCallReply = MessageType(rawValue: 0x0043)
    /// Asks for some rows of a row-sparse table.
    public static let sparsePull = MessageType(rawValue: 0x0050)
    /// Reply to `sparsePull`: the rows' values.
    public static let sparsePullReply = MessageType(rawValue: 0x0051)
    /// A gradient for some rows of a row-sparse table; answered by `pushAck`.
    public static let sparsePush = MessageType(rawValue: 0x0052)

    /// Every type protocol v1 defines, in code order.
    public static let allKnown: [MessageType] = MessageDescriptor.all.map(\.type)

    /// This type's row in the message table, or nil if protocol v1 does not define it.
    var descriptor: MessageDescriptor? { MessageDescriptor.index(of: self).map { MessageDescriptor.all[$0] } }

    /// Whether protocol v1 defines this code.
    public var isKnown: Bool { MessageDescriptor.index(of: self) != nil }

    /// Whether this type answers a request (its frames carry the REPLY flag).
    public var isReply: Bool { descriptor?.direction == .reply }

    /// The smallest payload a frame of this type can have (its fixed fields, empty strings and lists), or nil if
    /// the type is unknown.
    public var minimumPayloadLength: Int? { descriptor?.minimumPayloadLength }

    /// The type's name as used in proto-docs (`pushPull`), or `unknown(0x00ff)`.
    public var name: String { descriptor?.name ?? "unknown(\(hex(rawValue)))" }

    /// The name and the code, e.g. `push (0x0012)`.
    public var description: String { isKnown ? "\(name) (\(hex(rawValue)))" : name }
}

/// The header's 32-bit flags field; bits other than `reply` are reserved (sent 0, ignored on receipt).
public struct FrameFlags: OptionSet, Sendable, Hashable {
    /// The flag bits as they appear on the wire.
    public var rawValue: UInt32

    /// Wraps any bit pattern, reserved bits included.
    public init(rawValue: UInt32) {
        self.rawValue = rawValue
    }

    /// Bit 0: the frame answers a request and echoes its request id.
    public static let reply = FrameFlags(rawValue: 1 << 0)
}

/// Formats an unsigned integer as `0x` and zero-padded lowercase hex digits, two per byte.
func hex<T: FixedWidthInteger & UnsignedInteger>(_ value: T) -> String {
    let digits = String(value, radix: 16)
    let width = MemoryLayout<T>.size * 2
    return "0x" + String(repeating: "0", count: max(0, width - digits.count)) + digits
}
