import PSWire
import XCTest

final class MessageCodecTests: XCTestCase {
    /// The golden examples plus variants that reach every branch of the codec.
    static let roundTripMessages: [Message] =
        Golden.examples.map(\.message) + [
            .hello(Hello(role: .server, maxVersion: 3, name: "wörker-β ✓")),
            .hello(Hello(role: .control, name: "")),
            .welcome(Welcome(assignedID: .max, rank: -1, config: "")),
            .reject(Reject(code: ErrorCode(rawValue: 999), reason: "a code from the future")),
            .error(ErrorMessage(code: .internalError, message: "")),
            .register(Register(tensors: [])),
            .register(
                Register(tensors: [
                    TensorSpec(name: "scalar", shape: [], initializer: .constant(-2.5)),
                    TensorSpec(
                        name: "u", shape: [1, 2, 3, 4, 5, 6, 7, 8], initializer: .uniform(low: -1, high: 1, seed: 9)),
                    TensorSpec(name: "n", shape: [7], initializer: .normal(mean: 0.5, std: 0.01, seed: .max)),
                    TensorSpec(name: "g", shape: [784, 128], initializer: .glorotUniform(seed: 0)),
                    TensorSpec(name: "z", shape: [1 << 20, 1 << 19], initializer: .zeros),
                ])
            ),
            .registered(Registered(shardElements: [], tensorCount: 0, totalElements: 0)),
            .registered(Registered(shardElements: [1, 0, .max - 1], tensorCount: 3, totalElements: .max)),
            .push(Push(shard: 0, clock: 0, baseVersion: 0, floats: [])),
            .push(
                Push(shard: .max, clock: .max, baseVersion: .max, floats: (0..<1000).map { Float($0) * 0.25 - 100 })
            ),
            .pushPull(
                Push(shard: 3, clock: 1, baseVersion: 0, floats: [.infinity, -.infinity, .leastNonzeroMagnitude])),
            .pushAck(PushAck(shard: 2, status: .droppedStale, version: 10, staleness: 7)),
            .pushAck(PushAck(shard: 2, status: PushStatus(rawValue: 77), version: 0, staleness: 0)),
            .pullReply(PullReply(shard: 0, version: 0, floats: [])),
            .pullReply(PullReply(shard: 9, version: .max, floats: [.greatestFiniteMagnitude, -0.0, 1e-30])),
            .clock(ClockReport(rank: 3, clock: .max, loss: .infinity, samples: 0)),
            .clockAck(ClockAck(jobState: .stopping, minClock: 0)),
            .heartbeatAck(HeartbeatAck(jobState: .finished)),
            .heartbeatAck(HeartbeatAck(jobState: JobState(rawValue: 12))),
            .leave(Leave(rank: 1, reason: .interrupted)),
            .leave(Leave(rank: 2, reason: .error)),
            .leave(Leave(rank: 2, reason: LeaveReason(rawValue: 40))),
            .checkpoint(CheckpointRequest(wait: false)),
            .shutdown(ShutdownRequest(checkpoint: false)),
            .checkpointReply(CheckpointReply(step: 0, durable: false, path: "")),
            .statusReply(StatusReply(json: "{\"ünïcode\":\"日本\"}")),
        ]

    func test_roundTrip_everyMessage_decodesToAnEqualMessage() throws {
        for message in Self.roundTripMessages {
            let payload = MessageCodec.encodePayload(message)
            XCTAssertEqual(try MessageCodec.decodePayload(type: message.type, bytes: payload), message)
        }
    }

    func test_roundTrip_everyMessageAsAFrame_keepsHeaderFlagsAndRequestID() throws {
        for (index, message) in Self.roundTripMessages.enumerated() {
            let requestID = UInt64(index) * 0x0101_0101_0101
            let bytes = MessageCodec.encodeFrame(message, requestID: requestID)
            let frame = try MessageCodec.decodeFrame(bytes: bytes)
            XCTAssertEqual(frame.message, message)
            XCTAssertEqual(frame.header.requestID, requestID)
            XCTAssertEqual(frame.header.type, message.type)
            XCTAssertEqual(frame.header.version, WireProtocol.version)
            XCTAssertEqual(frame.header.flags, message.isReply ? .reply : [])
            XCTAssertEqual(Int(frame.header.payloadLength), bytes.count - WireProtocol.headerSize)
        }
    }

    func test_roundTrip_coversEveryKnownMessageType() {
        let covered = Set(Self.roundTripMessages.map(\.type))
        XCTAssertEqual(covered, Set(MessageType.allKnown))
    }

    func test_encodePayload_tensorMessages_putFloatsAfterTheirPrefix() {
        let push = Push(shard: 1, clock: 4, baseVersion: 3, floats: [0.5, -1, 2])
        let payload = MessageCodec.encodePayload(.push(push))
        XCTAssertEqual(payload.count, PushPrefix.size + 12)
        XCTAssertEqual(Array(payload[24..<28]), [0x00, 0x00, 0x00, 0x3f])
        let reply = MessageCodec.encodePayload(.pullReply(PullReply(shard: 1, version: 4, floats: [1])))
        XCTAssertEqual(reply.count, PullReplyPrefix.size + 4)
        XCTAssertEqual(Array(reply[16..<20]), [0x00, 0x00, 0x80, 0x3f])
    }

    func test_decodePayload_everyKnownType_rejectsAPayloadBelowItsMinimum() {
        for type in MessageType.allKnown {
            guard let minimum = type.minimumPayloadLength, minimum > 0 else { continue }
            let short = [UInt8](repeating: 0, count: minimum - 1)
            assertThrows(.payloadTooShort(type: type, minimum: minimum, got: minimum - 1)) {
                try MessageCodec.decodePayload(type: type, bytes: short)
            }
        }
    }

    func test_decodePayload_zeroLengthPush_throwsPayloadTooShort() {
        assertThrows(.payloadTooShort(type: .push, minimum: 24, got: 0)) {
            try MessageCodec.decodePayload(type: .push, bytes: [])
        }
        assertThrows(.payloadTooShort(type: .pull, minimum: 16, got: 0)) {
            try MessageCodec.decodePayload(type: .pull, bytes: [])
        }
    }

    func test_decodePayload_unknownType_throwsUnknownMessageType() {
        assertThrows(.unknownMessageType(0x00ff)) {
            try MessageCodec.decodePayload(type: MessageType(rawValue: 0x00ff), bytes: [1, 2, 3])
        }
    }

    func test_decodePayload_trailingBytes_throwsTrailingBytes() {
        let pull = MessageCodec.encodePayload(.pull(Pull(shard: 1, clock: 5))) + [0]
        assertThrows(.trailingBytes(type: .pull, count: 1)) { try MessageCodec.decodePayload(type: .pull, bytes: pull) }
        assertThrows(.trailingBytes(type: .metricsAck, count: 3)) {
            try MessageCodec.decodePayload(type: .metricsAck, bytes: [1, 2, 3])
        }
        let hello = MessageCodec.encodePayload(.hello(Hello(role: .worker, name: "w"))) + [0, 0]
        assertThrows(.trailingBytes(type: .hello, count: 2)) {
            try MessageCodec.decodePayload(type: .hello, bytes: hello)
        }
    }

    func test_decodePayload_pushCountDisagreeingWithFloats_throwsElementCountMismatch() {
        var writer = ByteWriter()
        writer.writeInteger(UInt32(1))  // shard
        writer.writeInteger(UInt32(4))  // count: 4 declared
        writer.writeInteger(UInt64(4))  // clock
        writer.writeInteger(UInt64(3))  // baseVersion
        writer.writeFloats([0.5, -1, 2])  // 3 present
        assertThrows(.elementCountMismatch(type: .push, declared: 4, actual: 3)) {
            try MessageCodec.decodePayload(type: .push, bytes: writer.bytes)
        }
        assertThrows(.elementCountMismatch(type: .pushPull, declared: 4, actual: 3)) {
            try MessageCodec.decodePayload(type: .pushPull, bytes: writer.bytes)
        }
    }

    func test_decodePayload_pullReplyWithMisalignedFloats_throwsMisalignedPayload() {
        var payload = MessageCodec.encodePayload(.pullReply(PullReply(shard: 1, version: 4, floats: [1, 2, 3])))
        payload.removeLast()
        assertThrows(.misalignedPayload(type: .pullReply, floatBytes: 11)) {
            try MessageCodec.decodePayload(type: .pullReply, bytes: payload)
        }
        var push = MessageCodec.encodePayload(.push(Push(shard: 1, clock: 4, baseVersion: 3, floats: [1, 2, 3])))
        push.append(0)
        assertThrows(.misalignedPayload(type: .push, floatBytes: 13)) {
            try MessageCodec.decodePayload(type: .push, bytes: push)
        }
    }

    func test_decodePayload_hugeDeclaredFloatCount_throwsWithoutAllocating() {
        var writer = ByteWriter()
        writer.writeInteger(UInt32(0))
        writer.writeInteger(UInt32.max)
        writer.writeInteger(UInt64(0))
        writer.writeInteger(UInt64(0))
        writer.writeFloats([1])
        assertThrows(.elementCountMismatch(type: .push, declared: Int(UInt32.max), actual: 1)) {
            try MessageCodec.decodePayload(type: .push, bytes: writer.bytes)
        }
    }

    func test_decodePayload_invalidUTF8_throwsInvalidUTF8NamingTheField() {
        let sequences: [[UInt8]] = [[0xff, 0xfe], [0xc0, 0x80], [0xed, 0xa0, 0x80], [0x61, 0xe2, 0x82], [0x80]]
        for bad in sequences {
            var hello = ByteWriter()
            hello.writeInteger(UInt8(1))
            hello.writeInteger(UInt8(0))
            hello.writeInteger(UInt16(1))
            hello.writeInteger(UInt32(bad.count))
            bad.withUnsafeBytes { hello.writeBytes($0) }
            hello.writeString("")
            assertThrows(.invalidUTF8(field: "hello.name")) {
                try MessageCodec.decodePayload(type: .hello, bytes: hello.bytes)
            }
        }
        var checkpoint = ByteWriter()
        checkpoint.writeInteger(UInt64(5))
        checkpoint.writeInteger(UInt32(1))
        checkpoint.writeInteger(UInt32(0))
        checkpoint.writeInteger(UInt32(1))
        checkpoint.writeInteger(UInt8(0xc3))
        assertThrows(.invalidUTF8(field: "checkpointReply.path")) {
            try MessageCodec.decodePayload(type: .checkpointReply, bytes: checkpoint.bytes)
        }
        var register = ByteWriter()
        register.writeInteger(UInt32(1))
        register.writeInteger(UInt32(2))
        register.writeInteger(UInt16(0xfffe))
        register.writeZeros(count: 40)
        assertThrows(.invalidUTF8(field: "register.tensors[0].name")) {
            try MessageCodec.decodePayload(type: .register, bytes: register.bytes)
        }
    }

    func test_decodePayload_stringLongerThanThePayload_throwsPayloadTooShort() {
        var hello = ByteWriter()
        hello.writeInteger(UInt8(1))
        hello.writeInteger(UInt8(0))
        hello.writeInteger(UInt16(1))
        hello.writeInteger(UInt32.max)
        hello.writeString("")
        assertThrows(.payloadTooShort(type: .hello, minimum: 8 + Int(UInt32.max), got: 12)) {
            try MessageCodec.decodePayload(type: .hello, bytes: hello.bytes)
        }
        var status = ByteWriter()
        status.writeInteger(UInt32(10))
        status.writeString("abc")
        assertThrows(.payloadTooShort(type: .statusReply, minimum: 14, got: 11)) {
            try MessageCodec.decodePayload(type: .statusReply, bytes: status.bytes)
        }
    }

    func test_decodePayload_badRole_throwsInvalidField() {
        for role: UInt8 in [0, 4, 255] {
            let payload: [UInt8] = [role, 0, 1, 0] + [UInt8](repeating: 0, count: 8)
            assertInvalidField(type: .hello, field: "role", mentioning: "\(role)") {
                try MessageCodec.decodePayload(type: .hello, bytes: payload)
            }
        }
        let versionZero: [UInt8] = [1, 0, 0, 0] + [UInt8](repeating: 0, count: 8)
        assertInvalidField(type: .hello, field: "maxVersion", mentioning: "0") {
            try MessageCodec.decodePayload(type: .hello, bytes: versionZero)
        }
    }

    func test_decodePayload_otherOutOfDomainFields_throwInvalidField() {
        var welcome = ByteWriter()
        welcome.writeInteger(UInt32(1))
        welcome.writeInteger(Int32(-2))
        welcome.writeString("{}")
        assertInvalidField(type: .welcome, field: "rank", mentioning: "-2") {
            try MessageCodec.decodePayload(type: .welcome, bytes: welcome.bytes)
        }
        assertInvalidField(type: .status, field: "format", mentioning: "1") {
            try MessageCodec.decodePayload(type: .status, bytes: [1, 0, 0, 0])
        }
        var checkpoint = ByteWriter()
        checkpoint.writeInteger(UInt64(5))
        checkpoint.writeInteger(UInt32(2))
        checkpoint.writeInteger(UInt32(0))
        checkpoint.writeString("/ckpt")
        assertInvalidField(type: .checkpointReply, field: "durable", mentioning: "2") {
            try MessageCodec.decodePayload(type: .checkpointReply, bytes: checkpoint.bytes)
        }
        var registered = ByteWriter()
        registered.writeInteger(UInt32(1))
        registered.writeInteger(UInt32(2))
        registered.writeInteger(UInt64(10))
        registered.writeInteger(UInt64(4))
        registered.writeInteger(UInt64(5))
        assertInvalidField(type: .registered, field: "totalElements", mentioning: "10") {
            try MessageCodec.decodePayload(type: .registered, bytes: registered.bytes)
        }
    }

    func test_decodePayload_registeredShardCountBeyondThePayload_throwsPayloadTooShort() {
        var registered = ByteWriter()
        registered.writeInteger(UInt32(1))
        registered.writeInteger(UInt32.max)
        registered.writeInteger(UInt64(0))
        assertThrows(.payloadTooShort(type: .registered, minimum: 16 + 8 * Int(UInt32.max), got: 16)) {
            try MessageCodec.decodePayload(type: .registered, bytes: registered.bytes)
        }
    }

    func test_decodePayload_flagBitsOtherThanWait_areIgnoredInCheckpoint() throws {
        XCTAssertEqual(
            try MessageCodec.decodePayload(type: .checkpoint, bytes: [0xff, 0xff, 0xff, 0xff]),
            .checkpoint(CheckpointRequest(wait: true))
        )
        XCTAssertEqual(
            try MessageCodec.decodePayload(type: .checkpoint, bytes: [0xfe, 0, 0, 0x80]),
            .checkpoint(CheckpointRequest(wait: false))
        )
    }

    func test_decodePayload_reservedFieldsNonZero_areIgnored() throws {
        var pull = MessageCodec.encodePayload(.pull(Pull(shard: 1, clock: 5)))
        pull[4] = 0xaa
        XCTAssertEqual(try MessageCodec.decodePayload(type: .pull, bytes: pull), .pull(Pull(shard: 1, clock: 5)))
    }

    // MARK: register

    /// A register payload of one tensor, with every field open to tampering.
    private func registerPayload(
        tensorCount: UInt32 = 1,
        name: String = "w",
        rank: UInt32? = nil,
        dims: [UInt64] = [2, 3],
        kind: UInt8 = 0,
        a: Double = 0,
        b: Double = 0
    ) -> [UInt8] {
        var writer = ByteWriter()
        writer.writeInteger(tensorCount)
        writer.writeString(name)
        writer.writeInteger(rank ?? UInt32(dims.count))
        for dimension in dims { writer.writeInteger(dimension) }
        writer.writeInteger(kind)
        writer.writeZeros(count: 7)
        writer.writeDouble(a)
        writer.writeDouble(b)
        writer.writeInteger(UInt64(7))
        return writer.bytes
    }

    func test_decodeRegister_wellFormedPayload_decodes() throws {
        XCTAssertEqual(
            try MessageCodec.decodePayload(type: .register, bytes: registerPayload(kind: 2, a: -1, b: 1)),
            .register(
                Register(tensors: [
                    TensorSpec(name: "w", shape: [2, 3], initializer: .uniform(low: -1, high: 1, seed: 7))
                ]))
        )
    }

    func test_decodeRegister_rankAboveEight_throwsInvalidField() {
        let payload = registerPayload(dims: [UInt64](repeating: 1, count: 9))
        assertInvalidField(type: .register, field: "tensors[0].rank", mentioning: "9") {
            try MessageCodec.decodePayload(type: .register, bytes: payload)
        }
    }

    func test_decodeRegister_hugeRankWithoutDims_throwsBeforeReadingDims() {
        let payload = registerPayload(rank: .max, dims: [])
        assertInvalidField(type: .register, field: "tensors[0].rank", mentioning: "\(UInt32.max)") {
            try MessageCodec.decodePayload(type: .register, bytes: payload)
        }
    }

    func test_decodeRegister_dimsProductOverflowing_throwsInvalidField() {
        let payload = registerPayload(dims: [1 << 30, 1 << 30, 1 << 30])
        assertInvalidField(type: .register, field: "tensors[0].dims", mentioning: "\(1 << 40)") {
            try MessageCodec.decodePayload(type: .register, bytes: payload)
        }
        let wrapping = registerPayload(dims: [1 << 40, 1 << 40, 1 << 40, 1 << 40])
        assertInvalidField(type: .register, field: "tensors[0].dims", mentioning: "elements") {
            try MessageCodec.decodePayload(type: .register, bytes: wrapping)
        }
    }

    func test_decodeRegister_zeroOrHugeDimension_throwsInvalidField() {
        assertInvalidField(type: .register, field: "tensors[0].dims[1]", mentioning: "0") {
            try MessageCodec.decodePayload(type: .register, bytes: registerPayload(dims: [2, 0]))
        }
        assertInvalidField(type: .register, field: "tensors[0].dims[0]", mentioning: "\(UInt64.max)") {
            try MessageCodec.decodePayload(type: .register, bytes: registerPayload(dims: [.max]))
        }
    }

    func test_decodeRegister_unknownInitKind_throwsInvalidField() {
        assertInvalidField(type: .register, field: "tensors[0].init", mentioning: "5") {
            try MessageCodec.decodePayload(type: .register, bytes: registerPayload(kind: 5))
        }
    }

    func test_decodeRegister_invalidInitParameters_throwInvalidField() {
        let cases: [(kind: UInt8, a: Double, b: Double, text: String)] = [
            (1, .nan, 0, "nan"), (2, 1, -1, "-1.0"), (2, 0, .infinity, "inf"), (3, 0, -1, "std -1.0"),
        ]
        for (kind, a, b, text) in cases {
            assertInvalidField(type: .register, field: "tensors[0].init", mentioning: text) {
                try MessageCodec.decodePayload(type: .register, bytes: registerPayload(kind: kind, a: a, b: b))
            }
        }
    }

    func test_decodeRegister_emptyName_throwsInvalidField() {
        assertInvalidField(type: .register, field: "tensors[0].name", mentioning: "empty") {
            try MessageCodec.decodePayload(type: .register, bytes: registerPayload(name: ""))
        }
    }

    func test_decodeRegister_tensorCountBeyondThePayload_throwsBeforeReserving() {
        let payload = registerPayload(tensorCount: .max)
        assertThrows(.payloadTooShort(type: .register, minimum: 4 + 40 * Int(UInt32.max), got: payload.count)) {
            try MessageCodec.decodePayload(type: .register, bytes: payload)
        }
    }

    func test_decodeRegister_truncatedTensor_throwsPayloadTooShort() {
        let payload = registerPayload()
        let cut = Array(payload.dropLast(3))
        assertThrows(.payloadTooShort(type: .register, minimum: payload.count, got: cut.count)) {
            try MessageCodec.decodePayload(type: .register, bytes: cut)
        }
    }

    func test_shutdown_defaultIsTheEmptyV1Payload_noCheckpointIsFlagsBit0() throws {
        XCTAssertEqual(MessageCodec.encodePayload(.shutdown()), [])
        XCTAssertEqual(MessageCodec.encodePayload(.shutdown(ShutdownRequest(checkpoint: false))), [1, 0, 0, 0])
        XCTAssertEqual(try MessageCodec.decodePayload(type: .shutdown, bytes: []), .shutdown(ShutdownRequest()))
        XCTAssertEqual(
            try MessageCodec.decodePayload(type: .shutdown, bytes: [1, 0, 0, 0]),
            .shutdown(ShutdownRequest(checkpoint: false)))
    }

    func test_decodeFrame_extraBytesAfterThePayload_throwsTrailingBytes() {
        let frame = MessageCodec.encodeFrame(.shutdown(), requestID: 5) + [0xaa]
        assertThrows(.trailingBytes(type: .shutdown, count: 1)) { try MessageCodec.decodeFrame(bytes: frame) }
    }

    func test_decodeFrame_missingPayloadBytes_throwsTruncatedBody() {
        let frame = MessageCodec.encodeFrame(.pull(Pull(shard: 1, clock: 5)), requestID: 8)
        assertThrows(.truncatedBody(expected: 16, got: 10)) {
            try MessageCodec.decodeFrame(bytes: Array(frame.dropLast(6)))
        }
    }

    func test_errorMessage_fromWireError_carriesItsCodeAndDescription() {
        let error = WireError.elementCountMismatch(type: .push, declared: 3, actual: 2)
        XCTAssertEqual(
            ErrorMessage(error),
            ErrorMessage(code: .lengthMismatch, message: "push declares 3 floats but its payload carries 2")
        )
    }

    func test_registered_fromLayout_describesTheShards() {
        let layout = ShardLayout(tensorElementCounts: [6, 3], shardCount: 4)
        XCTAssertEqual(
            Registered(layout: layout),
            Registered(shardElements: [2, 2, 2, 3], tensorCount: 2, totalElements: 9)
        )
    }
}

/// Asserts that `body` throws `invalidField` for `type` and `field` with a reason containing `text`.
func assertInvalidField<T>(
    type: MessageType,
    field: String,
    mentioning text: String,
    file: StaticString = #filePath,
    line: UInt = #line,
    _ body: () throws -> T
) {
    do {
        let value = try body()
        XCTFail("expected invalidField(\(type.name), \(field)), got the value \(value)", file: file, line: line)
    } catch {
        guard let error = error as? WireError, case .invalidField(let actualType, let actualField, let reason) = error
        else {
            XCTFail("expected invalidField(\(type.name), \(field)), got \(error)", file: file, line: line)
            return
        }
        XCTAssertEqual(actualType, type, file: file, line: line)
        XCTAssertEqual(actualField, field, file: file, line: line)
        XCTAssertTrue(reason.contains(text), "'\(reason)' does not mention '\(text)'", file: file, line: line)
        XCTAssertEqual(error.code, .invalidArgument, file: file, line: line)
    }
}
