import Foundation
import PSClient
import PSPosix
import PSServer
import PSTransport
import PSWire
import XCTest

/// Fuzzes the server's production read path: mutated frame streams go over real sockets to an in-process server
/// (the connection handler, the services and the decoders it calls), and afterwards a well-behaved client is still
/// served correctly.
///
/// `PS_FUZZ_SERVER_ITERATIONS` sets the number of fuzzed connections (default 1,000); `PS_FUZZ_SEED` the seed.
/// Mutations keep frame types as they were (so no fuzzed stream asks for `export` or `shutdown`, which would
/// write files or stop the server), and change everything else: payload bytes, length fields, truncations,
/// trailing garbage, frames repeated or dropped.
final class ServerFuzzTests: XCTestCase {
    private struct Generator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        mutating func below(_ bound: Int) -> Int { Int(next() % UInt64(max(bound, 1))) }
    }

    /// The frames of one well-formed session against a store holding shards of `shardSizes` floats.
    private func session(shardSizes: [Int]) -> [[UInt8]] {
        var frames: [[UInt8]] = [
            MessageCodec.encodeFrame(
                .hello(Hello(role: .worker, maxVersion: WireProtocol.version, name: "fuzz")), requestID: 1),
            MessageCodec.encodeFrame(.register(Register(tensors: zeroTensors([8, 5]))), requestID: 2),
        ]
        for (shard, size) in shardSizes.enumerated() {
            frames.append(pushFrame(type: .push, shard: shard, count: size, requestID: UInt64(10 + shard)))
            frames.append(pushFrame(type: .pushPull, shard: shard, count: size, requestID: UInt64(20 + shard)))
            frames.append(
                MessageCodec.encodeFrame(.pull(Pull(shard: UInt32(shard), clock: 0)), requestID: UInt64(30 + shard)))
        }
        frames.append(MessageCodec.encodeFrame(.heartbeat(Heartbeat(rank: 0, clock: 1)), requestID: 40))
        frames.append(
            MessageCodec.encodeFrame(.clock(ClockReport(rank: 0, clock: 1, loss: 0.5, samples: 4)), requestID: 41))
        frames.append(
            MessageCodec.encodeFrame(
                .metrics(EpochMetrics(epoch: 0, testLoss: 0.5, testAccuracy: 0.5, samples: 4)), requestID: 42))
        frames.append(MessageCodec.encodeFrame(.status(StatusRequest()), requestID: 43))
        return frames
    }

    private func pushFrame(type: MessageType, shard: Int, count: Int, requestID: UInt64) -> [UInt8] {
        let payloadLength = PushPrefix.size + count * 4
        var frame = [UInt8](repeating: 0, count: WireProtocol.headerSize + payloadLength)
        frame.withUnsafeMutableBytes { bytes in
            FrameHeader(type: type, flags: [], payloadLength: UInt32(payloadLength), requestID: requestID)
                .encode(into: bytes)
            PushPrefix(shard: UInt32(shard), count: UInt32(count), clock: 0, baseVersion: 0)
                .encode(into: UnsafeMutableRawBufferPointer(rebasing: bytes[WireProtocol.headerSize...]))
            for i in 0..<count {
                bytes.storeBytes(
                    of: Float(0.001).bitPattern.littleEndian,
                    toByteOffset: WireProtocol.headerSize + PushPrefix.size + 4 * i, as: UInt32.self)
            }
        }
        return frame
    }

    /// One mutated byte stream: frames possibly dropped or repeated, then bytes changed outside the type fields.
    private func mutate(_ frames: [[UInt8]], _ random: inout Generator) -> [UInt8] {
        var chosen = frames
        if random.below(4) == 0, chosen.count > 1 { chosen.remove(at: 1 + random.below(chosen.count - 1)) }
        if random.below(4) == 0 { chosen.insert(chosen[random.below(chosen.count)], at: random.below(chosen.count)) }
        var offsets: [Int] = []
        var bytes: [UInt8] = []
        for frame in chosen {
            offsets.append(bytes.count)
            bytes += frame
        }
        let typeBytes = Set(offsets.flatMap { [$0 + 6, $0 + 7] })
        for _ in 0..<(1 + random.below(4)) where !bytes.isEmpty {
            switch random.below(5) {
            case 0, 1:  // a byte anywhere but a type field
                let index = random.below(bytes.count)
                if !typeBytes.contains(index) { bytes[index] = UInt8(truncatingIfNeeded: random.next()) }
            case 2:  // a length field, small or huge
                let frame = offsets[random.below(offsets.count)]
                guard frame + 16 <= bytes.count else { continue }
                let length = random.below(2) == 0 ? UInt32(random.below(64)) : UInt32(truncatingIfNeeded: random.next())
                withUnsafeBytes(of: length.littleEndian) { for i in 0..<4 { bytes[frame + 12 + i] = $0[i] } }
            case 3:  // cut the stream short
                bytes.removeLast(random.below(bytes.count))
            default:  // trailing garbage
                bytes += (0..<random.below(64)).map { _ in UInt8(truncatingIfNeeded: random.next()) }
            }
        }
        return bytes
    }

    func test_fuzz_mutatedSessionsOverSockets_serverKeepsServingAWellBehavedClient() throws {
        let environment = ProcessInfo.processInfo.environment
        let iterations = environment["PS_FUZZ_SERVER_ITERATIONS"].flatMap(Int.init) ?? 1_000
        var random = Generator(state: environment["PS_FUZZ_SEED"].flatMap(UInt64.init) ?? 0x5053_4655)
        let harness = try ServerHarness(shards: 2)
        let good = try harness.client(name: "good")
        let shardSizes = try good.register(zeroTensors([8, 5])).shardElements.map { Int($0) }
        let frames = session(shardSizes: shardSizes)
        var replies = 0
        for _ in 0..<iterations {
            let bytes = mutate(frames, &random)
            let connection = try harness.rawConnection()
            try connection.setReceiveTimeout(.seconds(5))
            _ = bytes.withUnsafeBytes { bytes in
                Result { () throws(TransportError) in try connection.writeRawForTesting(bytes) }
            }
            connection.shutdownSend()
            // Read whatever the server answers until it closes the connection (or stops answering).
            while let _ = try? connection.readMessage() { replies += 1 }
            connection.close()
        }
        XCTAssertGreaterThan(replies, iterations, "the fuzzed sessions were mostly answered, not all refused")
        // The well-behaved client is still served: a push-pull round trip on every shard, then status.
        for (shard, size) in shardSizes.enumerated() {
            let gradient = [Float](repeating: 0, count: size)
            var weights = [Float](repeating: .nan, count: size)
            let reply = try gradient.withUnsafeBufferPointer { g in
                try weights.withUnsafeMutableBufferPointer { w in
                    try good.pushPull(shard: shard, clock: 0, baseVersion: 0, gradient: g, into: w).wait()
                }
            }
            guard case .pulled = reply else { return XCTFail("shard \(shard): expected weights, got \(reply)") }
            XCTAssertTrue(weights.allSatisfy { $0.isFinite }, "shard \(shard) weights stay finite: \(weights)")
        }
        let status = try good.request(.status(StatusRequest())).wait()
        guard case .message(.statusReply) = status else { return XCTFail("expected a status reply, got \(status)") }
    }
}
