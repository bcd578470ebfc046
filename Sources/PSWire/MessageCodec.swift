/// Turns messages into payloads and frames, and validated payloads back into messages.
///
/// Decoding checks every length against the bytes present before using it (nothing is allocated from an unchecked
/// length), every count, every string's UTF-8, every enumerated field, and that no bytes trail the last field.
/// The layouts are in proto-docs/protocol.md, "Messages".
public enum MessageCodec {
    /// The payload bytes of `message` (no header).
    public static func encodePayload(_ message: Message) -> [UInt8] {
        var writer = ByteWriter(capacity: 64)
        switch message {
        case .hello(let hello):
            writer.writeInteger(hello.role.rawValue)
            writer.writeInteger(UInt8(0))
            writer.writeInteger(hello.maxVersion)
            writer.writeString(hello.name)
        case .welcome(let welcome):
            writer.writeInteger(welcome.assignedID)
            writer.writeInteger(welcome.rank)
            writer.writeString(welcome.config)
        case .reject(let reject):
            writer.writeInteger(reject.code.rawValue)
            writer.writeInteger(UInt16(0))
            writer.writeString(reject.reason)
        case .error(let error):
            writer.writeInteger(error.code.rawValue)
            writer.writeInteger(UInt16(0))
            writer.writeString(error.message)
        case .challenge(let challenge):
            writer.writeInteger(Challenge.hmacSHA256)
            writer.writeInteger(UInt16(0))
            for byte in challenge.nonce { writer.writeInteger(byte) }
        case .authenticate(let authenticate):
            for byte in authenticate.mac { writer.writeInteger(byte) }
        case .register(let register):
            encode(register, into: &writer)
        case .registered(let registered):
            writer.writeInteger(registered.tensorCount)
            writer.writeInteger(UInt32(registered.shardElements.count))
            writer.writeInteger(registered.totalElements)
            for elements in registered.shardElements { writer.writeInteger(elements) }
        case .push(let push), .pushPull(let push):
            writer = ByteWriter(capacity: PushPrefix.size + 4 * push.floats.count)
            writer.writeInteger(push.shard)
            writer.writeInteger(UInt32(push.floats.count))
            writer.writeInteger(push.clock)
            writer.writeInteger(push.baseVersion)
            writer.writeFloats(push.floats)
        case .pushAck(let ack):
            writer.writeInteger(ack.shard)
            writer.writeInteger(ack.status.rawValue)
            writer.writeInteger(ack.version)
            writer.writeInteger(ack.staleness)
        case .pull(let pull):
            writer.writeInteger(pull.shard)
            writer.writeInteger(UInt32(0))
            writer.writeInteger(pull.clock)
        case .pullReply(let reply):
            writer = ByteWriter(capacity: PullReplyPrefix.size + 4 * reply.floats.count)
            writer.writeInteger(reply.shard)
            writer.writeInteger(UInt32(reply.floats.count))
            writer.writeInteger(reply.version)
            writer.writeFloats(reply.floats)
        case .exchange(let exchange):
            writer = ByteWriter(
                capacity: exchange.prefix.size + 4 * exchange.gradient.count + exchange.compressed.count)
            writeEncoded(exchange.prefix.size, into: &writer) { exchange.prefix.encode(into: $0) }
            writer.writeFloats(exchange.gradient)
            exchange.compressed.withUnsafeBytes { writer.writeBytes($0) }
        case .exchangeReply(let reply):
            writer = ByteWriter(capacity: reply.prefix.size + 4 * reply.weights.count + reply.compressed.count)
            writeEncoded(reply.prefix.size, into: &writer) { reply.prefix.encode(into: $0) }
            writer.writeFloats(reply.weights)
            reply.compressed.withUnsafeBytes { writer.writeBytes($0) }
        case .clock(let clock):
            writer.writeInteger(clock.rank)
            writer.writeInteger(UInt32(0))
            writer.writeInteger(clock.clock)
            writer.writeDouble(clock.loss)
            writer.writeInteger(clock.samples)
        case .clockAck(let ack):
            writer.writeInteger(ack.jobState.rawValue)
            writer.writeInteger(UInt32(0))
            writer.writeInteger(ack.minClock)
        case .heartbeat(let heartbeat):
            writer.writeInteger(heartbeat.rank)
            writer.writeInteger(UInt32(0))
            writer.writeInteger(heartbeat.clock)
        case .heartbeatAck(let ack):
            writer.writeInteger(ack.jobState.rawValue)
            writer.writeInteger(UInt32(0))
        case .metrics(let metrics):
            writer.writeInteger(metrics.epoch)
            writer.writeInteger(UInt32(0))
            writer.writeDouble(metrics.testLoss)
            writer.writeDouble(metrics.testAccuracy)
            writer.writeInteger(metrics.samples)
        case .leave(let leave):
            writer.writeInteger(leave.rank)
            writer.writeInteger(leave.reason.rawValue)
        case .status(let request):
            writer.writeInteger(request.format)
        case .statusReply(let reply):
            writer.writeString(reply.json)
        case .checkpoint(let request):
            writer.writeInteger(UInt32(request.wait ? 1 : 0))
        case .checkpointReply(let reply):
            writer.writeInteger(reply.step)
            writer.writeInteger(UInt32(reply.durable ? 1 : 0))
            writer.writeInteger(UInt32(0))
            writer.writeString(reply.path)
        case .export(let request):
            writer.writeString(request.path)
        case .exportReply(let reply):
            writer.writeInteger(reply.step)
            writer.writeString(reply.path)
        case .serverJoin(let join):
            writer.writeInteger(join.shards)
            writer.writeString(join.advertise)
        case .serverJoined(let joined):
            writer.writeInteger(joined.serverIndex)
            writer.writeInteger(UInt32(0))
            writer.writeString(joined.config)
        case .shutdown(let request):
            // The default (checkpoint first) is the empty payload v1 clients send; flags bit 0 skips it.
            if !request.checkpoint { writer.writeInteger(UInt32(1)) }
        case .serverCall(let call), .serverCallReply(let call):
            writer = ByteWriter(capacity: 12 + call.header.utf8.count + 4 * call.floats.count)
            writer.writeString(call.header)
            writer.writeInteger(UInt32(call.floats.count))
            writer.writeInteger(UInt32(0))
            writer.writeFloats(call.floats)
        case .sparsePull(let pull):
            encode(pull, into: &writer)
        case .sparsePullReply(let reply):
            writer = ByteWriter(capacity: 16 + 4 * reply.values.count)
            encode(reply, into: &writer)
        case .sparsePush(let push):
            writer = ByteWriter(capacity: 16 + 4 * push.ids.count + 4 * push.values.count)
            encode(push, into: &writer)
        case .metricsAck, .leaveAck, .shutdownAck:
            break
        }
        return writer.bytes
    }

    /// The whole frame of `message`: header and payload; flags.reply set iff `message.isReply`.
    public static func encodeFrame(_ message: Message, requestID: UInt64) -> [UInt8] {
        let payload = encodePayload(message)
        precondition(payload.count <= Int(UInt32.max), "a payload is at most 4 GiB")
        let header = FrameHeader(
            type: message.type,
            flags: message.isReply ? .reply : [],
            payloadLength: UInt32(payload.count),
            requestID: requestID
        )
        var frame = [UInt8](repeating: 0, count: WireProtocol.headerSize)
        frame.withUnsafeMutableBytes { header.encode(into: $0) }
        frame.append(contentsOf: payload)
        return frame
    }

    /// Decodes exactly one whole frame: a valid header followed by exactly `payloadLength` payload bytes.
    public static func decodeFrame(
        _ bytes: UnsafeRawBufferPointer,
        maxPayloadBytes: Int = WireProtocol.defaultMaxPayloadBytes
    ) throws(WireError) -> Frame {
        let header = try FrameHeader.decode(bytes, maxPayloadBytes: maxPayloadBytes)
        let expected = Int(header.payloadLength)
        let got = bytes.count - WireProtocol.headerSize
        guard got >= expected else { throw .truncatedBody(expected: expected, got: got) }
        guard got == expected else { throw .trailingBytes(type: header.type, count: got - expected) }
        let payload = UnsafeRawBufferPointer(rebasing: bytes[WireProtocol.headerSize...])
        return Frame(header: header, message: try decodePayload(type: header.type, payload))
    }

    /// Decodes and validates the payload of a frame of type `type`.
    public static func decodePayload(type: MessageType, _ payload: UnsafeRawBufferPointer) throws(WireError) -> Message
    {
        guard let descriptor = type.descriptor else { throw .unknownMessageType(type.rawValue) }
        let minimum = descriptor.minimumPayloadLength
        guard payload.count >= minimum else { throw .payloadTooShort(type: type, minimum: minimum, got: payload.count) }
        var reader = PayloadReader(type: type, payload)
        let message = try descriptor.decode(&reader)
        try reader.expectEnd()
        return message
    }

    // MARK: Payload decoders, one per message type (named in MessageDescriptor.all)

    static func decodeHello(_ reader: inout PayloadReader) throws(WireError) -> Message {
        let roleCode = try reader.u8()
        guard let role = Role(rawValue: roleCode) else {
            throw .invalidField(
                type: reader.type,
                field: "role",
                reason: "role \(roleCode) is not 1 (worker), 2 (server) or 3 (control)"
            )
        }
        _ = try reader.u8()
        let maxVersion = try reader.u16()
        guard maxVersion >= 1 else {
            throw .invalidField(type: reader.type, field: "maxVersion", reason: "version 0 does not exist")
        }
        let name = try reader.string("name")
        return .hello(Hello(role: role, maxVersion: maxVersion, name: name))
    }

    static func decodeChallenge(_ reader: inout PayloadReader) throws(WireError) -> Message {
        let algorithm = try reader.u16()
        guard algorithm == Challenge.hmacSHA256 else {
            throw .invalidField(
                type: reader.type, field: "algorithm", reason: "algorithm \(algorithm) is not 1 (HMAC-SHA256)")
        }
        _ = try reader.u16()
        return .challenge(Challenge(nonce: Array(try reader.bytes(count: Challenge.size))))
    }

    static func decodeAuthenticate(_ reader: inout PayloadReader) throws(WireError) -> Message {
        .authenticate(Authenticate(mac: Array(try reader.bytes(count: Challenge.size))))
    }

    static func decodeWelcome(_ reader: inout PayloadReader) throws(WireError) -> Message {
        let assignedID = try reader.u32()
        let rank = Int32(bitPattern: try reader.u32())
        guard rank >= -1 else {
            throw .invalidField(type: reader.type, field: "rank", reason: "rank \(rank) is below -1")
        }
        return .welcome(Welcome(assignedID: assignedID, rank: rank, config: try reader.string("config")))
    }

    static func decodeReject(_ reader: inout PayloadReader) throws(WireError) -> Message {
        let code = ErrorCode(rawValue: try reader.u16())
        _ = try reader.u16()
        return .reject(Reject(code: code, reason: try reader.string("reason")))
    }

    static func decodeError(_ reader: inout PayloadReader) throws(WireError) -> Message {
        let code = ErrorCode(rawValue: try reader.u16())
        _ = try reader.u16()
        return .error(ErrorMessage(code: code, message: try reader.string("message")))
    }

    static func decodePush(_ reader: inout PayloadReader) throws(WireError) -> Message {
        .push(try decodePushFields(&reader))
    }

    static func decodePushPull(_ reader: inout PayloadReader) throws(WireError) -> Message {
        .pushPull(try decodePushFields(&reader))
    }

    /// Decodes the payload of a `push` or a `pushPull`: the prefix, validated against the payload's length, then
    /// the floats.
    private static func decodePushFields(_ reader: inout PayloadReader) throws(WireError) -> Push {
        let prefix = try PushPrefix.decode(reader.bytes, type: reader.type)
        try PushPrefix.validate(prefix, payloadLength: reader.bytes.count, type: reader.type)
        _ = try reader.bytes(count: PushPrefix.size)
        return Push(
            shard: prefix.shard,
            clock: prefix.clock,
            baseVersion: prefix.baseVersion,
            floats: floats(try reader.bytes(count: 4 * Int(prefix.count)))
        )
    }

    static func decodePushAck(_ reader: inout PayloadReader) throws(WireError) -> Message {
        .pushAck(
            PushAck(
                shard: try reader.u32(),
                status: PushStatus(rawValue: try reader.u32()),
                version: try reader.u64(),
                staleness: try reader.u64()
            )
        )
    }

    static func decodePull(_ reader: inout PayloadReader) throws(WireError) -> Message {
        let shard = try reader.u32()
        _ = try reader.u32()
        return .pull(Pull(shard: shard, clock: try reader.u64()))
    }

    static func decodePullReply(_ reader: inout PayloadReader) throws(WireError) -> Message {
        let prefix = try PullReplyPrefix.decode(reader.bytes)
        try PullReplyPrefix.validate(prefix, payloadLength: reader.bytes.count)
        _ = try reader.bytes(count: PullReplyPrefix.size)
        return .pullReply(
            PullReply(
                shard: prefix.shard,
                version: prefix.version,
                floats: floats(try reader.bytes(count: 4 * Int(prefix.count)))
            )
        )
    }

    static func decodeExchange(_ reader: inout PayloadReader) throws(WireError) -> Message {
        let prefix = try ExchangePrefix.decode(reader.bytes)
        try ExchangePrefix.validate(prefix, payloadLength: reader.bytes.count)
        _ = try reader.bytes(count: prefix.size)
        guard prefix.encoding == .none else {
            let body = try reader.bytes(count: reader.remaining)
            if prefix.encoding == .topK {
                try GradientCodec.validateTopKEntries(
                    body, shardCount: prefix.baseVersions.count, count: Int(prefix.count), type: .exchange)
            }
            return .exchange(Exchange(prefix: prefix, compressed: Array(body)))
        }
        return .exchange(Exchange(prefix: prefix, gradient: floats(try reader.bytes(count: 4 * Int(prefix.count)))))
    }

    static func decodeExchangeReply(_ reader: inout PayloadReader) throws(WireError) -> Message {
        let prefix = try ExchangeReplyPrefix.decode(reader.bytes)
        try ExchangeReplyPrefix.validate(prefix, payloadLength: reader.bytes.count)
        _ = try reader.bytes(count: prefix.size)
        guard prefix.encoding == .none else {
            return .exchangeReply(
                ExchangeReply(prefix: prefix, compressed: Array(try reader.bytes(count: reader.remaining))))
        }
        return .exchangeReply(
            ExchangeReply(prefix: prefix, weights: floats(try reader.bytes(count: 4 * Int(prefix.count)))))
    }

    /// Appends `size` bytes that `encode` writes into a temporary buffer.
    private static func writeEncoded(
        _ size: Int, into writer: inout ByteWriter, _ encode: (UnsafeMutableRawBufferPointer) -> Void
    ) {
        withUnsafeTemporaryAllocation(byteCount: size, alignment: 8) { buffer in
            encode(buffer)
            writer.writeBytes(UnsafeRawBufferPointer(buffer))
        }
    }

    static func decodeClock(_ reader: inout PayloadReader) throws(WireError) -> Message {
        let rank = try reader.u32()
        _ = try reader.u32()
        return .clock(
            ClockReport(rank: rank, clock: try reader.u64(), loss: try reader.f64(), samples: try reader.u64())
        )
    }

    static func decodeClockAck(_ reader: inout PayloadReader) throws(WireError) -> Message {
        let state = JobState(rawValue: try reader.u32())
        _ = try reader.u32()
        return .clockAck(ClockAck(jobState: state, minClock: try reader.u64()))
    }

    static func decodeHeartbeat(_ reader: inout PayloadReader) throws(WireError) -> Message {
        let rank = try reader.u32()
        _ = try reader.u32()
        return .heartbeat(Heartbeat(rank: rank, clock: try reader.u64()))
    }

    static func decodeHeartbeatAck(_ reader: inout PayloadReader) throws(WireError) -> Message {
        let state = JobState(rawValue: try reader.u32())
        _ = try reader.u32()
        return .heartbeatAck(HeartbeatAck(jobState: state))
    }

    static func decodeMetrics(_ reader: inout PayloadReader) throws(WireError) -> Message {
        let epoch = try reader.u32()
        _ = try reader.u32()
        return .metrics(
            EpochMetrics(
                epoch: epoch,
                testLoss: try reader.f64(),
                testAccuracy: try reader.f64(),
                samples: try reader.u64()
            )
        )
    }

    static func decodeLeave(_ reader: inout PayloadReader) throws(WireError) -> Message {
        .leave(Leave(rank: try reader.u32(), reason: LeaveReason(rawValue: try reader.u32())))
    }

    static func decodeStatus(_ reader: inout PayloadReader) throws(WireError) -> Message {
        let format = try reader.u32()
        guard format == StatusRequest.jsonFormat else {
            throw .invalidField(type: reader.type, field: "format", reason: "format \(format) is not 0 (JSON)")
        }
        return .status(StatusRequest(format: format))
    }

    static func decodeStatusReply(_ reader: inout PayloadReader) throws(WireError) -> Message {
        .statusReply(StatusReply(json: try reader.string("json")))
    }

    static func decodeCheckpoint(_ reader: inout PayloadReader) throws(WireError) -> Message {
        .checkpoint(CheckpointRequest(wait: try reader.u32() & 1 == 1))
    }

    static func decodeShutdown(_ reader: inout PayloadReader) throws(WireError) -> Message {
        guard reader.remaining > 0 else { return .shutdown(ShutdownRequest()) }
        return .shutdown(ShutdownRequest(checkpoint: try reader.u32() & 1 == 0))
    }

    static func decodeCheckpointReply(_ reader: inout PayloadReader) throws(WireError) -> Message {
        let step = try reader.u64()
        let durable = try reader.u32()
        guard durable <= 1 else {
            throw .invalidField(type: reader.type, field: "durable", reason: "\(durable) is neither 0 nor 1")
        }
        _ = try reader.u32()
        return .checkpointReply(CheckpointReply(step: step, durable: durable == 1, path: try reader.string("path")))
    }

    static func decodeExport(_ reader: inout PayloadReader) throws(WireError) -> Message {
        .export(ExportRequest(path: try reader.string("path")))
    }

    static func decodeExportReply(_ reader: inout PayloadReader) throws(WireError) -> Message {
        let step = try reader.u64()
        return .exportReply(ExportReply(step: step, path: try reader.string("path")))
    }

    static func decodeServerJoin(_ reader: inout PayloadReader) throws(WireError) -> Message {
        let shards = try reader.u32()
        guard shards >= 1, shards <= UInt32(WireProtocol.maxShardCount) else {
            throw .invalidField(
                type: reader.type, field: "shards", reason: "\(shards) is not in 1...\(WireProtocol.maxShardCount)")
        }
        return .serverJoin(ServerJoin(shards: shards, advertise: try reader.string("advertise")))
    }

    static func decodeServerJoined(_ reader: inout PayloadReader) throws(WireError) -> Message {
        let index = try reader.u32()
        _ = try reader.u32()
        return .serverJoined(ServerJoined(serverIndex: index, config: try reader.string("config")))
    }

    /// `serverCall` and `serverCallReply`: header string, float count, reserved word, floats.
    static func decodeServerCall(_ reader: inout PayloadReader) throws(WireError) -> Message {
        let type = reader.type
        let header = try reader.string("header")
        let count = Int(try reader.u32())
        _ = try reader.u32()
        let values = floats(try reader.bytes(count: 4 * count))
        let call = ServerCall(header: header, floats: values)
        return type == .serverCall ? .serverCall(call) : .serverCallReply(call)
    }

    // MARK: register and registered

    /// The smallest encoding of one tensor: empty name, rank 0, then kind, reserved, a, b and seed.
    private static let minimumTensorBytes = 4 + 4 + 1 + 7 + 8 + 8 + 8

    private static func encode(_ register: Register, into writer: inout ByteWriter) {
        writer.writeInteger(UInt32(register.tensors.count))
        for tensor in register.tensors {
            writer.writeString(tensor.name)
            writer.writeInteger(UInt32(tensor.shape.count))
            for dimension in tensor.shape {
                precondition(dimension >= 0, "a tensor dimension is never negative")
                writer.writeInteger(UInt64(dimension))
            }
            let (kind, a, b, seed): (UInt8, Double, Double, UInt64) =
                switch tensor.initializer {
                case .zeros: (0, 0, 0, 0)
                case .constant(let value): (1, value, 0, 0)
                case .uniform(let low, let high, let seed): (2, low, high, seed)
                case .normal(let mean, let std, let seed): (3, mean, std, seed)
                case .glorotUniform(let seed): (4, 0, 0, seed)
                }
            writer.writeInteger(kind)
            writer.writeZeros(count: 7)
            writer.writeDouble(a)
            writer.writeDouble(b)
            writer.writeInteger(seed)
        }
    }

    static func decodeRegister(_ reader: inout PayloadReader) throws(WireError) -> Message {
        let type = MessageType.register
        let count = Int(try reader.u32())
        let minimum = 4 + count * minimumTensorBytes
        guard reader.bytes.count >= minimum else {
            throw .payloadTooShort(type: type, minimum: minimum, got: reader.bytes.count)
        }
        var tensors: [TensorSpec] = []
        tensors.reserveCapacity(count)
        var totalElements = 0
        for index in 0..<count {
            let field = "tensors[\(index)]"
            let name = try reader.string("\(field).name")
            guard !name.isEmpty else {
                throw .invalidField(type: type, field: "\(field).name", reason: "a tensor name must not be empty")
            }
            let rank = try reader.u32()
            guard rank <= WireProtocol.maxTensorRank else {
                throw .invalidField(
                    type: type,
                    field: "\(field).rank",
                    reason: "rank \(rank) exceeds the maximum of \(WireProtocol.maxTensorRank)"
                )
            }
            var shape: [Int] = []
            shape.reserveCapacity(Int(rank))
            var elements = 1
            for dimensionIndex in 0..<Int(rank) {
                let dimension = try reader.u64()
                guard dimension >= 1, dimension <= UInt64(WireProtocol.maxTensorElements) else {
                    throw .invalidField(
                        type: type,
                        field: "\(field).dims[\(dimensionIndex)]",
                        reason: "dimension \(dimension) is outside 1...\(WireProtocol.maxTensorElements)"
                    )
                }
                let (product, overflow) = elements.multipliedReportingOverflow(by: Int(dimension))
                guard !overflow, product <= WireProtocol.maxTensorElements else {
                    throw .invalidField(
                        type: type,
                        field: "\(field).dims",
                        reason: "the tensor has more than the maximum of \(WireProtocol.maxTensorElements) elements"
                    )
                }
                elements = product
                shape.append(Int(dimension))
            }
            totalElements += elements
            guard totalElements <= WireProtocol.maxTensorElements else {
                throw .invalidField(
                    type: type,
                    field: "\(field).dims",
                    reason: "the tensors have more than the maximum of \(WireProtocol.maxTensorElements) elements"
                )
            }
            let kind = try reader.u8()
            _ = try reader.bytes(count: 7)
            let a = try reader.f64()
            let b = try reader.f64()
            let seed = try reader.u64()
            let initializer = try initSpec(kind: kind, a: a, b: b, seed: seed, field: "\(field).init")
            tensors.append(TensorSpec(name: name, shape: shape, initializer: initializer))
        }
        return .register(Register(tensors: tensors))
    }

    private static func initSpec(
        kind: UInt8,
        a: Double,
        b: Double,
        seed: UInt64,
        field: String
    ) throws(WireError) -> InitSpec {
        func invalid(_ reason: String) -> WireError {
            .invalidField(type: .register, field: field, reason: reason)
        }
        switch kind {
        case 0:
            return .zeros
        case 1:
            guard a.isFinite else { throw invalid("constant \(a) is not finite") }
            return .constant(a)
        case 2:
            guard a.isFinite, b.isFinite, a <= b else {
                throw invalid("uniform bounds [\(a), \(b)) must be finite with low <= high")
            }
            return .uniform(low: a, high: b, seed: seed)
        case 3:
            guard a.isFinite, b.isFinite, b >= 0 else {
                throw invalid("normal mean \(a) std \(b) must be finite with std >= 0")
            }
            return .normal(mean: a, std: b, seed: seed)
        case 4:
            return .glorotUniform(seed: seed)
        default:
            throw invalid("init kind \(kind) is not 0 (zeros) ... 4 (glorotUniform)")
        }
    }

    static func decodeRegistered(_ reader: inout PayloadReader) throws(WireError) -> Message {
        let type = MessageType.registered
        let tensorCount = try reader.u32()
        let shardCount = Int(try reader.u32())
        let totalElements = try reader.u64()
        let minimum = 16 + 8 * shardCount
        guard reader.bytes.count >= minimum else {
            throw .payloadTooShort(type: type, minimum: minimum, got: reader.bytes.count)
        }
        var shardElements: [UInt64] = []
        shardElements.reserveCapacity(shardCount)
        var sum: UInt64 = 0
        var overflow = false
        for _ in 0..<shardCount {
            let elements = try reader.u64()
            let (next, didOverflow) = sum.addingReportingOverflow(elements)
            sum = next
            overflow = overflow || didOverflow
            shardElements.append(elements)
        }
        guard !overflow, sum == totalElements else {
            throw .invalidField(
                type: type,
                field: "totalElements",
                reason: "totalElements \(totalElements) is not the sum of the shards' elements"
            )
        }
        return .registered(
            Registered(shardElements: shardElements, tensorCount: tensorCount, totalElements: totalElements)
        )
    }

    /// Copies little-endian float32 values out of `bytes`, whose length the caller has validated.
    static func floats(_ bytes: UnsafeRawBufferPointer) -> [Float] {
        let count = bytes.count / 4
        guard count > 0, let base = bytes.baseAddress else { return [] }
        return [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
            #if _endian(little)
                UnsafeMutableRawBufferPointer(buffer).copyMemory(
                    from: UnsafeRawBufferPointer(start: base, count: 4 * count))
            #else
                for index in 0..<count {
                    buffer[index] = Float(
                        bitPattern: UInt32(
                            littleEndian: bytes.loadUnaligned(fromByteOffset: 4 * index, as: UInt32.self))
                    )
                }
            #endif
            initialized = count
        }
    }
}

/// A decoded frame: its header and its message.
public struct Frame: Sendable, Equatable {
    /// The frame's header as received.
    public var header: FrameHeader
    /// The frame's payload, decoded.
    public var message: Message

    /// Creates a frame from its parts.
    public init(header: FrameHeader, message: Message) {
        self.header = header
        self.message = message
    }
}

/// A `ByteReader` that turns "too few bytes" into `payloadTooShort` for one message type.
struct PayloadReader {
    let type: MessageType
    private(set) var reader: ByteReader

    init(type: MessageType, _ payload: UnsafeRawBufferPointer) {
        self.type = type
        reader = ByteReader(payload)
    }

    var bytes: UnsafeRawBufferPointer { reader.bytes }

    private func tooShort(needing size: Int) -> WireError {
        .payloadTooShort(type: type, minimum: reader.readerIndex + size, got: reader.bytes.count)
    }

    private mutating func integer<T: FixedWidthInteger>(_: T.Type) throws(WireError) -> T {
        guard let value = reader.readInteger(as: T.self) else { throw tooShort(needing: MemoryLayout<T>.size) }
        return value
    }

    mutating func u8() throws(WireError) -> UInt8 { try integer(UInt8.self) }
    mutating func u16() throws(WireError) -> UInt16 { try integer(UInt16.self) }
    mutating func u32() throws(WireError) -> UInt32 { try integer(UInt32.self) }
    mutating func u64() throws(WireError) -> UInt64 { try integer(UInt64.self) }
    mutating func f64() throws(WireError) -> Double { Double(bitPattern: try integer(UInt64.self)) }

    mutating func bytes(count: Int) throws(WireError) -> UnsafeRawBufferPointer {
        guard let view = reader.readBytes(count: count) else { throw tooShort(needing: count) }
        return view
    }

    /// Reads a `u32` length and that many bytes of UTF-8; `field` names the field in errors.
    mutating func string(_ field: String) throws(WireError) -> String {
        let length = Int(try u32())
        let utf8 = try bytes(count: length)
        guard let string = String(validating: utf8, as: UTF8.self) else {
            throw .invalidUTF8(field: "\(type.name).\(field)")
        }
        return string
    }

    /// Bytes not read yet.
    var remaining: Int { reader.remaining }

    /// Throws `trailingBytes` if any byte is left unread.
    func expectEnd() throws(WireError) {
        guard reader.remaining == 0 else { throw .trailingBytes(type: type, count: reader.remaining) }
    }
}
