/// The start of an `exchange` payload, everything before the gradient: the step's clock report and one base
/// version per shard; the flat gradient (every shard's slice, in layout order) follows at `size(shardCount:)`.
///
/// Decoding checks every length against the payload before using it. See proto-docs/protocol.md, "exchange".
public struct ExchangePrefix: Sendable, Equatable {
    /// The bytes before the base versions: rank, shard count, clock, loss, samples.
    public static let fixedSize = 32

    /// The worker's rank.
    public var rank: UInt32
    /// The step the gradient belongs to; the reply holds the weights for step `clock + 1`.
    public var clock: UInt64
    /// The mean loss of step `clock`'s batch.
    public var loss: Double
    /// The samples in step `clock`'s batch (what `clock` reports as samples).
    public var samples: UInt64
    /// Each shard's version the gradient was computed from, in shard order.
    public var baseVersions: [UInt64]
    /// The number of gradient values (the model's element count); with `encoding` `.none`, the float32 values
    /// after the prefix.
    public var count: UInt32
    /// How the gradient after the prefix is encoded (the low byte of the word after `count`; 0, raw float32, by
    /// default).
    public var encoding: GradientEncoding
    /// How the worker asks for the reply's weights (the word's second byte): `.none` (float32), `.fp16` or
    /// `.bf16` (`psserver --compress-pulls`).
    public var replyEncoding: GradientEncoding

    /// Creates a prefix from its fields.
    public init(
        rank: UInt32, clock: UInt64, loss: Double, samples: UInt64, baseVersions: [UInt64], count: UInt32,
        encoding: GradientEncoding = .none, replyEncoding: GradientEncoding = .none
    ) {
        self.rank = rank
        self.clock = clock
        self.loss = loss
        self.samples = samples
        self.baseVersions = baseVersions
        self.count = count
        self.encoding = encoding
        self.replyEncoding = replyEncoding
    }

    /// The prefix size for `shardCount` shards: 32 fixed bytes, 8 per shard, then count and the encoding.
    public static func size(shardCount: Int) -> Int { fixedSize + 8 * shardCount + 8 }

    /// This prefix's size.
    public var size: Int { Self.size(shardCount: baseVersions.count) }

    /// Writes exactly `size` bytes at the start of `buffer`.
    public func encode(into buffer: UnsafeMutableRawBufferPointer) {
        precondition(buffer.count >= size, "an exchange prefix needs \(size) bytes")
        buffer.storeBytes(of: rank.littleEndian, toByteOffset: 0, as: UInt32.self)
        buffer.storeBytes(of: UInt32(baseVersions.count).littleEndian, toByteOffset: 4, as: UInt32.self)
        buffer.storeBytes(of: clock.littleEndian, toByteOffset: 8, as: UInt64.self)
        buffer.storeBytes(of: loss.bitPattern.littleEndian, toByteOffset: 16, as: UInt64.self)
        buffer.storeBytes(of: samples.littleEndian, toByteOffset: 24, as: UInt64.self)
        for (index, version) in baseVersions.enumerated() {
            buffer.storeBytes(of: version.littleEndian, toByteOffset: Self.fixedSize + 8 * index, as: UInt64.self)
        }
        let tail = Self.fixedSize + 8 * baseVersions.count
        buffer.storeBytes(of: count.littleEndian, toByteOffset: tail, as: UInt32.self)
        let word = (encoding.rawValue & 0xFF) | (replyEncoding.rawValue & 0xFF) << 8
        buffer.storeBytes(of: word.littleEndian, toByteOffset: tail + 4, as: UInt32.self)
    }

    /// Reads the fixed 32 bytes; returns the prefix without base versions and the shard count it announces, after
    /// checking that a payload of `payloadLength` bytes can hold that many.
    public static func decodeFixed(_ bytes: UnsafeRawBufferPointer, payloadLength: Int) throws(WireError) -> (
        prefix: ExchangePrefix, shardCount: Int
    ) {
        guard bytes.count >= fixedSize else {
            throw .payloadTooShort(type: .exchange, minimum: fixedSize, got: bytes.count)
        }
        let shardCount = Int(UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 4, as: UInt32.self)))
        guard size(shardCount: shardCount) <= payloadLength else {
            throw .payloadTooShort(type: .exchange, minimum: size(shardCount: shardCount), got: payloadLength)
        }
        let prefix = ExchangePrefix(
            rank: UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 0, as: UInt32.self)),
            clock: UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: 8, as: UInt64.self)),
            loss: Double(bitPattern: UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: 16, as: UInt64.self))),
            samples: UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: 24, as: UInt64.self)),
            baseVersions: [], count: 0)
        return (prefix, shardCount)
    }

    /// Reads the base versions and the count from the `8 * shardCount + 8` bytes after the fixed part.
    public mutating func decodeTail(_ bytes: UnsafeRawBufferPointer, shardCount: Int) throws(WireError) {
        let needed = 8 * shardCount + 8
        guard bytes.count >= needed else {
            throw .payloadTooShort(type: .exchange, minimum: Self.fixedSize + needed, got: Self.fixedSize + bytes.count)
        }
        baseVersions = (0..<shardCount).map {
            UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: 8 * $0, as: UInt64.self))
        }
        count = UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 8 * shardCount, as: UInt32.self))
        let word = UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 8 * shardCount + 4, as: UInt32.self))
        guard word >> 16 == 0 else {
            throw .invalidField(
                type: .exchange, field: "exchange.encoding",
                reason: "the word after count is 0x\(String(word, radix: 16)); its high 16 bits must be 0")
        }
        encoding = GradientEncoding(rawValue: word & 0xFF)
        replyEncoding = GradientEncoding(rawValue: word >> 8)
    }

    /// Reads a whole prefix from the start of a payload.
    public static func decode(_ bytes: UnsafeRawBufferPointer) throws(WireError) -> ExchangePrefix {
        var (prefix, shardCount) = try decodeFixed(bytes, payloadLength: bytes.count)
        try prefix.decodeTail(UnsafeRawBufferPointer(rebasing: bytes[fixedSize...]), shardCount: shardCount)
        return prefix
    }

    /// Checks that the bytes after the prefix can hold `count` values in the prefix's encoding (exactly `count`
    /// float32 values when uncompressed) and that the encoding is known.
    public static func validate(_ prefix: ExchangePrefix, payloadLength: Int) throws(WireError) {
        guard [.none, .fp16, .bf16].contains(prefix.replyEncoding) else {
            throw .invalidField(
                type: .exchange, field: "exchange.replyEncoding",
                reason: "weights travel as 0 float32, 1 fp16 or 2 bf16, not \(prefix.replyEncoding.rawValue)")
        }
        guard prefix.encoding != .none else {
            try validateFloats(
                declared: prefix.count, payloadLength: payloadLength, prefixSize: prefix.size, type: .exchange)
            return
        }
        guard payloadLength >= prefix.size else {
            throw .payloadTooShort(type: .exchange, minimum: prefix.size, got: payloadLength)
        }
        try GradientCodec.validateLength(
            prefix.encoding, count: Int(prefix.count), shardCount: prefix.baseVersions.count,
            bodyBytes: payloadLength - prefix.size, type: .exchange)
    }
}

/// The start of an `exchangeReply` payload: the job's state, the slowest live clock and every shard's version;
/// the flat weights for the next step follow at `size(shardCount:)`. See proto-docs/protocol.md, "exchangeReply".
public struct ExchangeReplyPrefix: Sendable, Equatable {
    /// The bytes before the versions: job state, shard count, min clock.
    public static let fixedSize = 16

    /// What `clockAck` would have said: running, finished or stopping.
    public var jobState: JobState
    /// The smallest clock among the live workers.
    public var minClock: UInt64
    /// Each shard's version the weights are at, in shard order.
    public var versions: [UInt64]
    /// The number of weights after the prefix (float32 values when `encoding` is `.none`).
    public var count: UInt32
    /// How the weights are encoded: `.none` (float32), `.fp16` or `.bf16`, as the exchange asked (the word after
    /// `count`).
    public var encoding: GradientEncoding

    /// Creates a prefix from its fields.
    public init(
        jobState: JobState, minClock: UInt64, versions: [UInt64], count: UInt32, encoding: GradientEncoding = .none
    ) {
        self.jobState = jobState
        self.minClock = minClock
        self.versions = versions
        self.count = count
        self.encoding = encoding
    }

    /// The prefix size for `shardCount` shards.
    public static func size(shardCount: Int) -> Int { fixedSize + 8 * shardCount + 8 }

    /// This prefix's size.
    public var size: Int { Self.size(shardCount: versions.count) }

    /// Writes exactly `size` bytes at the start of `buffer`.
    public func encode(into buffer: UnsafeMutableRawBufferPointer) {
        precondition(buffer.count >= size, "an exchange reply prefix needs \(size) bytes")
        buffer.storeBytes(of: jobState.rawValue.littleEndian, toByteOffset: 0, as: UInt32.self)
        buffer.storeBytes(of: UInt32(versions.count).littleEndian, toByteOffset: 4, as: UInt32.self)
        buffer.storeBytes(of: minClock.littleEndian, toByteOffset: 8, as: UInt64.self)
        for (index, version) in versions.enumerated() {
            buffer.storeBytes(of: version.littleEndian, toByteOffset: Self.fixedSize + 8 * index, as: UInt64.self)
        }
        let tail = Self.fixedSize + 8 * versions.count
        buffer.storeBytes(of: count.littleEndian, toByteOffset: tail, as: UInt32.self)
        buffer.storeBytes(of: encoding.rawValue.littleEndian, toByteOffset: tail + 4, as: UInt32.self)
    }

    /// The shard count announced by the fixed part, checked against a payload of `payloadLength` bytes.
    public static func shardCount(_ bytes: UnsafeRawBufferPointer, payloadLength: Int) throws(WireError) -> Int {
        guard bytes.count >= fixedSize else {
            throw .payloadTooShort(type: .exchangeReply, minimum: fixedSize, got: bytes.count)
        }
        let shardCount = Int(UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 4, as: UInt32.self)))
        guard size(shardCount: shardCount) <= payloadLength else {
            throw .payloadTooShort(type: .exchangeReply, minimum: size(shardCount: shardCount), got: payloadLength)
        }
        return shardCount
    }

    /// Reads a whole prefix from the start of `bytes`, which must hold it.
    public static func decode(_ bytes: UnsafeRawBufferPointer) throws(WireError) -> ExchangeReplyPrefix {
        let shardCount = try shardCount(bytes, payloadLength: bytes.count)
        let tail = fixedSize + 8 * shardCount
        return ExchangeReplyPrefix(
            jobState: JobState(rawValue: UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 0, as: UInt32.self))),
            minClock: UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: 8, as: UInt64.self)),
            versions: (0..<shardCount).map {
                UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: fixedSize + 8 * $0, as: UInt64.self))
            },
            count: UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: tail, as: UInt32.self)),
            encoding: GradientEncoding(
                rawValue: UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: tail + 4, as: UInt32.self))))
    }

    /// Checks that the bytes after the prefix are exactly `count` weights in the prefix's encoding (float32, fp16
    /// or bf16).
    public static func validate(_ prefix: ExchangeReplyPrefix, payloadLength: Int) throws(WireError) {
        switch prefix.encoding {
        case .none:
            try validateFloats(
                declared: prefix.count, payloadLength: payloadLength, prefixSize: prefix.size, type: .exchangeReply)
        case .fp16, .bf16:
            guard payloadLength >= prefix.size else {
                throw .payloadTooShort(type: .exchangeReply, minimum: prefix.size, got: payloadLength)
            }
            try GradientCodec.validateLength(
                prefix.encoding, count: Int(prefix.count), shardCount: prefix.versions.count,
                bodyBytes: payloadLength - prefix.size, type: .exchangeReply)
        default:
            throw .invalidField(
                type: .exchangeReply, field: "exchangeReply.encoding",
                reason: "weights travel as 0 float32, 1 fp16 or 2 bf16, not \(prefix.encoding.rawValue)")
        }
    }
}

/// A worker's whole step in one request (`exchange`, 0x0017): the gradient for every shard, the clock report,
/// and the request for the next step's weights.
public struct Exchange: Sendable, Equatable {
    /// Everything but the gradient.
    public var prefix: ExchangePrefix
    /// The flat gradient, every shard's slice in layout order (empty when the gradient is compressed).
    public var gradient: [Float]
    /// The compressed gradient's bytes, as `prefix.encoding` lays them out (empty when uncompressed).
    public var compressed: [UInt8]

    /// Creates an uncompressed exchange; `prefix.count` is set from `gradient`.
    public init(prefix: ExchangePrefix, gradient: [Float]) {
        self.prefix = prefix
        self.prefix.count = UInt32(gradient.count)
        self.prefix.encoding = .none
        self.gradient = gradient
        self.compressed = []
    }

    /// Creates a compressed exchange: `prefix.count` and `prefix.encoding` say how many values `compressed`
    /// encodes and how.
    public init(prefix: ExchangePrefix, compressed: [UInt8]) {
        self.prefix = prefix
        self.gradient = []
        self.compressed = compressed
    }
}

/// The answer to an `exchange` (`exchangeReply`, 0x0018): the weights for the next step.
public struct ExchangeReply: Sendable, Equatable {
    /// Everything but the weights.
    public var prefix: ExchangeReplyPrefix
    /// The flat weights, every shard in layout order (empty when they travel compressed).
    public var weights: [Float]
    /// The weights' fp16 or bf16 bytes, as `prefix.encoding` says (empty when they are float32).
    public var compressed: [UInt8]

    /// Creates a float32 reply; `prefix.count` is set from `weights`.
    public init(prefix: ExchangeReplyPrefix, weights: [Float]) {
        self.prefix = prefix
        self.prefix.count = UInt32(weights.count)
        self.prefix.encoding = .none
        self.weights = weights
        self.compressed = []
    }

    /// Creates a compressed reply: `prefix.count` and `prefix.encoding` say how many weights `compressed` holds
    /// and how.
    public init(prefix: ExchangeReplyPrefix, compressed: [UInt8]) {
        self.prefix = prefix
        self.weights = []
        self.compressed = compressed
    }
}
