import PSWire
import XCTest

/// What the server's read path made of a byte stream.
struct ReadPathResult {
    /// The frames decoded, in order.
    var frames: [Frame] = []
    /// The number of frames of unknown types, skipped as the server skips them (it answers each with an error).
    var skippedUnknownTypes = 0
    /// The error that ended the stream; the server answers it and closes the connection.
    var error: WireError?
    /// Whether the stream ended inside a frame (`FramedConnection` throws `endOfStream` there).
    var endedMidFrame = false
}

/// The server's read path over a byte stream, with the PSWire calls it makes in the order it makes them.
///
/// `FramedConnection.readHeader` reads exactly 24 bytes and calls `FrameHeader.decode`; `ConnectionHandler`
/// skips the payload of an unknown type and reads on; it decodes `push` and `pushPull` copy-free with
/// `PushPrefix.decode` and `PushPrefix.validate`, and every other type with `MessageCodec.decodePayload`. A wire
/// error ends the stream, as it closes the connection. For `push` and `pushPull` this also decodes the payload
/// with `MessageCodec.decodePayload` (what a client's `readMessage` does) and checks that both paths agree.
enum ServerReadPath {
    static func read(_ stream: [UInt8], maxPayloadBytes: Int = WireProtocol.defaultMaxPayloadBytes) -> ReadPathResult {
        var result = ReadPathResult()
        stream.withUnsafeBytes { bytes in
            var offset = 0
            while offset < bytes.count {
                let rest = UnsafeRawBufferPointer(rebasing: bytes[offset...])
                checkHeaderFedOneByteAtATime(rest, maxPayloadBytes: maxPayloadBytes)
                guard rest.count >= WireProtocol.headerSize else {
                    result.endedMidFrame = true
                    return
                }
                let header: FrameHeader
                do throws(WireError) {
                    header = try FrameHeader.decode(
                        UnsafeRawBufferPointer(rebasing: rest[..<WireProtocol.headerSize]),
                        maxPayloadBytes: maxPayloadBytes
                    )
                } catch {
                    result.error = error
                    return
                }
                offset += WireProtocol.headerSize
                let length = Int(header.payloadLength)
                guard bytes.count - offset >= length else {
                    result.endedMidFrame = true
                    return
                }
                let payload = UnsafeRawBufferPointer(rebasing: bytes[offset..<offset + length])
                offset += length
                guard header.type.isKnown else {
                    result.skippedUnknownTypes += 1
                    continue
                }
                do throws(WireError) {
                    if header.type == .push || header.type == .pushPull {
                        try decodeCopyFree(header, payload)
                    }
                    let message = try MessageCodec.decodePayload(type: header.type, payload)
                    result.frames.append(Frame(header: header, message: message))
                } catch {
                    result.error = error
                    return
                }
            }
        }
        return result
    }

    /// What `ConnectionHandler.handlePush` does before it reads the floats; fails the test if
    /// `MessageCodec.decodePayload` does not reach the same verdict.
    private static func decodeCopyFree(_ header: FrameHeader, _ payload: UnsafeRawBufferPointer) throws(WireError) {
        let copyFree = Result { () throws(WireError) in
            guard payload.count >= PushPrefix.size else {
                throw .payloadTooShort(type: header.type, minimum: PushPrefix.size, got: payload.count)
            }
            let prefix = try PushPrefix.decode(UnsafeRawBufferPointer(rebasing: payload[..<PushPrefix.size]))
            try PushPrefix.validate(prefix, payloadLength: payload.count, type: header.type)
        }
        let codec = Result { () throws(WireError) in try MessageCodec.decodePayload(type: header.type, payload) }
        switch (copyFree, codec) {
        case (.success, .success): break
        case (.failure(let error), .failure(let codecError)):
            XCTAssertEqual(error, codecError, "\(header.type): the copy-free path and the codec disagree")
        default:
            XCTFail("\(header.type): the copy-free path gives \(copyFree), the codec \(codec)")
        }
        try copyFree.get()
    }

    /// Feeds `FrameHeader.decode` the start of `bytes` one byte at a time, as a reader that receives a header in
    /// pieces would: every prefix shorter than 24 bytes is `truncatedHeader`, and the 24th byte gives the same
    /// verdict as the whole stream (the decoder looks at the header and nothing after it).
    static func checkHeaderFedOneByteAtATime(_ bytes: UnsafeRawBufferPointer, maxPayloadBytes: Int) {
        func decode(_ count: Int) -> Result<FrameHeader, WireError> {
            Result { () throws(WireError) in
                try FrameHeader.decode(
                    UnsafeRawBufferPointer(rebasing: bytes[..<count]), maxPayloadBytes: maxPayloadBytes)
            }
        }
        for count in 0..<min(bytes.count, WireProtocol.headerSize) {
            guard case .failure(.truncatedHeader(got: count)) = decode(count) else {
                return XCTFail("a \(count)-byte header prefix does not throw truncatedHeader: \(decode(count))")
            }
        }
        if bytes.count >= WireProtocol.headerSize {
            XCTAssertEqual(decode(WireProtocol.headerSize), decode(bytes.count))
        }
    }
}

final class ReadPathTests: XCTestCase {
    func test_readPath_allGoldenFramesCoalesced_decodesThemInOrder() {
        let result = ServerReadPath.read(Golden.examples.flatMap(\.frame))
        XCTAssertNil(result.error)
        XCTAssertFalse(result.endedMidFrame)
        XCTAssertEqual(result.frames.map(\.message), Golden.examples.map(\.message))
        XCTAssertEqual(result.frames.map(\.header.requestID), Golden.examples.map(\.requestID))
    }

    func test_readPath_largePush_decodesAllFloats() {
        let floats = (0..<100_000).map { Float($0) - 5000.5 }
        let message = Message.push(Push(shard: 3, clock: 9, baseVersion: 8, floats: floats))
        let result = ServerReadPath.read(MessageCodec.encodeFrame(message, requestID: 42))
        XCTAssertEqual(result.frames.map(\.message), [message])
    }

    func test_readPath_streamEndsInsideAFrame_endsMidFrame() {
        let frame = MessageCodec.encodeFrame(.pull(Pull(shard: 1, clock: 5)), requestID: 8)
        for cut in [1, WireProtocol.headerSize - 1, WireProtocol.headerSize, frame.count - 1] {
            let result = ServerReadPath.read(frame + frame.prefix(cut))
            XCTAssertEqual(result.frames.count, 1, "cut at \(cut)")
            XCTAssertTrue(result.endedMidFrame, "cut at \(cut)")
            XCTAssertNil(result.error)
        }
    }

    func test_readPath_badHeaderAfterGoodFrames_deliversTheGoodFramesFirst() {
        let good = MessageCodec.encodeFrame(.pull(Pull(shard: 1, clock: 5)), requestID: 8)
        var bad = MessageCodec.encodeFrame(.shutdown(), requestID: 9)
        bad[0] = 0
        let result = ServerReadPath.read(good + good + bad + good)
        XCTAssertEqual(
            result.frames.map(\.message), [.pull(Pull(shard: 1, clock: 5)), .pull(Pull(shard: 1, clock: 5))])
        XCTAssertEqual(result.error, .badMagic(0x5350_5700))
    }

    func test_readPath_lengthOverTheMaximum_throwsFrameTooLarge() {
        let push = MessageCodec.encodeFrame(
            .push(Push(shard: 1, clock: 4, baseVersion: 3, floats: [1, 2, 3])), requestID: 7)
        XCTAssertEqual(ServerReadPath.read(push, maxPayloadBytes: 32).error, .frameTooLarge(length: 36, maximum: 32))
    }

    func test_readPath_unknownMessageType_isSkippedAndTheStreamGoesOn() {
        var unknown = MessageCodec.encodeFrame(.pull(Pull(shard: 1, clock: 5)), requestID: 8)
        unknown[6] = 0xff
        let result = ServerReadPath.read(unknown + MessageCodec.encodeFrame(.shutdown(), requestID: 9))
        XCTAssertEqual(result.skippedUnknownTypes, 1)
        XCTAssertEqual(result.frames.map(\.message), [.shutdown()])
        XCTAssertNil(result.error)
    }

    func test_readPath_badPayload_throwsItsSpecificError() {
        var frame = MessageCodec.encodeFrame(
            .push(Push(shard: 1, clock: 4, baseVersion: 3, floats: [1, 2, 3])), requestID: 7)
        frame.removeLast(2)
        frame[12] -= 2  // payloadLength 36 -> 34: ten bytes of floats
        XCTAssertEqual(ServerReadPath.read(frame).error, .misalignedPayload(type: .push, floatBytes: 10))
    }

    func test_readPath_emptyPayloadMessages_needOnlyTheHeader() {
        let result = ServerReadPath.read(MessageCodec.encodeFrame(.leaveAck, requestID: 14))
        XCTAssertEqual(result.frames.map(\.message), [.leaveAck])
        XCTAssertEqual(result.frames.first?.header.payloadLength, 0)
    }
}
