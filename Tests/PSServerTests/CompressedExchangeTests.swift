import Foundation
import PSClient
import PSCoordinator
import PSMath
import PSPosix
import PSServer
import PSWire
import XCTest

/// Compressed `exchange` gradients on the server: decoded to float32 before the step is applied, and a malformed
/// body (index out of range, unsorted, wrong length, non-finite values) refused with nothing applied while the
/// connection stays usable.
final class CompressedExchangeTests: XCTestCase {
    private func harness(shards: Int, learningRate: Float = 1) throws -> ServerHarness {
        try ServerHarness(shards: shards, optimizer: OptimizerConfig(kind: .sgd, learningRate: learningRate)) {
            config in
            config.mode = .async
            config.job = JobDescription(
                model: "softmax", data: "synthetic", test: nil, labelColumn: "", batchPerWorker: 4, epochs: 1,
                seed: 1, mode: "async", staleness: 0, workers: 1, trainRows: 400, featureCount: 1, classCount: 2,
                stepsPerEpoch: 100, totalSteps: 100)
        }
    }

    /// One compressed exchange; returns the reply's prefix and the weights it carried.
    private static func exchange(
        _ client: ParameterClient, clock: UInt64, count: Int, encoding: GradientEncoding, body: [UInt8],
        baseVersions: [UInt64], replyEncoding: GradientEncoding = .none
    ) throws -> (ExchangeReplyPrefix, [Float]) {
        var weights = [Float](repeating: .nan, count: count)
        let reply = try body.withUnsafeBytes { raw in
            try weights.withUnsafeMutableBufferPointer { w in
                try client.exchange(
                    rank: client.rank ?? 0, clock: clock, loss: 0.5, samples: 4, baseVersions: baseVersions,
                    count: count, encoding: encoding, body: raw, replyEncoding: replyEncoding, into: w
                ).wait()
            }
        }
        guard case .exchanged(let prefix) = reply else { throw ClientError.protocolViolation("got \(reply)") }
        return (prefix, weights)
    }

    private static func half(_ encoding: GradientEncoding, _ values: [Float]) -> [UInt8] {
        var body = [UInt8](repeating: 0, count: 2 * values.count)
        values.withUnsafeBufferPointer { v in
            body.withUnsafeMutableBytes { GradientCodec.encodeHalf(encoding, v, into: $0) }
        }
        return body
    }

    func test_fp16Exchange_appliesTheDecodedGradient() throws {
        let harness = try harness(shards: 2)
        let client = try harness.client(name: "solo")
        defer { client.close() }
        _ = try client.register(zeroTensors([5]))
        let gradient: [Float] = [0.1, -2, 3, 0.5, 1e-3]
        let (prefix, weights) = try Self.exchange(
            client, clock: 0, count: 5, encoding: .fp16, body: Self.half(.fp16, gradient), baseVersions: [0, 0])
        XCTAssertEqual(weights, gradient.map { -GradientCodec.float(fp16Bits: GradientCodec.fp16Bits($0)) })
        XCTAssertEqual(prefix.versions, [1, 1])
    }

    func test_bf16Exchange_appliesTheDecodedGradient() throws {
        let harness = try harness(shards: 1)
        let client = try harness.client(name: "solo")
        defer { client.close() }
        _ = try client.register(zeroTensors([3]))
        let gradient: [Float] = [0.1, -2, 3.3]
        let (_, weights) = try Self.exchange(
            client, clock: 0, count: 3, encoding: .bf16, body: Self.half(.bf16, gradient), baseVersions: [0])
        XCTAssertEqual(weights, gradient.map { -GradientCodec.float(bf16Bits: GradientCodec.bf16Bits($0)) })
    }

    /// `--compress-pulls`: the exchange asks for fp16 (or bf16) weights and the reply carries them rounded, while
    /// the server keeps float32.
    func test_compressedReply_carriesTheWeightsRounded_serverKeepsFloat32() throws {
        let harness = try harness(shards: 2, learningRate: 0.3)
        let client = try harness.client(name: "solo")
        defer { client.close() }
        _ = try client.register(zeroTensors([5]))
        let gradient: [Float] = [0.1, -2, 3.3, 0.5, 1e-3]
        for (step, encoding) in [GradientEncoding.fp16, .bf16].enumerated() {
            let (prefix, weights) = try Self.exchange(
                client, clock: UInt64(step), count: 5, encoding: .fp16, body: Self.half(.fp16, gradient),
                baseVersions: [UInt64(step), UInt64(step)], replyEncoding: encoding)
            XCTAssertEqual(prefix.encoding, encoding)
            let exact = try XCTUnwrap(harness.server.store.snapshot()).weights
            let rounded = exact.map {
                encoding == .fp16
                    ? GradientCodec.float(fp16Bits: GradientCodec.fp16Bits($0))
                    : GradientCodec.float(bf16Bits: GradientCodec.bf16Bits($0))
            }
            XCTAssertEqual(weights, rounded, "\(encoding)")
            XCTAssertNotEqual(exact, rounded, "the server's weights are not rounded")
        }
    }

    func test_topKExchange_appliesTheSentValuesOnly() throws {
        let harness = try harness(shards: 2)
        let client = try harness.client(name: "solo")
        defer { client.close() }
        _ = try client.register(zeroTensors([3, 2]))  // 5 elements: shard 0 holds 2, shard 1 holds 3
        let body = topK([(indices: [0], values: [1]), (indices: [0, 2], values: [-4, 2])])
        let (prefix, weights) = try Self.exchange(
            client, clock: 0, count: 5, encoding: .topK, body: body, baseVersions: [0, 0])
        XCTAssertEqual(weights, [-1, 0, 4, 0, -2])
        XCTAssertEqual(prefix.versions, [1, 1])
    }

    func test_malformedCompressedBodies_areRefused_nothingApplied_connectionStays() throws {
        let harness = try harness(shards: 2)
        let client = try harness.client(name: "solo")
        defer { client.close() }
        _ = try client.register(zeroTensors([3, 2]))
        let bad: [(String, ErrorCode, GradientEncoding, [UInt8])] = [
            ("outside", .invalidArgument, .topK, topK([(indices: [2], values: [1]), (indices: [], values: [])])),
            (
                "not strictly ascending", .invalidArgument, .topK,
                topK([(indices: [], values: []), (indices: [2, 0], values: [1, 1])])
            ),
            (
                "sends 4 values", .invalidArgument, .topK,
                topK([(indices: [0, 1, 2, 3], values: [1, 1, 1, 1]), (indices: [], values: [])])
            ),
            ("ends before shard 1", .invalidArgument, .topK, topK([(indices: [0], values: [1])])),
            ("NaN", .nonFinite, .topK, topK([(indices: [0], values: [.nan]), (indices: [1], values: [1])])),
            ("NaN", .nonFinite, .fp16, Self.half(.fp16, [1, .nan, 1, 1, 1])),
            ("NaN", .nonFinite, .bf16, Self.half(.bf16, [1, 1, .infinity, 1, 1])),
        ]
        for (expected, code, encoding, body) in bad {
            XCTAssertThrowsError(
                try Self.exchange(client, clock: 0, count: 5, encoding: encoding, body: body, baseVersions: [0, 0]),
                expected
            ) { error in
                guard case ClientError.remote(let got, let message) = error else { return XCTFail("\(error)") }
                XCTAssertEqual(got, code, message)
                if code == .invalidArgument {
                    XCTAssertTrue(message.contains(expected), "\(message) should say '\(expected)'")
                }
            }
        }
        // Nothing was applied, and the connection still works.
        let (prefix, weights) = try Self.exchange(
            client, clock: 0, count: 5, encoding: .topK,
            body: topK([(indices: [1], values: [1]), (indices: [0], values: [1])]), baseVersions: [0, 0])
        XCTAssertEqual(weights, [0, -1, -1, 0, 0])
        XCTAssertEqual(prefix.versions, [1, 1])
    }

    /// A top-k body from (indices, values) entries, one per shard.
    private func topK(_ entries: [(indices: [UInt32], values: [Float])]) -> [UInt8] {
        var bytes: [UInt8] = []
        func append(_ word: UInt32) { withUnsafeBytes(of: word.littleEndian) { bytes.append(contentsOf: $0) } }
        for entry in entries {
            append(UInt32(entry.indices.count))
            entry.indices.forEach(append)
            entry.values.forEach { append($0.bitPattern) }
        }
        return bytes
    }
}
