import PSTraining
import PSWire
import XCTest

/// The worker's side of compression: fp16 bodies, and top-k's error feedback (what was sent plus the residual is
/// what the raw gradients summed to).
final class GradientCompressorTests: XCTestCase {
    func test_topK_errorFeedback_sentPlusResidualEqualsTheSumOfRawGradients() throws {
        let shards = [0..<10, 10..<16]
        let compressor = GradientCompressor(setting: .topK(fraction: 0.2), elementCount: 16)
        var raw = [Float](repeating: 0, count: 16)
        var sent = [Float](repeating: 0, count: 16)
        for step in 0..<25 {
            // Multiples of 1/16 in a small range: every sum below is exact in float32.
            let gradient = (0..<16).map { Float((($0 * 7 + step * 5) % 13) - 6) / 16 }
            for index in 0..<16 { raw[index] += gradient[index] }
            let body = gradient.withUnsafeBufferPointer { compressor.compress($0, shards: shards) }
            XCTAssertEqual(body.count, (4 + 8 * 2) + (4 + 8 * 2), "k = ceil(0.2 * 10) = 2 and ceil(0.2 * 6) = 2")
            let dense = try decode(.topK, body, shardSizes: [10, 6])
            for index in 0..<16 { sent[index] += dense[index] }
            for index in 0..<16 {
                XCTAssertEqual(sent[index] + compressor.residual[index], raw[index], "step \(step), element \(index)")
            }
        }
    }

    func test_topK_sendsTheLargestOfGradientPlusResidual() throws {
        let compressor = GradientCompressor(setting: .topK(fraction: 0.25), elementCount: 4)
        // Step 0 sends the 3 and keeps 1, -2, 0.5.
        var body = [Float]([1, -2, 3, 0.5]).withUnsafeBufferPointer { compressor.compress($0, shards: [0..<4]) }
        XCTAssertEqual(try decode(.topK, body, shardSizes: [4]), [0, 0, 3, 0])
        XCTAssertEqual(compressor.residual, [1, -2, 0, 0.5])
        // Step 1: residual + gradient = 1.5, -2.5, 1, 0.5; -2.5 goes.
        body = [Float]([0.5, -0.5, 1, 0]).withUnsafeBufferPointer { compressor.compress($0, shards: [0..<4]) }
        XCTAssertEqual(try decode(.topK, body, shardSizes: [4]), [0, -2.5, 0, 0])
        XCTAssertEqual(compressor.residual, [1.5, 0, 1, 0.5])
    }

    func test_dropResidual_zeroesIt_andSaysWhetherItHeldAnything() {
        let compressor = GradientCompressor(setting: .topK(fraction: 0.5), elementCount: 4)
        XCTAssertFalse(compressor.dropResidual())
        _ = [Float]([1, 2, 3, 4]).withUnsafeBufferPointer { compressor.compress($0, shards: [0..<4]) }
        XCTAssertEqual(compressor.residual, [1, 2, 0, 0])
        XCTAssertTrue(compressor.dropResidual())
        XCTAssertEqual(compressor.residual, [0, 0, 0, 0])
    }

    func test_topK_onlyTouchesTheResidualOfTheShardsItCompresses() {
        let compressor = GradientCompressor(setting: .topK(fraction: 0.5), elementCount: 6)
        _ = [Float]([1, 2, 3, 4, 5, 6]).withUnsafeBufferPointer { compressor.compress($0, shards: [2..<4, 4..<6]) }
        XCTAssertEqual(compressor.residual, [0, 0, 3, 0, 5, 0])
    }

    func test_fp16_bodyIsTwoBytesPerValue_keepsNoResidual() throws {
        let compressor = GradientCompressor(setting: .fp16, elementCount: 5)
        let gradient: [Float] = [0.1, -0.2, 3, 65536, 1e-9]
        let body = gradient.withUnsafeBufferPointer { compressor.compress($0, shards: [1..<3, 3..<5]) }
        XCTAssertEqual(body.count, 8)
        XCTAssertEqual(
            try decode(.fp16, body, shardSizes: [2, 2]),
            [-0.2, 3, 65536, 1e-9].map { GradientCodec.float(fp16Bits: GradientCodec.fp16Bits($0)) })
        XCTAssertEqual(compressor.residual, [0, 0, 0, 0, 0])
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
