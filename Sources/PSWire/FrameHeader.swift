/// The fixed 24-byte header in front of every payload.
///
/// ```
///  0       4       6       8              12              16                              24
/// +-------+-------+-------+---------------+---------------+-------------------------------+
/// | magic |version| type  |     flags     | payloadLength |           requestID           |
/// | SWPS  |  u16  |  u16  |      u32      |      u32      |              u64              |
/// +-------+-------+-------+---------------+---------------+-------------------------------+
/// ```
///
/// See proto-docs/protocol.md, "Frame header".
public struct FrameHeader: Sendable, Equatable {
    /// The protocol version; `WireProtocol.version` for every header this module writes or accepts.
    public var version: UInt16
    /// The message type; may be a type this peer does not know.
    public var type: MessageType
    /// The flags; reserved bits are kept as received.
    public var flags: FrameFlags
    /// The number of payload bytes after the header.
    public var payloadLength: UInt32
    /// The id the requester chose; a reply echoes it.
    public var requestID: UInt64

    /// Creates a header for the current protocol version.
    public init(type: MessageType, flags: FrameFlags, payloadLength: UInt32, requestID: UInt64) {
        version = WireProtocol.version
        self.type = type
        self.flags = flags
        self.payloadLength = payloadLength
        self.requestID = requestID
    }

    /// Writes exactly 24 bytes at the start of `buffer`, which must hold at least that many.
    public func encode(into buffer: UnsafeMutableRawBufferPointer) {
        precondition(buffer.count >= WireProtocol.headerSize, "a frame header needs 24 bytes")
        buffer.storeBytes(of: WireProtocol.magic.littleEndian, toByteOffset: 0, as: UInt32.self)
        buffer.storeBytes(of: version.littleEndian, toByteOffset: 4, as: UInt16.self)
        buffer.storeBytes(of: type.rawValue.littleEndian, toByteOffset: 6, as: UInt16.self)
        buffer.storeBytes(of: flags.rawValue.littleEndian, toByteOffset: 8, as: UInt32.self)
        buffer.storeBytes(of: payloadLength.littleEndian, toByteOffset: 12, as: UInt32.self)
        buffer.storeBytes(of: requestID.littleEndian, toByteOffset: 16, as: UInt64.self)
    }

    /// Validates magic, version and payloadLength <= maxPayloadBytes. Does NOT reject unknown types.
    ///
    /// Reads only the first 24 bytes of `bytes` and allocates nothing, so a receiver can refuse an oversized frame
    /// before reserving room for its payload.
    public static func decode(_ bytes: UnsafeRawBufferPointer, maxPayloadBytes: Int) throws(WireError) -> FrameHeader {
        guard bytes.count >= WireProtocol.headerSize else { throw .truncatedHeader(got: bytes.count) }
        let magic = UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 0, as: UInt32.self))
        guard magic == WireProtocol.magic else { throw .badMagic(magic) }
        let version = UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: 4, as: UInt16.self))
        guard version == WireProtocol.version else { throw .unsupportedVersion(version) }
        let length = UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 12, as: UInt32.self))
        guard UInt64(length) <= UInt64(max(0, maxPayloadBytes)) else {
            throw .frameTooLarge(length: Int(length), maximum: maxPayloadBytes)
        }
        return FrameHeader(
            type: MessageType(rawValue: UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: 6, as: UInt16.self))),
            flags: FrameFlags(rawValue: UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 8, as: UInt32.self))),
            payloadLength: length,
            requestID: UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: 16, as: UInt64.self))
        )
    }
}

/// The fixed 24-byte start of a `push` or `pushPull` payload; the floats follow at payload offset 24.
///
/// Decoding and validating it allocates nothing: it is the receive hot path. See proto-docs/protocol.md, "push".
public struct PushPrefix: Sendable, Equatable {
    /// The prefix size in bytes.
    public static let size = 24

    /// The shard the gradient is for.
    public var shard: UInt32
    /// The number of float32 values after the prefix.
    public var count: UInt32
    /// The step the gradient was computed at.
    public var clock: UInt64
    /// The shard version the gradient was computed from.
    public var baseVersion: UInt64

    /// Creates a prefix from its fields.
    public init(shard: UInt32, count: UInt32, clock: UInt64, baseVersion: UInt64) {
        self.shard = shard
        self.count = count
        self.clock = clock
        self.baseVersion = baseVersion
    }

    /// Writes exactly 24 bytes at the start of `buffer`, which must hold at least that many.
    public func encode(into buffer: UnsafeMutableRawBufferPointer) {
        precondition(buffer.count >= Self.size, "a push prefix needs 24 bytes")
        buffer.storeBytes(of: shard.littleEndian, toByteOffset: 0, as: UInt32.self)
        buffer.storeBytes(of: count.littleEndian, toByteOffset: 4, as: UInt32.self)
        buffer.storeBytes(of: clock.littleEndian, toByteOffset: 8, as: UInt64.self)
        buffer.storeBytes(of: baseVersion.littleEndian, toByteOffset: 16, as: UInt64.self)
    }

    /// Reads the prefix from the first 24 bytes of `bytes`; `type` only names the message in the error.
    public static func decode(_ bytes: UnsafeRawBufferPointer, type: MessageType = .push) throws(WireError)
        -> PushPrefix
    {
        guard bytes.count >= size else { throw .payloadTooShort(type: type, minimum: size, got: bytes.count) }
        return PushPrefix(
            shard: UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 0, as: UInt32.self)),
            count: UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 4, as: UInt32.self)),
            clock: UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: 8, as: UInt64.self)),
            baseVersion: UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: 16, as: UInt64.self))
        )
    }

    /// Validates a push/pushPull payload's length against `count` (misaligned / count mismatch errors).
    public static func validate(_ prefix: PushPrefix, payloadLength: Int, type: MessageType) throws(WireError) {
        try validateFloats(declared: prefix.count, payloadLength: payloadLength, prefixSize: size, type: type)
    }
}

/// The fixed 16-byte start of a `pullReply` payload; the floats follow at payload offset 16.
///
/// Decoding and validating it allocates nothing: it is the receive hot path. See proto-docs/protocol.md, "pullReply".
public struct PullReplyPrefix: Sendable, Equatable {
    /// The prefix size in bytes.
    public static let size = 16

    /// The shard the weights belong to.
    public var shard: UInt32
    /// The number of float32 values after the prefix.
    public var count: UInt32
    /// The shard's version (updates applied) the weights are at.
    public var version: UInt64

    /// Creates a prefix from its fields.
    public init(shard: UInt32, count: UInt32, version: UInt64) {
        self.shard = shard
        self.count = count
        self.version = version
    }

    /// Writes exactly 16 bytes at the start of `buffer`, which must hold at least that many.
    public func encode(into buffer: UnsafeMutableRawBufferPointer) {
        precondition(buffer.count >= Self.size, "a pullReply prefix needs 16 bytes")
        buffer.storeBytes(of: shard.littleEndian, toByteOffset: 0, as: UInt32.self)
        buffer.storeBytes(of: count.littleEndian, toByteOffset: 4, as: UInt32.self)
        buffer.storeBytes(of: version.littleEndian, toByteOffset: 8, as: UInt64.self)
    }

    /// Reads the prefix from the first 16 bytes of `bytes`.
    public static func decode(_ bytes: UnsafeRawBufferPointer) throws(WireError) -> PullReplyPrefix {
        guard bytes.count >= size else { throw .payloadTooShort(type: .pullReply, minimum: size, got: bytes.count) }
        return PullReplyPrefix(
            shard: UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 0, as: UInt32.self)),
            count: UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 4, as: UInt32.self)),
            version: UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
        )
    }

    /// Validates a pullReply payload's length against `count` (misaligned / count mismatch errors).
    public static func validate(_ prefix: PullReplyPrefix, payloadLength: Int) throws(WireError) {
        try validateFloats(declared: prefix.count, payloadLength: payloadLength, prefixSize: size, type: .pullReply)
    }
}

/// Checks that the bytes after a tensor prefix are exactly `declared` float32 values.
func validateFloats(
    declared: UInt32,
    payloadLength: Int,
    prefixSize: Int,
    type: MessageType
) throws(WireError) {
    let floatBytes = payloadLength - prefixSize
    guard floatBytes >= 0 else { throw .payloadTooShort(type: type, minimum: prefixSize, got: payloadLength) }
    guard floatBytes % 4 == 0 else { throw .misalignedPayload(type: type, floatBytes: floatBytes) }
    guard floatBytes / 4 == Int(declared) else {
        throw .elementCountMismatch(type: type, declared: Int(declared), actual: floatBytes / 4)
    }
}
