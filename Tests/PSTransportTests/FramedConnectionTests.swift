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

    /// The next frame's bytes as they were on the wire: its header re-encoded, then its payload.
    func readFrameBytes(from connection: FramedConnection) throws -> [UInt8] {
        let header = try XCTUnwrap(try connection.readHeader())
        var bytes = [UInt8](repeating: 0, count: WireProtocol.headerSize)
        bytes.withUnsafeMutableBytes { header.encode(into: $0) }
        return bytes + Array(try connection.readPayload(length: Int(header.payloadLength)))
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
            let frames = try (0..<2).map { _ in try readFrameBytes(from: reader) }
            XCTAssertEqual(frames[0], frames[1], "\(message.type.name)")
            XCTAssertEqual(frames[0], MessageCodec.encodeFrame(message, requestID: message == .pull(pull) ? 12 : 11))
        }
    }

    /// An exchange reply sent from the shards' arrays where they lie puts on the wire exactly the frame the reply
    /// from one contiguous buffer does (an empty part and a one-float part included).
    func test_exchangeReplyFromParts_sameBytesAsFromOneBuffer() throws {
        let (client, server) = try makePair()
        defer {
            client.close()
            server.close()
        }
        let parts: [[Float]] = [(0..<1000).map { Float($0) * 0.25 }, [], [-3], (0..<257).map { Float(-$0) }]
        let flat = parts.flatMap { $0 }
        let prefix = ExchangeReplyPrefix(
            jobState: .running, minClock: 9, versions: [1, 2, 3, 4], count: UInt32(flat.count), encoding: .none)
        try flat.withUnsafeBufferPointer { try server.sendExchangeReply(prefix: prefix, floats: $0, requestID: 5) }
        try parts[0].withUnsafeBufferPointer { a in
            try parts[1].withUnsafeBufferPointer { b in
                try parts[2].withUnsafeBufferPointer { c in
                    try parts[3].withUnsafeBufferPointer { d in
                        try server.sendExchangeReply(prefix: prefix, parts: [a, b, c, d], requestID: 5)
                    }
                }
            }
        }
        let frames = try (0..<2).map { _ in try readFrameBytes(from: client) }
        XCTAssertEqual(frames[0].count, WireProtocol.headerSize + prefix.size + 4 * flat.count)
        XCTAssertEqual(frames[1], frames[0])
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

    /// Frames of every size, written back to back in one buffer and then trickled in pieces of odd sizes: the
    /// read-ahead must hand each frame's header, prefix and floats over whole and in order, whether a `recv`
    /// brought several frames, part of one, or a header split across two.
    func test_readAhead_framesBackToBack_orTrickled_arriveWholeAndInOrder() throws {
        let sizes = [
            0, 1, 3, 1000, FramedConnection.directReadBytes / 4 - 7, FramedConnection.directReadBytes / 4 + 5, 40_000,
        ]
        var stream: [UInt8] = []
        for (index, count) in sizes.enumerated() {
            let floats = (0..<count).map { Float(index * 100_000 + $0) }
            let prefix = PushPrefix(shard: UInt32(index), count: UInt32(count), clock: 9, baseVersion: 0)
            var head = [UInt8](repeating: 0, count: WireProtocol.headerSize + PushPrefix.size)
            head.withUnsafeMutableBytes { bytes in
                FrameHeader(
                    type: .push, flags: [], payloadLength: UInt32(PushPrefix.size + 4 * count),
                    requestID: UInt64(index)
                ).encode(into: UnsafeMutableRawBufferPointer(rebasing: bytes[0..<WireProtocol.headerSize]))
                prefix.encode(into: UnsafeMutableRawBufferPointer(rebasing: bytes[WireProtocol.headerSize...]))
            }
            stream += head
            floats.withUnsafeBytes { stream += $0 }
        }
        try receiveInPieces(stream, pieceSizes: [stream.count, 7, 4093]) { client, server, pieceSize in
            for (index, count) in sizes.enumerated() {
                let header = try XCTUnwrap(try server.readHeader())
                XCTAssertEqual(header.requestID, UInt64(index), "piece size \(pieceSize)")
                let prefix = try PushPrefix.decode(try server.readPayload(length: PushPrefix.size))
                XCTAssertEqual(prefix.shard, UInt32(index))
                var floats = [Float](repeating: -1, count: count)
                try floats.withUnsafeMutableBytes { try server.readPayload(into: $0) }
                XCTAssertEqual(floats, (0..<count).map { Float(index * 100_000 + $0) }, "frame \(index)")
            }
            client.close()
            XCTAssertNil(try server.readHeader(), "clean end after the last frame")
        }
    }

    /// For each piece size: a connected pair, a thread writing `bytes` into the client in pieces of that size,
    /// and `body` reading them from the server.
    func receiveInPieces(
        _ bytes: [UInt8], pieceSizes: [Int],
        _ body: (_ client: FramedConnection, _ server: FramedConnection, _ pieceSize: Int) throws -> Void
    ) throws {
        for pieceSize in pieceSizes {
            let (client, server) = try makePair()
            defer {
                client.close()
                server.close()
            }
            Thread {
                var offset = 0
                while offset < bytes.count {
                    let end = min(offset + pieceSize, bytes.count)
                    bytes[offset..<end].withUnsafeBytes { try? client.writeRawForTesting($0) }
                    offset = end
                }
            }.start()
            try body(client, server, pieceSize)
        }
    }

    /// `readPayload(length:)` hands out payloads that sit in the read-ahead where they lie when they are aligned,
    /// and copies the others: every view is 16-byte aligned and holds its frame's bytes, whatever the frames
    /// before it left the read-ahead's offset at, and writing through a view (as the server scales a gradient in
    /// place) leaves the frames behind it intact.
    func test_readPayload_viewsAreAlignedAndWholeFromTheReadAheadOrTheReceiveBuffer() throws {
        let sizes = [24, 4096 + 24, 5, 4096, 1, 2, 3, 16, 4096 + 24, 7, 300, 0, 64, 9]
        var stream: [UInt8] = []
        for (index, count) in sizes.enumerated() {
            var head = [UInt8](repeating: 0, count: WireProtocol.headerSize)
            head.withUnsafeMutableBytes {
                FrameHeader(type: .push, flags: [], payloadLength: UInt32(count), requestID: UInt64(index)).encode(
                    into: $0)
            }
            stream += head + (0..<count).map { UInt8(truncatingIfNeeded: index &* 31 &+ $0) }
        }
        try receiveInPieces(stream, pieceSizes: [stream.count, 5, 1000]) { _, server, pieceSize in
            for (index, count) in sizes.enumerated() {
                let header = try XCTUnwrap(try server.readHeader())
                XCTAssertEqual(header.requestID, UInt64(index), "piece size \(pieceSize)")
                let view = try server.readPayload(length: count)
                XCTAssertEqual(view.count, count)
                if let base = view.baseAddress {
                    XCTAssertEqual(UInt(bitPattern: base) % 16, 0, "frame \(index), piece size \(pieceSize)")
                }
                XCTAssertEqual(Array(view), (0..<count).map { UInt8(truncatingIfNeeded: index &* 31 &+ $0) })
                UnsafeMutableRawBufferPointer(mutating: view).initializeMemory(as: UInt8.self, repeating: 0xee)
            }
        }
    }

    /// Two small frames that arrive in one `recv`: the second waits in the read-ahead, where the socket no longer
    /// shows it, so readiness must count it.
    func test_readAhead_aBufferedFrame_countsAsReadable() throws {
        let (client, server) = try makePair()
        defer {
            client.close()
            server.close()
        }
        var two: [UInt8] = []
        for id in [UInt64(1), 2] {
            two += MessageCodec.encodeFrame(.shutdown(), requestID: id)
        }
        try two.withUnsafeBytes { try client.writeRawForTesting($0) }
        XCTAssertTrue(server.waitUntilReadable(milliseconds: 5_000))
        XCTAssertEqual(try server.readMessage()?.header.requestID, 1)
        XCTAssertTrue(server.hasBufferedBytes)
        XCTAssertTrue(server.waitUntilReadable(milliseconds: 0))
        XCTAssertEqual(try server.readMessage()?.header.requestID, 2)
        XCTAssertFalse(server.hasBufferedBytes)
        XCTAssertFalse(server.waitUntilReadable(milliseconds: 0))
    }

    /// A read deadline over a short receive timeout: the read goes on past each tick and gives up at the deadline.
    func test_readDeadline_outlastsTheReceiveTimeoutTick_thenTimesOut() throws {
        let (client, server) = try makePair()
        defer {
            client.close()
            server.close()
        }
        try server.setReceiveTimeout(.milliseconds(20))
        server.setReadDeadline(MonotonicClock.deadline(afterSeconds: 0.3))
        let start = MonotonicClock.nanoseconds()
        XCTAssertThrowsError(try server.readHeader()) { error in
            guard case .socket(.timedOut)? = error as? TransportError else { return XCTFail("\(error)") }
        }
        let waited = Double(MonotonicClock.nanoseconds() - start) / 1e9
        XCTAssertGreaterThanOrEqual(waited, 0.29, "gave up at the first 20 ms tick")
        XCTAssertLessThan(waited, 10)
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
