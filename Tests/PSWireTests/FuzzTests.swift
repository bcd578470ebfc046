import Foundation
import PSWire
import XCTest

/// A splitmix64 generator of the test's own, so the fuzz run is reproducible from its seed.
private struct TestRandom {
    var state: UInt64

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A uniform integer in 0..<bound (bound > 0).
    mutating func below(_ bound: Int) -> Int {
        Int(next() % UInt64(bound))
    }
}

/// Throws random and mutated byte streams at the server's read path (`FrameHeader.decode`, then
/// `PushPrefix` or `MessageCodec.decodePayload`, as `ServerReadPath` drives them) and at `decodePayload` with a
/// mismatched type: they must never crash.
///
/// `PS_FUZZ_ITERATIONS` sets the iteration count (default 100,000); `PS_FUZZ_SEED` the seed.
final class FuzzTests: XCTestCase {
    private static let goldenFrames: [[UInt8]] =
        Golden.examples.map(\.frame) + [
            MessageCodec.encodeFrame(
                .register(
                    Register(tensors: [
                        TensorSpec(name: "a", shape: [3, 1, 2], initializer: .uniform(low: -1, high: 1, seed: 3)),
                        TensorSpec(name: "b", shape: [], initializer: .normal(mean: 0, std: 1, seed: 4)),
                        TensorSpec(name: "c", shape: [5], initializer: .constant(2)),
                    ])
                ),
                requestID: 99
            )
        ]

    /// The maximum the fuzzed decoders run with: small, so that length tampering often hits `frameTooLarge`.
    private static let maxPayloadBytes = 4096

    func test_fuzz_randomAndMutatedFrames_neverCrashTheDecoders() {
        let environment = ProcessInfo.processInfo.environment
        let iterations = environment["PS_FUZZ_ITERATIONS"].flatMap(Int.init) ?? 100_000
        let seed = environment["PS_FUZZ_SEED"].flatMap(UInt64.init) ?? 0x5357_5053
        var random = TestRandom(state: seed)
        var outcomes: [String: Int] = [:]
        let started = Date()
        for _ in 0..<iterations {
            let bytes = mutatedFrame(&random)
            let outcome = feedReadPath(bytes)
            outcomes[outcome, default: 0] += 1
            feedPayloadDecoder(bytes, random: &random)
        }
        let seconds = Date().timeIntervalSince(started)
        print(
            "fuzz: \(iterations) iterations in \(String(format: "%.2f", seconds)) s; outcomes: \(outcomes.sorted { $0.key < $1.key })"
        )
        if iterations >= 10_000 {
            XCTAssertGreaterThan(outcomes["frame", default: 0], iterations / 100, "too few mutated frames decoded")
            for kind in [
                "frameTooLarge", "badMagic", "unsupportedVersion", "unknownMessageType", "payloadTooShort",
                "trailingBytes", "truncated",
            ] {
                XCTAssertGreaterThan(outcomes[kind, default: 0], 0, "the fuzzer never produced \(kind)")
            }
        }
    }

    /// A golden frame (or two, or random bytes) with one or more mutations.
    private func mutatedFrame(_ random: inout TestRandom) -> [UInt8] {
        var bytes = Self.goldenFrames[random.below(Self.goldenFrames.count)]
        let mutations = 1 + random.below(3)
        for _ in 0..<mutations {
            mutate(&bytes, &random)
        }
        return bytes
    }

    private func mutate(_ bytes: inout [UInt8], _ random: inout TestRandom) {
        switch random.below(10) {
        case 0:  // flip bits anywhere
            guard !bytes.isEmpty else { return }
            for _ in 0..<(1 + random.below(4)) {
                bytes[random.below(bytes.count)] ^= UInt8(1 << random.below(8))
            }
        case 1:  // flip bits in the payload only, keeping the header valid
            guard bytes.count > WireProtocol.headerSize else { return }
            let index = WireProtocol.headerSize + random.below(bytes.count - WireProtocol.headerSize)
            bytes[index] ^= UInt8(1 << random.below(8))
        case 2:  // truncate
            bytes.removeLast(random.below(bytes.count + 1))
        case 3:  // tamper with the length field: small deltas, extremes or random
            guard bytes.count >= WireProtocol.headerSize else { return }
            let length = UInt32(bytes.count - WireProtocol.headerSize)
            let choices: [UInt32] = [
                0, 1, .max, 0x8000_0000, UInt32(Self.maxPayloadBytes) + 1, length &+ 1, length &- 1, length &+ 4,
                UInt32(truncatingIfNeeded: random.next()),
            ]
            store(choices[random.below(choices.count)], at: 12, in: &bytes)
        case 4:  // a random known type over another type's payload
            guard bytes.count >= WireProtocol.headerSize else { return }
            let type = MessageType.allKnown[random.below(MessageType.allKnown.count)]
            store(type.rawValue, at: 6, in: &bytes)
        case 5:  // a random type code
            guard bytes.count >= WireProtocol.headerSize else { return }
            store(UInt16(truncatingIfNeeded: random.next()), at: 6, in: &bytes)
        case 6:  // a count or string length inside the payload set to an interesting value
            guard bytes.count >= WireProtocol.headerSize + 4 else { return }
            let offset = WireProtocol.headerSize + random.below(bytes.count - WireProtocol.headerSize - 3)
            let values: [UInt32] = [0, 1, 2, 3, 8, 9, 0xff, 0xffff, 0x7fff_ffff, .max]
            store(values[random.below(values.count)], at: offset, in: &bytes)
        case 7:  // random payload bytes with a consistent length
            guard bytes.count >= WireProtocol.headerSize else { return }
            let count = random.below(80)
            bytes.removeLast(bytes.count - WireProtocol.headerSize)
            for _ in 0..<count { bytes.append(UInt8(truncatingIfNeeded: random.next())) }
            store(UInt32(count), at: 12, in: &bytes)
        case 8:  // append another golden frame, or random bytes
            if random.below(2) == 0 {
                bytes += Self.goldenFrames[random.below(Self.goldenFrames.count)]
            } else {
                for _ in 0..<random.below(40) { bytes.append(UInt8(truncatingIfNeeded: random.next())) }
            }
        default:  // tamper with version, magic or flags
            guard bytes.count >= WireProtocol.headerSize else { return }
            switch random.below(3) {
            case 0: store(UInt16(truncatingIfNeeded: random.next() % 4), at: 4, in: &bytes)
            case 1: bytes[random.below(4)] = UInt8(truncatingIfNeeded: random.next())
            default: store(UInt32(truncatingIfNeeded: random.next()), at: 8, in: &bytes)
            }
        }
    }

    private func store<T: FixedWidthInteger>(_ value: T, at offset: Int, in bytes: inout [UInt8]) {
        withUnsafeBytes(of: value.littleEndian) { raw in
            for (index, byte) in raw.enumerated() { bytes[offset + index] = byte }
        }
    }

    /// Runs `bytes` through the server's read path, checks that every decoded message re-encodes, and names the
    /// outcome.
    private func feedReadPath(_ bytes: [UInt8]) -> String {
        let result = ServerReadPath.read(bytes, maxPayloadBytes: Self.maxPayloadBytes)
        for frame in result.frames { checkReencodes(frame.message) }
        if let error = result.error { return outcomeName(error) }
        if result.endedMidFrame { return "truncated" }
        if !result.frames.isEmpty { return "frame" }
        return result.skippedUnknownTypes > 0 ? "unknownMessageType" : "empty"
    }

    /// Decodes the bytes after the header as the header's type and as a random known type.
    private func feedPayloadDecoder(_ bytes: [UInt8], random: inout TestRandom) {
        guard bytes.count >= WireProtocol.headerSize else { return }
        let payload = Array(bytes[WireProtocol.headerSize...])
        let headerType = MessageType(rawValue: UInt16(bytes[6]) | UInt16(bytes[7]) << 8)
        let otherType = MessageType.allKnown[random.below(MessageType.allKnown.count)]
        for type in [headerType, otherType] {
            if let message = try? MessageCodec.decodePayload(type: type, bytes: payload) {
                XCTAssertEqual(message.type, type)
                checkReencodes(message)
            }
        }
    }

    /// A decoded message re-encodes to a payload that decodes to the same bytes again (NaN-safe).
    private func checkReencodes(_ message: Message) {
        let payload = MessageCodec.encodePayload(message)
        do {
            let again = try MessageCodec.decodePayload(type: message.type, bytes: payload)
            XCTAssertEqual(MessageCodec.encodePayload(again), payload)
        } catch {
            XCTFail("\(message.type) decoded but its re-encoding does not: \(error)")
        }
    }

    private func outcomeName(_ error: Error) -> String {
        guard let error = error as? WireError else { return "not a WireError: \(error)" }
        XCTAssertFalse(error.description.isEmpty)
        switch error {
        case .truncatedHeader, .truncatedBody: return "truncated"
        case .badMagic: return "badMagic"
        case .unsupportedVersion: return "unsupportedVersion"
        case .frameTooLarge: return "frameTooLarge"
        case .unknownMessageType: return "unknownMessageType"
        case .payloadTooShort: return "payloadTooShort"
        case .trailingBytes: return "trailingBytes"
        case .elementCountMismatch: return "elementCountMismatch"
        case .misalignedPayload: return "misalignedPayload"
        case .invalidUTF8: return "invalidUTF8"
        case .invalidField: return "invalidField"
        }
    }
}
