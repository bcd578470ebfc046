import PSWire
import XCTest

final class TensorPrefixTests: XCTestCase {
    func test_pushPrefix_encode_matchesTheCodecsPayloadStart() throws {
        let push = Push(shard: 1, clock: 4, baseVersion: 3, floats: [0.5, -1, 2])
        var bytes = [UInt8](repeating: 0, count: PushPrefix.size)
        bytes.withUnsafeMutableBytes { push.prefix.encode(into: $0) }
        XCTAssertEqual(bytes, Array(MessageCodec.encodePayload(.push(push)).prefix(PushPrefix.size)))
        XCTAssertEqual(try bytes.withUnsafeBytes { try PushPrefix.decode($0) }, push.prefix)
    }

    func test_pushPrefix_validate_acceptsTheExactLength() {
        let prefix = PushPrefix(shard: 0, count: 3, clock: 0, baseVersion: 0)
        XCTAssertNoThrow(try PushPrefix.validate(prefix, payloadLength: 36, type: .push))
    }

    func test_pushPrefix_validate_reportsMisalignmentBeforeCount() {
        let prefix = PushPrefix(shard: 0, count: 3, clock: 0, baseVersion: 0)
        assertThrows(.misalignedPayload(type: .pushPull, floatBytes: 13)) {
            try PushPrefix.validate(prefix, payloadLength: 37, type: .pushPull)
        }
        assertThrows(.elementCountMismatch(type: .push, declared: 3, actual: 4)) {
            try PushPrefix.validate(prefix, payloadLength: 40, type: .push)
        }
        assertThrows(.payloadTooShort(type: .push, minimum: 24, got: 20)) {
            try PushPrefix.validate(prefix, payloadLength: 20, type: .push)
        }
    }

    func test_pushPrefix_decodeShortBuffer_throwsPayloadTooShortForTheGivenType() {
        assertThrows(.payloadTooShort(type: .pushPull, minimum: 24, got: 23)) {
            try [UInt8](repeating: 0, count: 23).withUnsafeBytes { try PushPrefix.decode($0, type: .pushPull) }
        }
    }

    func test_pullReplyPrefix_roundTripsAndValidates() throws {
        let reply = PullReply(shard: 2, version: 9, floats: [1, 2])
        var bytes = [UInt8](repeating: 0, count: PullReplyPrefix.size)
        bytes.withUnsafeMutableBytes { reply.prefix.encode(into: $0) }
        XCTAssertEqual(bytes, Array(MessageCodec.encodePayload(.pullReply(reply)).prefix(PullReplyPrefix.size)))
        let prefix = try bytes.withUnsafeBytes { try PullReplyPrefix.decode($0) }
        XCTAssertEqual(prefix, reply.prefix)
        XCTAssertNoThrow(try PullReplyPrefix.validate(prefix, payloadLength: 24))
        assertThrows(.elementCountMismatch(type: .pullReply, declared: 2, actual: 0)) {
            try PullReplyPrefix.validate(prefix, payloadLength: 16)
        }
        assertThrows(.misalignedPayload(type: .pullReply, floatBytes: 6)) {
            try PullReplyPrefix.validate(prefix, payloadLength: 22)
        }
        assertThrows(.payloadTooShort(type: .pullReply, minimum: 16, got: 3)) {
            try [UInt8](repeating: 0, count: 3).withUnsafeBytes { try PullReplyPrefix.decode($0) }
        }
    }
}
