/// How an `exchange` gradient travels: the code in the exchange prefix's word after `count`.
///
/// 0 (`none`) is today's raw float32 gradient, so an uncompressed exchange is byte-identical to one written before
/// compression existed. See proto-docs/protocol.md, "Compressed gradients".
public struct GradientEncoding: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// `count` float32 values.
    public static let none = GradientEncoding(rawValue: 0)
    /// `count` IEEE binary16 values (round to nearest even, saturated at ±65504).
    public static let fp16 = GradientEncoding(rawValue: 1)
    /// `count` bfloat16 values (the top half of a float32, rounded to nearest even).
    public static let bf16 = GradientEncoding(rawValue: 2)
    /// Per shard, in shard order: u32 k, k ascending u32 indices relative to the shard's slice, k float32 values.
    public static let topK = GradientEncoding(rawValue: 3)

    public var description: String {
        switch self {
        case .none: "none"
        case .fp16: "fp16"
        case .bf16: "bf16"
        case .topK: "topk"
        default: "unknown(\(rawValue))"
        }
    }

    /// Whether this build knows the code.
    public var isKnown: Bool { rawValue <= 3 }
}

/// The job's gradient compression, as `psserver --compression none|fp16|bf16|topk:FRACTION` spells it; carried to
/// every worker in the job description so all of them agree.
public enum CompressionSetting: Sendable, Equatable, CustomStringConvertible {
    case none
    case fp16
    case bf16
    /// The largest-magnitude `fraction` (0 < fraction <= 1) of each shard's gradient, with error feedback.
    case topK(fraction: Double)

    /// Parses `none`, `fp16`, `bf16` or `topk:FRACTION`; nil for anything else.
    public init?(parsing text: String) {
        switch text {
        case "none": self = .none
        case "fp16": self = .fp16
        case "bf16": self = .bf16
        default:
            guard text.hasPrefix("topk:"), let fraction = Double(text.dropFirst("topk:".count)),
                fraction > 0, fraction <= 1
            else { return nil }
            self = .topK(fraction: fraction)
        }
    }

    /// The spelling `init(parsing:)` reads.
    public var description: String {
        switch self {
        case .none: "none"
        case .fp16: "fp16"
        case .bf16: "bf16"
        case .topK(let fraction): "topk:\(fraction)"
        }
    }

    /// The wire code of gradients compressed this way.
    public var encoding: GradientEncoding {
        switch self {
        case .none: .none
        case .fp16: .fp16
        case .bf16: .bf16
        case .topK: .topK
        }
    }

    /// How many of a shard's `elements` values top-k sends: `ceil(fraction * elements)`, at least 1 when the shard
    /// is not empty.
    public static func topKCount(fraction: Double, elements: Int) -> Int {
        guard elements > 0 else { return 0 }
        return min(elements, max(1, Int((fraction * Double(elements)).rounded(.up))))
    }
}

/// Encodes and decodes compressed gradients; pure functions over buffers, no state (the worker keeps the top-k
/// residual, see `GradientCompressor` in PSTraining).
public enum GradientCodec {
    // MARK: Half precision

    /// IEEE binary16 bits of `value`, rounded to nearest even; finite values beyond ±65504 and infinities
    /// saturate to ±65504 (a gradient too large for fp16 still travels, clipped), NaN stays NaN.
    ///
    /// Bit arithmetic rather than `Float16(_:)`, which on x86-64 without F16C is a library call per value.
    @inline(__always)
    public static func fp16Bits(_ value: Float) -> UInt16 {
        var bits = value.bitPattern
        let sign = UInt16(truncatingIfNeeded: (bits >> 16) & 0x8000)
        bits &= 0x7FFF_FFFF
        if bits > 0x7F80_0000 { return sign | 0x7E00 }  // NaN
        // 65520 (0x477FF000) and above round to infinity: saturate everything above 65504 instead.
        if bits > 0x477F_E000 { return sign | 0x7BFF }
        if bits < 0x3880_0000 {
            // Subnormal or zero: adding 0.5 (exponent 126) aligns the 10 mantissa bits at the bottom, and the
            // float addition rounds them to nearest even.
            let aligned = (Float(bitPattern: bits) + Float(bitPattern: 126 << 23)).bitPattern
            return sign | UInt16(truncatingIfNeeded: aligned &- (126 << 23))
        }
        // Normal: rebias the exponent (127 -> 15) and round the 13 dropped bits to nearest even.
        let odd = (bits >> 13) & 1
        bits = bits &+ 0xC800_0FFF &+ odd  // ((15 - 127) << 23) + 0xFFF, wrapping
        return sign | UInt16(truncatingIfNeeded: bits >> 13)
    }

    /// Every binary16 bit pattern's float32 value, built once.
    private static let fp16Table: [Float] = (0...UInt16.max).map { Float(Float16(bitPattern: $0)) }

    /// The float32 value of binary16 bits (exact).
    @inline(__always)
    public static func float(fp16Bits bits: UInt16) -> Float { fp16Table[Int(bits)] }

    /// bfloat16 bits of `value` (the high 16 bits of its float32, rounded to nearest even); NaN stays NaN.
    @inline(__always)
    public static func bf16Bits(_ value: Float) -> UInt16 {
        let bits = value.bitPattern
        if value.isNaN { return UInt16(truncatingIfNeeded: bits >> 16) | 0x0040 }
        let rounded = bits &+ 0x7FFF &+ ((bits >> 16) & 1)
        return UInt16(truncatingIfNeeded: rounded >> 16)
    }

    /// The float32 value of bfloat16 bits (exact).
    @inline(__always)
    public static func float(bf16Bits bits: UInt16) -> Float { Float(bitPattern: UInt32(bits) << 16) }

    /// Writes `values` as 2-byte little-endian fp16 or bf16 words into `bytes` (exactly `2 * values.count` long).
    public static func encodeHalf(
        _ encoding: GradientEncoding, _ values: UnsafeBufferPointer<Float>, into bytes: UnsafeMutableRawBufferPointer
    ) {
        precondition(encoding == .fp16 || encoding == .bf16, "encodeHalf takes fp16 or bf16")
        precondition(bytes.count == 2 * values.count, "a half-precision body holds 2 bytes per value")
        if encoding == .fp16 {
            for index in values.indices {
                bytes.storeBytes(of: fp16Bits(values[index]).littleEndian, toByteOffset: 2 * index, as: UInt16.self)
            }
        } else {
            for index in values.indices {
                bytes.storeBytes(of: bf16Bits(values[index]).littleEndian, toByteOffset: 2 * index, as: UInt16.self)
            }
        }
    }

    /// Rounds `values` in place to what an fp16 or bf16 encode and decode would give (a worker with compressed
    /// pulls does this to float32 pulls, so its weights do not depend on which way they came).
    public static func roundHalf(_ encoding: GradientEncoding, _ values: UnsafeMutableBufferPointer<Float>) {
        precondition(encoding == .fp16 || encoding == .bf16, "roundHalf takes fp16 or bf16")
        if encoding == .fp16 {
            fp16Table.withUnsafeBufferPointer { table in
                for index in values.indices { values[index] = table[Int(fp16Bits(values[index]))] }
            }
        } else {
            for index in values.indices { values[index] = float(bf16Bits: bf16Bits(values[index])) }
        }
    }

    // MARK: Top-k

    /// The indices of the `k` largest-magnitude values, ascending; ties go to the lower index, so the choice is a
    /// function of the values alone (BSP stays bitwise reproducible). NaN counts as larger than any number.
    ///
    /// A radix select on the magnitude bits (non-negative floats order as their bit patterns): a histogram of
    /// the top 11 bits finds the bucket holding the k-th largest magnitude; one more pass takes every value of a
    /// higher bucket and collects that bucket's values, among which two histogram passes over the remaining bits
    /// find the threshold T and how many values equal to T are needed (the lowest-indexed ones). Two passes over
    /// all the values, no sort of them.
    public static func topKIndices(_ values: UnsafeBufferPointer<Float>, k: Int) -> [UInt32] {
        let n = values.count
        guard k > 0 else { return [] }
        guard k < n else { return (0..<UInt32(n)).map { $0 } }
        let counts = UnsafeMutableBufferPointer<Int>.allocate(capacity: 2048)
        defer { counts.deallocate() }
        counts.initialize(repeating: 0)
        for value in values { counts[Int((value.bitPattern & 0x7FFF_FFFF) >> 20)] += 1 }
        var needed = k  // how many values of the threshold's bucket (and then of T itself) to take
        var top = 2047
        while counts[top] < needed {
            needed -= counts[top]
            top -= 1
        }
        let bucket = UInt32(top)
        var taken: [UInt32] = []
        taken.reserveCapacity(k)
        var candidates: [UInt32] = []
        candidates.reserveCapacity(counts[top])
        for index in 0..<n {
            let high = (values[index].bitPattern & 0x7FFF_FFFF) >> 20
            if high > bucket {
                taken.append(UInt32(index))
            } else if high == bucket {
                candidates.append(UInt32(index))
            }
        }
        // The candidates share their top 11 bits: the next 11, then the last 9, fix T.
        var threshold = bucket << 20
        var known: UInt32 = 0x7FF0_0000
        for (shift, width) in [(UInt32(9), UInt32(11)), (0, 9)] {
            let bucketMask: UInt32 = 1 << width - 1
            let (prefix, prefixMask) = (threshold, known)
            counts.initialize(repeating: 0)
            for index in candidates {
                let magnitude = values[Int(index)].bitPattern & 0x7FFF_FFFF
                if magnitude & prefixMask == prefix { counts[Int((magnitude >> shift) & bucketMask)] += 1 }
            }
            var digit = Int(bucketMask)
            while counts[digit] < needed {
                needed -= counts[digit]
                digit -= 1
            }
            threshold |= UInt32(digit) << shift
            known |= bucketMask << shift
        }
        for index in candidates {
            let magnitude = values[Int(index)].bitPattern & 0x7FFF_FFFF
            if magnitude > threshold {
                taken.append(index)
            } else if magnitude == threshold, needed > 0 {
                taken.append(index)
                needed -= 1
            }
        }
        taken.sort()
        return taken
    }

    /// The bytes one shard's top-k entry takes: u32 k, then k u32 indices and k float32 values.
    public static func topKEntrySize(k: Int) -> Int { 4 + 8 * k }

    // MARK: Validation and decoding

    /// Checks, before the body is read, that a body of `bodyBytes` bytes can hold `count` values of `encoding` over
    /// `shardCount` shards (exact for fp16/bf16, bounds for top-k, whose entries are checked by `decode`).
    public static func validateLength(
        _ encoding: GradientEncoding, count: Int, shardCount: Int, bodyBytes: Int, type: MessageType
    ) throws(WireError) {
        switch encoding {
        case .fp16, .bf16:
            guard bodyBytes == 2 * count else {
                throw .invalidField(
                    type: type, field: "\(type.name).gradient",
                    reason: "\(encoding) body of \(count) values must be \(2 * count) bytes, got \(bodyBytes)")
            }
        case .topK:
            guard bodyBytes >= 4 * shardCount, bodyBytes <= 4 * shardCount + 8 * count, bodyBytes % 4 == 0 else {
                throw .invalidField(
                    type: type, field: "\(type.name).gradient",
                    reason: "a top-k body over \(shardCount) shards and \(count) values cannot be \(bodyBytes) bytes")
            }
        default:
            throw .invalidField(
                type: type, field: "\(type.name).compression",
                reason: "unknown gradient encoding \(encoding.rawValue) (known: 0 none, 1 fp16, 2 bf16, 3 topk)")
        }
    }

    /// Decodes a compressed body into the dense `destination` (every shard's slice in order, sizes
    /// `shardSizes`); top-k leaves unsent elements 0. Throws, naming the problem, on a wrong length, an index out
    /// of its shard or not ascending, or a k larger than its shard; `destination` is then garbage.
    public static func decode(
        _ encoding: GradientEncoding, body: UnsafeRawBufferPointer, shardSizes: [Int],
        into destination: UnsafeMutableBufferPointer<Float>, type: MessageType = .exchange
    ) throws(WireError) {
        let count = destination.count
        guard shardSizes.reduce(0, +) == count else {
            throw .invalidField(
                type: type, field: "\(type.name).count",
                reason: "\(count) values do not fill shards of sizes \(shardSizes)")
        }
        try validateLength(encoding, count: count, shardCount: shardSizes.count, bodyBytes: body.count, type: type)
        switch encoding {
        case .fp16:
            fp16Table.withUnsafeBufferPointer { table in
                for index in 0..<count {
                    destination[index] =
                        table[
                            Int(UInt16(littleEndian: body.loadUnaligned(fromByteOffset: 2 * index, as: UInt16.self)))]
                }
            }
        case .bf16:
            for index in 0..<count {
                destination[index] = float(
                    bf16Bits: UInt16(littleEndian: body.loadUnaligned(fromByteOffset: 2 * index, as: UInt16.self)))
            }
        default:
            try decodeTopK(body: body, shardSizes: shardSizes, into: destination, type: type)
        }
    }

    /// Checks a top-k body's entries without knowing the shard sizes (what a decoder outside the server can check):
    /// `shardCount` entries filling the body exactly, ascending indices in each, at most `count` values in all.
    public static func validateTopKEntries(
        _ body: UnsafeRawBufferPointer, shardCount: Int, count: Int, type: MessageType
    ) throws(WireError) {
        func bad(_ reason: String) -> WireError {
            .invalidField(type: type, field: "\(type.name).gradient", reason: reason)
        }
        var offset = 0
        var total = 0
        for shard in 0..<shardCount {
            guard offset + 4 <= body.count else { throw bad("the top-k body ends before shard \(shard)'s entry") }
            let k = Int(UInt32(littleEndian: body.loadUnaligned(fromByteOffset: offset, as: UInt32.self)))
            total += k
            guard total <= count, offset + topKEntrySize(k: k) <= body.count else {
                throw bad("shard \(shard)'s \(k) top-k values run past the body's \(body.count) bytes")
            }
            var previous: Int64 = -1
            for entry in 0..<k {
                let index = Int64(
                    UInt32(littleEndian: body.loadUnaligned(fromByteOffset: offset + 4 + 4 * entry, as: UInt32.self)))
                guard index > previous else {
                    throw bad("shard \(shard)'s indices are not strictly ascending (\(index) after \(previous))")
                }
                previous = index
            }
            offset += topKEntrySize(k: k)
        }
        guard offset == body.count else {
            throw bad("\(body.count - offset) bytes follow the last shard's top-k entry")
        }
    }

    private static func decodeTopK(
        body: UnsafeRawBufferPointer, shardSizes: [Int], into destination: UnsafeMutableBufferPointer<Float>,
        type: MessageType
    ) throws(WireError) {
        func bad(_ reason: String) -> WireError {
            .invalidField(type: type, field: "\(type.name).gradient", reason: reason)
        }
        destination.initialize(repeating: 0)
        var offset = 0
        var base = 0
        for (shard, size) in shardSizes.enumerated() {
            guard offset + 4 <= body.count else { throw bad("the top-k body ends before shard \(shard)'s entry") }
            let k = Int(UInt32(littleEndian: body.loadUnaligned(fromByteOffset: offset, as: UInt32.self)))
            guard k <= size else { throw bad("shard \(shard) sends \(k) values but holds \(size)") }
            let indices = offset + 4
            let values = indices + 4 * k
            guard values + 4 * k <= body.count else {
                throw bad("shard \(shard)'s \(k) top-k values run past the body's \(body.count) bytes")
            }
            var previous = -1
            for entry in 0..<k {
                let index = Int(
                    UInt32(littleEndian: body.loadUnaligned(fromByteOffset: indices + 4 * entry, as: UInt32.self)))
                guard index < size else { throw bad("shard \(shard) index \(index) is outside its \(size) values") }
                guard index > previous else {
                    throw bad("shard \(shard)'s indices are not strictly ascending (\(index) after \(previous))")
                }
                previous = index
                destination[base + index] = Float(
                    bitPattern: UInt32(
                        littleEndian: body.loadUnaligned(fromByteOffset: values + 4 * entry, as: UInt32.self)))
            }
            offset = values + 4 * k
            base += size
        }
        guard offset == body.count else {
            throw bad("\(body.count - offset) bytes follow the last shard's top-k entry")
        }
    }
}
