/// One row of protocol v1's message table: a type's code, name, direction, smallest payload and decoder.
///
/// `MessageType.name`, `isKnown`, `isReply`, `minimumPayloadLength` and `allKnown` read this table, and
/// `MessageCodec.decodePayload` dispatches through it. Adding a message type takes one edit per concern: its
/// code (a `MessageType` static let), its row in ``all``, its payload struct and `Message` case (with
/// `Message.type`), its encoder in `MessageCodec.encodePayload`, its decoder in `MessageCodec`, and its section
/// with a hex example in proto-docs/protocol.md (a golden test in `Tests/PSWireTests`).
struct MessageDescriptor: Sendable {
    /// Whether frames of a type ask for something or answer a request.
    enum Direction: Sendable {
        /// Sent by the peer that wants something; the header's REPLY flag is clear.
        case request
        /// Answers a request and echoes its request id; the header's REPLY flag is set.
        case reply
    }

    /// Reads a payload of this type, already checked to be at least `minimumPayloadLength` bytes, up to but not
    /// including the trailing-bytes check, which `decodePayload` does for every type.
    typealias Decoder = @Sendable (inout PayloadReader) throws(WireError) -> Message

    /// The code in the header's `type` field.
    let type: MessageType
    /// The name used in proto-docs, logs and errors (`pushPull`).
    let name: String
    /// Request or reply.
    let direction: Direction
    /// The smallest payload a frame of this type can have: its fixed fields, empty strings and lists.
    let minimumPayloadLength: Int
    /// The payload decoder.
    let decode: Decoder

    init(_ type: MessageType, _ name: String, _ direction: Direction, minimum: Int, _ decode: @escaping Decoder) {
        self.type = type
        self.name = name
        self.direction = direction
        self.minimumPayloadLength = minimum
        self.decode = decode
    }

    /// Every message type protocol v1 defines, in code order (proto-docs/protocol.md, "Message types").
    static let all: [MessageDescriptor] = [
        .init(.hello, "hello", .request, minimum: 8, MessageCodec.decodeHello),
        .init(.welcome, "welcome", .reply, minimum: 12, MessageCodec.decodeWelcome),
        .init(.reject, "reject", .reply, minimum: 8, MessageCodec.decodeReject),
        .init(.error, "error", .reply, minimum: 8, MessageCodec.decodeError),
        .init(.challenge, "challenge", .reply, minimum: 4 + Challenge.size, MessageCodec.decodeChallenge),
        .init(.authenticate, "authenticate", .request, minimum: Challenge.size, MessageCodec.decodeAuthenticate),
        .init(.register, "register", .request, minimum: 4, MessageCodec.decodeRegister),
        .init(.registered, "registered", .reply, minimum: 16, MessageCodec.decodeRegistered),
        .init(.push, "push", .request, minimum: PushPrefix.size, MessageCodec.decodePush),
        .init(.pushAck, "pushAck", .reply, minimum: 24, MessageCodec.decodePushAck),
        .init(.pull, "pull", .request, minimum: 16, MessageCodec.decodePull),
        .init(.pullReply, "pullReply", .reply, minimum: PullReplyPrefix.size, MessageCodec.decodePullReply),
        .init(.pushPull, "pushPull", .request, minimum: PushPrefix.size, MessageCodec.decodePushPull),
        .init(
            .exchange, "exchange", .request, minimum: ExchangePrefix.size(shardCount: 0), MessageCodec.decodeExchange),
        .init(
            .exchangeReply, "exchangeReply", .reply, minimum: ExchangeReplyPrefix.size(shardCount: 0),
            MessageCodec.decodeExchangeReply),
        .init(.clock, "clock", .request, minimum: 32, MessageCodec.decodeClock),
        .init(.clockAck, "clockAck", .reply, minimum: 16, MessageCodec.decodeClockAck),
        .init(.heartbeat, "heartbeat", .request, minimum: 16, MessageCodec.decodeHeartbeat),
        .init(.heartbeatAck, "heartbeatAck", .reply, minimum: 8, MessageCodec.decodeHeartbeatAck),
        .init(.metrics, "metrics", .request, minimum: 32, MessageCodec.decodeMetrics),
        .init(.metricsAck, "metricsAck", .reply, minimum: 0) { _ in .metricsAck },
        .init(.leave, "leave", .request, minimum: 8, MessageCodec.decodeLeave),
        .init(.leaveAck, "leaveAck", .reply, minimum: 0) { _ in .leaveAck },
        .init(.status, "status", .request, minimum: 4, MessageCodec.decodeStatus),
        .init(.statusReply, "statusReply", .reply, minimum: 4, MessageCodec.decodeStatusReply),
        .init(.checkpoint, "checkpoint", .request, minimum: 4, MessageCodec.decodeCheckpoint),
        .init(.checkpointReply, "checkpointReply", .reply, minimum: 20, MessageCodec.decodeCheckpointReply),
        .init(.shutdown, "shutdown", .request, minimum: 0, MessageCodec.decodeShutdown),
        .init(.shutdownAck, "shutdownAck", .reply, minimum: 0) { _ in .shutdownAck },
        .init(.export, "export", .request, minimum: 4, MessageCodec.decodeExport),
        .init(.exportReply, "exportReply", .reply, minimum: 12, MessageCodec.decodeExportReply),
        .init(.serverJoin, "serverJoin", .request, minimum: 8, MessageCodec.decodeServerJoin),
        .init(.serverJoined, "serverJoined", .reply, minimum: 12, MessageCodec.decodeServerJoined),
        .init(.serverCall, "serverCall", .request, minimum: 12, MessageCodec.decodeServerCall),
        .init(.serverCallReply, "serverCallReply", .reply, minimum: 12, MessageCodec.decodeServerCall),
        .init(.sparsePull, "sparsePull", .request, minimum: 16, MessageCodec.decodeSparsePull),
        .init(.sparsePullReply, "sparsePullReply", .reply, minimum: 16, MessageCodec.decodeSparsePullReply),
        .init(.sparsePush, "sparsePush", .request, minimum: 16, MessageCodec.decodeSparsePush),
    ]

    /// Each code's index in ``all``, or -1, indexed by the code itself: every frame looks its type up, and an
    /// array read costs a few instructions where hashing into a dictionary cost about 200.
    static let indexByCode: [Int16] = {
        var table = [Int16](repeating: -1, count: Int(all.map(\.type.rawValue).max() ?? 0) + 1)
        for (index, descriptor) in all.enumerated() {
            precondition(table[Int(descriptor.type.rawValue)] == -1, "two rows for \(descriptor.name)")
            table[Int(descriptor.type.rawValue)] = Int16(index)
        }
        return table
    }()

    /// The index in ``all`` of `type`'s row, or nil if protocol v1 does not define it.
    @inline(__always)
    static func index(of type: MessageType) -> Int? {
        let code = Int(type.rawValue)
        guard code < indexByCode.count else { return nil }
        let index = indexByCode[code]
        return index >= 0 ? Int(index) : nil
    }
}
