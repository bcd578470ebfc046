import PSWire
import XCTest

final class FrameDecoderTests: XCTestCase {
    /// The frames every golden example decodes to, in order.
    private let expectedFrames: [Frame] = Golden.examples.map { example in
        let payloadLength = UInt32(MessageCodec.encodePayload(example.message).count)
        let header = FrameHeader(
            type: example.message.type,
            flags: example.message.isReply ? .reply : [],
            payloadLength: payloadLength,
            requestID: example.requestID
        )
        return Frame(header: header, message: example.message)
    }

    private var allGoldenBytes: [UInt8] { Golden.examples.flatMap(\.frame) }

    /// Feeds `bytes` in chunks of `chunkSize`, draining the decoder after every chunk.
    private func decodeAll(
        _ bytes: [UInt8],
        chunkSize: Int,
        decoder: inout FrameDecoder
    ) throws -> [Frame] {
        var frames: [Frame] = []
        var offset = 0
        while offset < bytes.count {
            let end = min(offset + chunkSize, bytes.count)
            decoder.append(bytes[offset..<end])
            offset = end
            while let frame = try decoder.next() { frames.append(frame) }
        }
        try decoder.finish()
        return frames
    }

    func testNext_everyGoldenFrameFedOneByteAtATime_decodesIt() throws {
        for (example, expected) in zip(Golden.examples, expectedFrames) {
            var decoder = FrameDecoder()
            var frames: [Frame] = []
            for (index, byte) in example.frame.enumerated() {
                decoder.append([byte])
                while let frame = try decoder.next() { frames.append(frame) }
                if index < example.frame.count - 1 {
                    XCTAssertTrue(frames.isEmpty, "\(example.key): a frame before its last byte")
                }
            }
            XCTAssertEqual(frames, [expected], example.key)
            XCTAssertEqual(decoder.bufferedByteCount, 0)
            XCTAssertNoThrow(try decoder.finish())
        }
    }

    func testNext_allGoldenFramesCoalesced_decodesThemInOrderForEveryChunkSize() throws {
        let bytes = allGoldenBytes
        for chunkSize in [1, 2, 3, 5, 7, 16, 23, 24, 25, 64, 100, 1000, bytes.count] {
            var decoder = FrameDecoder()
            XCTAssertEqual(
                try decodeAll(bytes, chunkSize: chunkSize, decoder: &decoder), expectedFrames, "chunk \(chunkSize)")
        }
    }

    func testNext_largePushInUnevenChunks_decodesAllFloats() throws {
        let floats = (0..<100_000).map { Float($0) - 5000.5 }
        let message = Message.push(Push(shard: 3, clock: 9, baseVersion: 8, floats: floats))
        let bytes = MessageCodec.encodeFrame(message, requestID: 42)
        var decoder = FrameDecoder()
        let frames = try decodeAll(bytes + bytes, chunkSize: 65_537, decoder: &decoder)
        XCTAssertEqual(frames.map(\.message), [message, message])
    }

    func testNext_acceptsAnySequenceOfBytes() throws {
        var decoder = FrameDecoder()
        let frame = MessageCodec.encodeFrame(.shutdown, requestID: 5)
        decoder.append(frame.lazy.map { $0 })
        XCTAssertEqual(try decoder.next()?.message, .shutdown)
    }

    func testFinish_partialHeader_throwsTruncatedHeader() throws {
        var decoder = FrameDecoder()
        decoder.append(MessageCodec.encodeFrame(.shutdown, requestID: 5).prefix(10))
        XCTAssertNil(try decoder.next())
        assertThrows(.truncatedHeader(got: 10)) { try decoder.finish() }
    }

    func testFinish_partialBody_throwsTruncatedBody() throws {
        var decoder = FrameDecoder()
        let frame = MessageCodec.encodeFrame(
            .push(Push(shard: 1, clock: 4, baseVersion: 3, floats: [0.5, -1, 2])), requestID: 7)
        decoder.append(frame.dropLast(5))
        XCTAssertNil(try decoder.next())
        assertThrows(.truncatedBody(expected: 36, got: 31)) { try decoder.finish() }
    }

    func testFinish_afterCompleteFrames_doesNotThrow() throws {
        var decoder = FrameDecoder()
        decoder.append(allGoldenBytes)
        while try decoder.next() != nil {}
        XCTAssertNoThrow(try decoder.finish())
    }

    func testNext_lengthOverTheMaximum_throwsFrameTooLarge() {
        var decoder = FrameDecoder(maxPayloadBytes: 32)
        decoder.append(
            MessageCodec.encodeFrame(.push(Push(shard: 1, clock: 4, baseVersion: 3, floats: [1, 2, 3])), requestID: 7))
        assertThrows(.frameTooLarge(length: 36, maximum: 32)) { try decoder.next() }
    }

    func testAppend_absurdLength_buffersNothingPastTheHeader() {
        var decoder = FrameDecoder()
        let header = FrameHeader(type: .push, flags: [], payloadLength: .max, requestID: 7)
        var bytes = [UInt8](repeating: 0, count: WireProtocol.headerSize)
        bytes.withUnsafeMutableBytes { header.encode(into: $0) }
        let garbage = [UInt8](repeating: 0xab, count: 1 << 20)
        decoder.append(bytes + garbage)
        decoder.append(garbage)
        XCTAssertEqual(decoder.bufferedByteCount, WireProtocol.headerSize)
        assertThrows(.frameTooLarge(length: 0xFFFF_FFFF, maximum: WireProtocol.defaultMaxPayloadBytes)) {
            try decoder.next()
        }
        XCTAssertEqual(decoder.bufferedByteCount, 0)
    }

    func testNext_badHeaderAfterGoodFrames_deliversTheGoodFramesFirst() throws {
        var decoder = FrameDecoder()
        let good = MessageCodec.encodeFrame(.pull(Pull(shard: 1, clock: 5)), requestID: 8)
        var bad = MessageCodec.encodeFrame(.shutdown, requestID: 9)
        bad[0] = 0
        decoder.append(good + good + bad + good)
        XCTAssertEqual(try decoder.next()?.message, .pull(Pull(shard: 1, clock: 5)))
        XCTAssertEqual(try decoder.next()?.message, .pull(Pull(shard: 1, clock: 5)))
        assertThrows(.badMagic(0x5350_5700)) { try decoder.next() }
    }

    func testNext_afterAnError_staysFailed() {
        var decoder = FrameDecoder()
        var frame = MessageCodec.encodeFrame(.shutdown, requestID: 5)
        frame[4] = 2
        decoder.append(frame)
        assertThrows(.unsupportedVersion(2)) { try decoder.next() }
        XCTAssertTrue(decoder.hasFailed)
        decoder.append(MessageCodec.encodeFrame(.shutdown, requestID: 6))
        assertThrows(.unsupportedVersion(2)) { try decoder.next() }
        assertThrows(.unsupportedVersion(2)) { try decoder.finish() }
        assertThrows(.unsupportedVersion(2)) { try decoder.nextRawFrame() }
    }

    func testNext_badPayload_throwsItsSpecificError() {
        var writer = ByteWriter()
        writer.writeInteger(UInt8(9))
        writer.writeZeros(count: 11)
        var frame = [UInt8](repeating: 0, count: WireProtocol.headerSize)
        frame.withUnsafeMutableBytes {
            FrameHeader(type: .hello, flags: [], payloadLength: 12, requestID: 1).encode(into: $0)
        }
        var decoder = FrameDecoder()
        decoder.append(frame + writer.bytes)
        assertInvalidField(type: .hello, field: "role", mentioning: "9") { try decoder.next() }
    }

    func testNext_unknownMessageType_throwsUnknownMessageType() {
        var frame = MessageCodec.encodeFrame(.pull(Pull(shard: 1, clock: 5)), requestID: 8)
        frame[6] = 0xff
        var decoder = FrameDecoder()
        decoder.append(frame)
        assertThrows(.unknownMessageType(0x00ff)) { try decoder.next() }
    }

    func testNextRawFrame_unknownMessageType_isSkippedAndTheConnectionGoesOn() throws {
        var unknown = MessageCodec.encodeFrame(.pull(Pull(shard: 1, clock: 5)), requestID: 8)
        unknown[6] = 0xff
        var decoder = FrameDecoder()
        decoder.append(unknown + MessageCodec.encodeFrame(.shutdown, requestID: 9))
        let raw = try XCTUnwrap(try decoder.nextRawFrame())
        XCTAssertEqual(raw.header.type, MessageType(rawValue: 0x00ff))
        XCTAssertEqual(raw.header.requestID, 8)
        XCTAssertEqual(raw.payload.count, 16)
        assertThrows(.unknownMessageType(0x00ff)) {
            try MessageCodec.decodePayload(type: raw.header.type, bytes: raw.payload)
        }
        XCTAssertEqual(try decoder.next()?.message, .shutdown)
        XCTAssertFalse(decoder.hasFailed)
    }

    func testNext_emptyPayloadMessages_needOnlyTheHeader() throws {
        var decoder = FrameDecoder()
        decoder.append(MessageCodec.encodeFrame(.leaveAck, requestID: 14))
        let frame = try XCTUnwrap(try decoder.next())
        XCTAssertEqual(frame.message, .leaveAck)
        XCTAssertEqual(frame.header.payloadLength, 0)
        XCTAssertNil(try decoder.next())
    }
}
