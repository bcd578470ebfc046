import Foundation
import PSWire
import XCTest

/// fp16/bf16 rounding, top-k selection and its tie-break, and the compressed exchange body's decoding and
/// validation (proto-docs/protocol.md, "Compressed gradients").
final class GradientCodecTests: XCTestCase {
    // MARK: Half precision

    func test_fp16_representableValues_roundTripExactly() {
        for value: Float in [0, -0, 1, -1, 0.5, 0.25, 1.5, -2.75, 65504, -65504, 6.103515625e-05, 5.9604645e-08, 1024] {
            let back = GradientCodec.float(fp16Bits: GradientCodec.fp16Bits(value))
            XCTAssertEqual(back.bitPattern, value.bitPattern, "\(value)")
        }
    }

    func test_fp16_roundsToNearestEven_andSaturates() {
        // 1 + 2^-11 lies halfway between 1 and 1 + 2^-10: ties go to the even mantissa, 1.
        XCTAssertEqual(GradientCodec.float(fp16Bits: GradientCodec.fp16Bits(1 + 0x1p-11)), 1)
        // 1 + 3 * 2^-11 lies halfway between 1 + 2^-10 and 1 + 2^-9: the even one is 1 + 2^-9.
        XCTAssertEqual(GradientCodec.float(fp16Bits: GradientCodec.fp16Bits(1 + 3 * 0x1p-11)), 1 + 0x1p-9)
        // Just above the halfway point rounds up.
        XCTAssertEqual(GradientCodec.float(fp16Bits: GradientCodec.fp16Bits(1 + 0x1p-11 + 0x1p-20)), 1 + 0x1p-10)
        XCTAssertEqual(GradientCodec.float(fp16Bits: GradientCodec.fp16Bits(1e6)), 65504)
        XCTAssertEqual(GradientCodec.float(fp16Bits: GradientCodec.fp16Bits(-.infinity)), -65504)
        XCTAssertTrue(GradientCodec.float(fp16Bits: GradientCodec.fp16Bits(.nan)).isNaN)
        XCTAssertEqual(GradientCodec.fp16Bits(0.1), 0x2E66)
    }

    func test_fp16Bits_agreeWithFloat16Conversion_andTheTableWithFloat16() {
        var generator = SplitMix(seed: 3)
        var checked = 0
        while checked < 200_000 {
            let value = Float(bitPattern: UInt32(truncatingIfNeeded: generator.next()))
            guard !value.isNaN, abs(value) <= 65504 else { continue }
            XCTAssertEqual(GradientCodec.fp16Bits(value), Float16(value).bitPattern, "\(value)")
            checked += 1
        }
        for bits in 0...UInt16.max {
            let expected = Float(Float16(bitPattern: bits))
            let got = GradientCodec.float(fp16Bits: bits)
            XCTAssertTrue(got.bitPattern == expected.bitPattern || (got.isNaN && expected.isNaN), "\(bits)")
        }
    }

    func test_bf16_representableValues_roundTripExactly() {
        for value: Float in [0, -0, 1, -3, 0.5, 1.5, 1e30, -1e-30, .infinity, -.infinity, 1.0078125] {
            let rounded = Float(bitPattern: value.bitPattern & 0xFFFF_0000)
            let back = GradientCodec.float(bf16Bits: GradientCodec.bf16Bits(rounded))
            XCTAssertEqual(back.bitPattern, rounded.bitPattern, "\(value)")
        }
    }

    func test_bf16_roundsToNearestEven() {
        // bf16 keeps 7 mantissa bits: 1 + 2^-8 is halfway between 1 and 1 + 2^-7, ties go to 1 (even).
        XCTAssertEqual(GradientCodec.float(bf16Bits: GradientCodec.bf16Bits(1 + 0x1p-8)), 1)
        XCTAssertEqual(GradientCodec.float(bf16Bits: GradientCodec.bf16Bits(1 + 3 * 0x1p-8)), 1 + 0x1p-6)
        XCTAssertEqual(GradientCodec.float(bf16Bits: GradientCodec.bf16Bits(1 + 0x1p-8 + 0x1p-20)), 1 + 0x1p-7)
        XCTAssertEqual(GradientCodec.bf16Bits(0.1), 0x3DCD)
        XCTAssertTrue(GradientCodec.float(bf16Bits: GradientCodec.bf16Bits(.nan)).isNaN)
        // The largest float rounds up to infinity, as IEEE rounding says.
        XCTAssertEqual(GradientCodec.float(bf16Bits: GradientCodec.bf16Bits(.greatestFiniteMagnitude)), .infinity)
    }

    func test_roundHalf_equalsAnEncodeDecodeRoundTrip() {
        var generator = SplitMix(seed: 5)
        let values = (0..<2_000).map { _ in Float(bitPattern: UInt32(truncatingIfNeeded: generator.next())) }
            .filter { !$0.isNaN }
        for encoding in [GradientEncoding.fp16, .bf16] {
            var rounded = values
            rounded.withUnsafeMutableBufferPointer { GradientCodec.roundHalf(encoding, $0) }
            let expected = values.map {
                encoding == .fp16
                    ? GradientCodec.float(fp16Bits: GradientCodec.fp16Bits($0))
                    : GradientCodec.float(bf16Bits: GradientCodec.bf16Bits($0))
            }
            XCTAssertEqual(rounded.map(\.bitPattern), expected.map(\.bitPattern), "\(encoding)")
        }
    }

    func test_halfBodies_decodeToTheRoundedValues() throws {
        let values: [Float] = [0.1, -2, 3.14159, 1e-3, 0]
        for encoding in [GradientEncoding.fp16, .bf16] {
            var body = [UInt8](repeating: 0, count: 2 * values.count)
            values.withUnsafeBufferPointer { v in
                body.withUnsafeMutableBytes { GradientCodec.encodeHalf(encoding, v, into: $0) }
            }
            let decoded = try decode(encoding, body, shardSizes: [2, 3])
            let expected = values.map {
                encoding == .fp16
                    ? GradientCodec.float(fp16Bits: GradientCodec.fp16Bits($0))
                    : GradientCodec.float(bf16Bits: GradientCodec.bf16Bits($0))
            }
            XCTAssertEqual(decoded, expected, "\(encoding)")
        }
    }

    // MARK: Top-k

    func test_topK_picksTheLargestMagnitudes_ascending() {
        let values: [Float] = [0.5, -3, 2, 0, -0.25, 7, 1]
        XCTAssertEqual(indices(values, k: 3), [1, 2, 5])
        XCTAssertEqual(indices(values, k: 1), [5])
        XCTAssertEqual(indices(values, k: 0), [])
        XCTAssertEqual(indices(values, k: 7), [0, 1, 2, 3, 4, 5, 6])
        XCTAssertEqual(indices(values, k: 9), [0, 1, 2, 3, 4, 5, 6])
    }

    func test_topK_tiesGoToTheLowerIndex() {
        let values: [Float] = [1, -2, 2, -2, 1, 2]
        XCTAssertEqual(indices(values, k: 2), [1, 2])
        XCTAssertEqual(indices(values, k: 4), [1, 2, 3, 5])
        XCTAssertEqual(indices([Float](repeating: 0.5, count: 10), k: 3), [0, 1, 2])
        XCTAssertEqual(indices([-0.0, 0.0, -0.0], k: 1), [0])
    }

    func test_topK_matchesASortOnLargeRandomInput() {
        var generator = SplitMix(seed: 7)
        // Coarse values, so that many magnitudes tie.
        let values = (0..<5_000).map { _ in Float(Int(generator.next() % 201) - 100) / 8 }
        let expected = Array(
            values.indices.sorted {
                abs(values[$0]) > abs(values[$1]) || (abs(values[$0]) == abs(values[$1]) && $0 < $1)
            }
            .prefix(50)
        ).sorted().map(UInt32.init)
        XCTAssertEqual(indices(values, k: 50), expected)
    }

    func test_topK_matchesASort_acrossSizesTiesAndZeros() {
        var generator = SplitMix(seed: 11)
        for (n, k, zeros, levels) in [
            (1, 1, 0, 0), (2, 1, 0, 3), (100, 7, 50, 5), (3_000, 31, 90, 0), (3_000, 2_000, 60, 0),
            (4_096, 4_000, 0, 2), (10_000, 100, 0, 0), (10_000, 9_999, 99, 0),
        ] {
            let values: [Float] = (0..<n).map { _ in
                if Int(generator.next() % 100) < zeros { return generator.next() % 2 == 0 ? 0 : -0.0 }
                let magnitude =
                    levels > 0
                    ? Float(generator.next() % UInt64(levels) + 1)
                    : Float(bitPattern: UInt32(generator.next() % 0x7F80_0000))
                return generator.next() % 2 == 0 ? magnitude : -magnitude
            }
            let expected = values.indices.sorted {
                abs(values[$0]) > abs(values[$1]) || (abs(values[$0]) == abs(values[$1]) && $0 < $1)
            }.prefix(k).sorted().map(UInt32.init)
            XCTAssertEqual(indices(values, k: k), expected, "n \(n) k \(k) zeros \(zeros)% levels \(levels)")
        }
    }

    func test_topKCount_isTheCeilingAtLeastOne() {
        XCTAssertEqual(CompressionSetting.topKCount(fraction: 0.01, elements: 1000), 10)
        XCTAssertEqual(CompressionSetting.topKCount(fraction: 0.01, elements: 1001), 11)
        XCTAssertEqual(CompressionSetting.topKCount(fraction: 0.01, elements: 5), 1)
        XCTAssertEqual(CompressionSetting.topKCount(fraction: 1, elements: 5), 5)
        XCTAssertEqual(CompressionSetting.topKCount(fraction: 0.5, elements: 0), 0)
    }

    func test_topKBody_decodesIntoTheDenseShards() throws {
        let body = topKBody([
            (indices: [1, 3], values: [2.5, -1]), (indices: [], values: []), (indices: [0], values: [4]),
        ])
        XCTAssertEqual(try decode(.topK, body, shardSizes: [4, 2, 3]), [0, 2.5, 0, -1, 0, 0, 4, 0, 0])
    }

    func test_topKBody_malformed_isRefusedNamingTheProblem() {
        let cases: [(String, [UInt8], [Int])] = [
            ("outside", topKBody([(indices: [4], values: [1])]), [4]),
            ("not strictly ascending", topKBody([(indices: [2, 1], values: [1, 1])]), [4]),
            ("not strictly ascending", topKBody([(indices: [1, 1], values: [1, 1])]), [4]),
            (
                "sends 3 values but holds 2",
                topKBody([(indices: [0, 1, 2], values: [1, 1, 1]), (indices: [], values: [])]), [2, 10]
            ),
            ("follow the last shard", topKBody([(indices: [0], values: [1])]) + [0, 0, 0, 0], [4]),
            ("run past", Array(topKBody([(indices: [0], values: [1])]).dropLast(4)), [4]),
            ("ends before shard 1", topKBody([(indices: [0], values: [1])]), [4, 1]),
        ]
        for (expected, body, sizes) in cases {
            XCTAssertThrowsError(try decode(.topK, body, shardSizes: sizes), expected) { error in
                XCTAssertTrue("\(error)".contains(expected), "\(error) should say '\(expected)'")
                XCTAssertEqual((error as? WireError)?.code, .invalidArgument)
            }
        }
    }

    /// Random and mutated bodies: decoding either throws or fills exactly the dense values, never traps; a body
    /// that decodes also passes the shard-size-free check a generic decoder makes.
    func test_decode_randomAndMutatedBodies_throwOrDecode_neverTrap() {
        var generator = SplitMix(seed: 21)
        let valid = topKBody([(indices: [0, 3], values: [1, -2]), (indices: [1], values: [0.5])])
        var decoded = 0
        for iteration in 0..<3_000 {
            let shardSizes = [Int(generator.next() % 6), Int(generator.next() % 6)]
            var body: [UInt8]
            if iteration % 2 == 0 {
                body = valid
                for _ in 0..<(1 + generator.next() % 3) {
                    body[Int(generator.next() % UInt64(body.count))] = UInt8(truncatingIfNeeded: generator.next())
                }
                if generator.next() % 4 == 0 { body.removeLast(Int(generator.next() % 5)) }
            } else {
                body = (0..<Int(generator.next() % 40)).map { _ in UInt8(truncatingIfNeeded: generator.next() % 4) }
            }
            let encoding = GradientEncoding(rawValue: UInt32(generator.next() % 5))
            if (try? decode(encoding, body, shardSizes: shardSizes)) != nil {
                decoded += 1
                if encoding == .topK {
                    XCTAssertNoThrow(
                        try body.withUnsafeBytes {
                            try GradientCodec.validateTopKEntries(
                                $0, shardCount: 2, count: shardSizes.reduce(0, +), type: .exchange)
                        })
                }
            }
        }
        XCTAssertGreaterThan(decoded, 0)
    }

    func test_unknownEncoding_andWrongHalfLength_areRefused() {
        XCTAssertThrowsError(try decode(GradientEncoding(rawValue: 9), [0, 0], shardSizes: [1])) {
            XCTAssertTrue("\($0)".contains("unknown gradient encoding 9"), "\($0)")
        }
        XCTAssertThrowsError(try decode(.fp16, [0, 0, 0], shardSizes: [2])) {
            XCTAssertTrue("\($0)".contains("must be 4 bytes"), "\($0)")
        }
    }

    func test_compressionSetting_parsesTheFlagSpellings() {
        XCTAssertEqual(CompressionSetting(parsing: "none"), CompressionSetting.none)
        XCTAssertEqual(CompressionSetting(parsing: "fp16"), .fp16)
        XCTAssertEqual(CompressionSetting(parsing: "bf16"), .bf16)
        XCTAssertEqual(CompressionSetting(parsing: "topk:0.01"), .topK(fraction: 0.01))
        XCTAssertEqual(CompressionSetting(parsing: "topk:0.01")?.description, "topk:0.01")
        for bad in ["topk:0", "topk:1.5", "topk:", "topk", "fp32", ""] {
            XCTAssertNil(CompressionSetting(parsing: bad), bad)
        }
    }

    // MARK: Exchange messages

    func test_exchangePrefix_encodingTravelsInTheReservedWord() throws {
        let prefix = ExchangePrefix(
            rank: 1, clock: 5, loss: 0.5, samples: 64, baseVersions: [5, 5], count: 3, encoding: .topK)
        var bytes = [UInt8](repeating: 0xAA, count: prefix.size)
        bytes.withUnsafeMutableBytes { prefix.encode(into: $0) }
        XCTAssertEqual(Array(bytes[(prefix.size - 4)...]), [3, 0, 0, 0])
        XCTAssertEqual(try bytes.withUnsafeBytes { try ExchangePrefix.decode($0) }, prefix)
    }

    func test_exchangePrefix_replyEncodingTravelsInTheSecondByte_highBitsRefused() throws {
        let prefix = ExchangePrefix(
            rank: 0, clock: 1, loss: 0, samples: 1, baseVersions: [1], count: 2, encoding: .fp16, replyEncoding: .bf16)
        var bytes = [UInt8](repeating: 0, count: prefix.size)
        bytes.withUnsafeMutableBytes { prefix.encode(into: $0) }
        XCTAssertEqual(Array(bytes[(prefix.size - 4)...]), [1, 2, 0, 0])
        XCTAssertEqual(try bytes.withUnsafeBytes { try ExchangePrefix.decode($0) }, prefix)
        bytes[prefix.size - 2] = 1
        XCTAssertThrowsError(try bytes.withUnsafeBytes { try ExchangePrefix.decode($0) }) {
            XCTAssertTrue("\($0)".contains("high 16 bits must be 0"), "\($0)")
        }
        var topKReply = prefix
        topKReply.replyEncoding = .topK
        XCTAssertThrowsError(try ExchangePrefix.validate(topKReply, payloadLength: prefix.size + 4)) {
            XCTAssertTrue("\($0)".contains("weights travel as 0 float32, 1 fp16 or 2 bf16"), "\($0)")
        }
    }

    func test_compressedExchangeReply_roundTripsThroughTheCodec() throws {
        let reply = ExchangeReply(
            prefix: ExchangeReplyPrefix(jobState: .running, minClock: 6, versions: [6, 6], count: 3, encoding: .bf16),
            compressed: [0x00, 0x3e, 0x40, 0xbf, 0x80, 0x3f])
        let frame = MessageCodec.encodeFrame(.exchangeReply(reply), requestID: 16)
        XCTAssertEqual(try MessageCodec.decodeFrame(bytes: frame).message, .exchangeReply(reply))
        var wrong = reply
        wrong.compressed.removeLast()
        XCTAssertThrowsError(
            try MessageCodec.decodeFrame(bytes: MessageCodec.encodeFrame(.exchangeReply(wrong), requestID: 1)))
    }

    func test_compressedExchange_roundTripsThroughTheCodec() throws {
        let body = topKBody([(indices: [2], values: [1.0]), (indices: [0], values: [-0.5])])
        let exchange = Exchange(
            prefix: ExchangePrefix(
                rank: 1, clock: 5, loss: 0.5, samples: 64, baseVersions: [5, 5], count: 4, encoding: .topK),
            compressed: body)
        let frame = MessageCodec.encodeFrame(.exchange(exchange), requestID: 16)
        let decoded = try MessageCodec.decodeFrame(bytes: frame)
        XCTAssertEqual(decoded.message, .exchange(exchange))
    }

    func test_compressedExchange_withUnsortedTopKIndices_doesNotDecode() {
        let body = topKBody([(indices: [3, 1], values: [1, 1])])
        let exchange = Exchange(
            prefix: ExchangePrefix(
                rank: 0, clock: 0, loss: 0, samples: 1, baseVersions: [0], count: 4, encoding: .topK),
            compressed: body)
        let frame = MessageCodec.encodeFrame(.exchange(exchange), requestID: 1)
        XCTAssertThrowsError(try MessageCodec.decodeFrame(bytes: frame)) {
            XCTAssertTrue("\($0)".contains("not strictly ascending"), "\($0)")
        }
    }

    // MARK: Helpers

    private func indices(_ values: [Float], k: Int) -> [UInt32] {
        values.withUnsafeBufferPointer { GradientCodec.topKIndices($0, k: k) }
    }

    private func decode(_ encoding: GradientEncoding, _ body: [UInt8], shardSizes: [Int]) throws -> [Float] {
        var dense = [Float](repeating: .nan, count: shardSizes.reduce(0, +))
        try body.withUnsafeBytes { raw in
            try dense.withUnsafeMutableBufferPointer {
                try GradientCodec.decode(encoding, body: raw, shardSizes: shardSizes, into: $0)
            }
        }
        return dense
    }
}

/// A top-k body from (indices, values) entries, one per shard, as proto-docs lays it out.
func topKBody(_ entries: [(indices: [UInt32], values: [Float])]) -> [UInt8] {
    var bytes: [UInt8] = []
    func append(_ word: UInt32) { withUnsafeBytes(of: word.littleEndian) { bytes.append(contentsOf: $0) } }
    for entry in entries {
        append(UInt32(entry.indices.count))
        entry.indices.forEach(append)
        entry.values.forEach { append($0.bitPattern) }
    }
    return bytes
}

/// A small deterministic generator for test data.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
