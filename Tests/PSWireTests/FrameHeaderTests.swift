import PSWire
import XCTest

final class FrameHeaderTests: XCTestCase {
    private func encoded(_ header: FrameHeader) -> [UInt8] {
        var bytes = [UInt8](repeating: 0xee, count: WireProtocol.headerSize)
        bytes.withUnsafeMutableBytes { header.encode(into: $0) }
        return bytes
    }

    private func decode(_ bytes: [UInt8], maxPayloadBytes: Int = WireProtocol.defaultMaxPayloadBytes) throws
        -> FrameHeader
    {
        try bytes.withUnsafeBytes { try FrameHeader.decode($0, maxPayloadBytes: maxPayloadBytes) }
    }

    private let pushHeader = FrameHeader(type: .push, flags: [], payloadLength: 36, requestID: 7)

    func test_encode_writesTheDocumentedBytes() {
        XCTAssertEqual(
            encoded(pushHeader),
            [
                0x53, 0x57, 0x50, 0x53, 0x01, 0x00, 0x12, 0x00, 0x00, 0x00, 0x00, 0x00, 0x24, 0x00, 0x00, 0x00,
                0x07, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            ]
        )
    }

    func test_magic_isTheBytesSWPS() {
        XCTAssertEqual(Array(encoded(pushHeader)[0..<4]), Array("SWPS".utf8))
    }

    func test_decode_encodedHeader_roundTrips() throws {
        let header = FrameHeader(type: .pullReply, flags: .reply, payloadLength: 1 << 20, requestID: .max)
        XCTAssertEqual(try decode(encoded(header)), header)
    }

    func test_decode_truncatedHeader_throwsTruncatedHeader() {
        let bytes = Array(encoded(pushHeader).prefix(10))
        assertThrows(.truncatedHeader(got: 10)) { try decode(bytes) }
        assertThrows(.truncatedHeader(got: 0)) { try decode([]) }
    }

    func test_decode_wrongMagic_throwsBadMagic() {
        var bytes = encoded(pushHeader)
        bytes[0] = 0x47  // "GWPS"
        assertThrows(.badMagic(0x5350_5747)) { try decode(bytes) }
    }

    func test_decode_unsupportedVersion_throwsUnsupportedVersion() {
        var bytes = encoded(pushHeader)
        bytes[4] = 2
        assertThrows(.unsupportedVersion(2)) { try decode(bytes) }
        bytes[4] = 0
        assertThrows(.unsupportedVersion(0)) { try decode(bytes) }
    }

    func test_decode_lengthOverTheMaximum_throwsFrameTooLarge() {
        let header = FrameHeader(type: .push, flags: [], payloadLength: 1025, requestID: 1)
        assertThrows(.frameTooLarge(length: 1025, maximum: 1024)) { try decode(encoded(header), maxPayloadBytes: 1024) }
        XCTAssertNoThrow(try decode(encoded(header), maxPayloadBytes: 1025))
    }

    func test_decode_absurdLength_throwsFrameTooLarge() {
        let header = FrameHeader(type: .push, flags: [], payloadLength: .max, requestID: 1)
        assertThrows(.frameTooLarge(length: 0xFFFF_FFFF, maximum: WireProtocol.defaultMaxPayloadBytes)) {
            try decode(encoded(header))
        }
    }

    func test_decode_checksMagicBeforeVersionBeforeLength() {
        var bytes = encoded(FrameHeader(type: .push, flags: [], payloadLength: .max, requestID: 1))
        bytes[4] = 9
        assertThrows(.unsupportedVersion(9)) { try decode(bytes) }
        bytes[3] = 0
        assertThrows(.badMagic(0x0050_5753)) { try decode(bytes) }
    }

    func test_decode_unknownTypeAndReservedFlags_areKept() throws {
        let header = FrameHeader(
            type: MessageType(rawValue: 0x7777),
            flags: FrameFlags(rawValue: 0xffff_fffe),
            payloadLength: 0,
            requestID: 3
        )
        let decoded = try decode(encoded(header))
        XCTAssertEqual(decoded.type.rawValue, 0x7777)
        XCTAssertFalse(decoded.flags.contains(.reply))
        XCTAssertEqual(decoded.flags.rawValue, 0xffff_fffe)
    }

}
