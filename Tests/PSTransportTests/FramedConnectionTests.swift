import Foundation
import PSPosix
import PSTransport
import PSWire
import XCTest

final class FramedConnectionTests: XCTestCase {
    /// A connected pair of framed connections on 127.0.0.1.
    func makePair(maxPayloadBytes: Int = WireProtocol.defaultMaxPayloadBytes) throws -> (
        client: FramedConnection, server: FramedConnection
    ) {
        Signals.ignoreSIGPIPE()
        let listener = try Socket.listen(host: "127.0.0.1", port: 0)
        defer { listener.close() }
        let port = try listener.localPort()
        let client = try FramedConnection.connect(
            host: "127.0.0.1", port: port, timeout: .seconds(5), maxPayloadBytes: maxPayloadBytes)
        let (socket, peer) = try listener.accept()
        return (client, FramedConnection(socket: socket, peer: peer, maxPayloadBytes: maxPayloadBytes))
    }

    func test_push_floatsArriveInTheDestinationBuffer() throws {
        let (client, server) = try makePair()
        defer {
            client.close()
            server.close()
        }
        let floats: [Float] = (0..<1000).map { Float($0) * 0.5 }
        let prefix = PushPrefix(shard: 3, count: 1000, clock: 7, baseVersion: 6)
        try floats.withUnsafeBufferPointer { try client.sendPush(.push, prefix: prefix, floats: $0, requestID: 42) }
        let header = try XCTUnwrap(try server.readHeader())
        XCTAssertEqual(header.type, .push)
        XCTAssertEqual(header.requestID, 42)
        XCTAssertEqual(Int(header.payloadLength), PushPrefix.size + 4000)
        let decoded = try PushPrefix.decode(try server.readPayload(length: PushPrefix.size))
        XCTAssertEqual(decoded, prefix)
        var destination = [Float](repeating: 0, count: 1000)
        try destination.withUnsafeMutableBytes { try server.readPayload(into: $0) }
        XCTAssertEqual(destination, floats)
    }

    /// The stack-buffer senders put exactly the bytes of the generic encoder on the wire.
    func test_sendPushAckAndSendPull_sameBytesAsTheGenericEncoder() throws {
        let (client, server) = try makePair()
        defer {
            client.close()
            server.close()
        }
        let ack = PushAck(shard: 3, status: .appliedScaled, version: 1 << 40, staleness: 2)
        let pull = Pull(shard: 7, clock: 99)
        try server.sendPushAck(ack, requestID: 11)
        try server.send(.pushAck(ack), requestID: 11)
        try client.sendPull(pull, requestID: 12)
        try client.send(.pull(pull), requestID: 12)
        for (reader, message) in [(client, Message.pushAck(ack)), (server, Message.pull(pull))] {
            var frames: [[UInt8]] = []
            for _ in 0..<2 {
                let header = try XCTUnwrap(try reader.readHeader())
                var bytes = [UInt8](repeating: 0, count: WireProtocol.headerSize)
                bytes.withUnsafeMutableBytes { header.encode(into: $0) }
                bytes += Array(try reader.readPayload(length: Int(header.payloadLength)))
                frames.append(bytes)
            }
            XCTAssertEqual(frames[0], frames[1], "\(message.type.name)")
            XCTAssertEqual(frames[0], MessageCodec.encodeFrame(message, requestID: message == .pull(pull) ? 12 : 11))
        }
    }

    func test_pullReply_roundTrips_andControlMessagesDecode() throws {
        let (client, server) = try makePair()
        defer {
            client.close()
            server.close()
        }
        let floats: [Float] = [1, -2, 3.5]
        try floats.withUnsafeBufferPointer {
            try server.sendPullReply(
                prefix: PullReplyPrefix(shard: 0, count: 3, version: 9), floats: $0, requestID: 5)
        }
        try server.send(.statusReply(StatusReply(json: "{}")), requestID: 6)
        let reply = try XCTUnwrap(try client.readMessage())
        XCTAssertEqual(reply.header.requestID, 5)
        XCTAssertEqual(reply.message, .pullReply(PullReply(shard: 0, version: 9, floats: floats)))
        let status = try XCTUnwrap(try client.readMessage())
        XCTAssertEqual(status.message, .statusReply(StatusReply(json: "{}")))
    }

    func test_readHeader_cleanCloseBetweenFrames_returnsNil() throws {
        let (client, server) = try makePair()
        client.close()
        XCTAssertNil(try server.readHeader())
        server.close()
    }

    func test_readHeader_oversizedFrame_isRejectedBeforeReadingThePayload() throws {
        let (client, server) = try makePair(maxPayloadBytes: 4096)
        defer {
            client.close()
            server.close()
        }
        var header = [UInt8](repeating: 0, count: WireProtocol.headerSize)
        header.withUnsafeMutableBytes {
            FrameHeader(type: .push, flags: [], payloadLength: 1 << 30, requestID: 1).encode(into: $0)
        }
        try header.withUnsafeBytes { try client.writeRawForTesting($0) }
        XCTAssertThrowsError(try server.readHeader()) { error in
            XCTAssertEqual(error as? TransportError, .wire(.frameTooLarge(length: 1 << 30, maximum: 4096)))
        }
    }

    func test_eofInsideAFrame_isAnError() throws {
        let (client, server) = try makePair()
        defer { server.close() }
        let bytes: [UInt8] = [0x53, 0x57, 0x50, 0x53, 0x01, 0x00]
        try bytes.withUnsafeBytes { try client.writeRawForTesting($0) }
        client.close()
        XCTAssertThrowsError(try server.readHeader()) { error in
            guard case .socket(.endOfStream(let expected, let received))? = error as? TransportError else {
                return XCTFail("\(error)")
            }
            XCTAssertEqual(expected, WireProtocol.headerSize)
            XCTAssertEqual(received, 6)
        }
    }

    func test_sendAfterClose_throwsClosed() throws {
        let (client, server) = try makePair()
        server.close()
        client.close()
        XCTAssertThrowsError(try client.send(.shutdown(), requestID: 1)) { error in
            XCTAssertEqual(error as? TransportError, .closed)
        }
    }

    func test_sendPush_payloadPast4GiB_throwsFrameTooLargeInsteadOfTrapping() throws {
        let (client, server) = try makePair()
        defer {
            client.close()
            server.close()
        }
        // 2^30 floats make a 4 GiB + 24-byte payload; the length check refuses it before a float is read, so the
        // buffer only has to claim that size.
        let count = 1 << 30
        let floats = UnsafeBufferPointer<Float>(start: UnsafePointer(bitPattern: 0x1000), count: count)
        let prefix = PushPrefix(shard: 0, count: UInt32(count), clock: 0, baseVersion: 0)
        XCTAssertThrowsError(try client.sendPush(.push, prefix: prefix, floats: floats, requestID: 1)) { error in
            guard case .wire(.frameTooLarge) = error as? TransportError else { return XCTFail("\(error)") }
        }
        let reply = PullReplyPrefix(shard: 0, count: UInt32(count), version: 0)
        XCTAssertThrowsError(try server.sendPullReply(prefix: reply, floats: floats, requestID: 1)) { error in
            guard case .wire(.frameTooLarge) = error as? TransportError else { return XCTFail("\(error)") }
        }
    }
}
