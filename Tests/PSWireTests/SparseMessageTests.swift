import PSWire
import XCTest

final class SparseMessageTests: XCTestCase {
    func test_decodeSparsePush_misalignedValues_throwsMisalignedPayload() {
        var writer = ByteWriter()
        writer.writeInteger(UInt32(0))  // table
        writer.writeInteger(UInt32(1))  // count
        writer.writeInteger(UInt64(5))  // clock
        writer.writeInteger(UInt32(3))  // id
        writer.writeFloats([0.5])
        writer.writeInteger(UInt8(1))  // one stray byte
        assertThrows(.misalignedPayload(type: .sparsePush, floatBytes: 5)) {
            try MessageCodec.decodePayload(type: .sparsePush, bytes: writer.bytes)
        }
    }

    func test_decodeSparsePull_idsBeyondThePayload_throwsPayloadTooShort() {
        var writer = ByteWriter()
        writer.writeInteger(UInt32(0))
        writer.writeInteger(UInt32.max)  // 2^32 - 1 ids declared, none present
        writer.writeInteger(UInt64(5))
        assertThrows(.payloadTooShort(type: .sparsePull, minimum: 16 + 4 * Int(UInt32.max), got: 16)) {
            try MessageCodec.decodePayload(type: .sparsePull, bytes: writer.bytes)
        }
    }

    func test_decodeSparsePullReply_countTimesWidthDisagreeing_throwsElementCountMismatch() {
        var writer = ByteWriter()
        writer.writeInteger(UInt32(0))
        writer.writeInteger(UInt32(2))  // rows
        writer.writeInteger(UInt32(3))  // width: 6 values declared
        writer.writeInteger(UInt32(0))
        writer.writeFloats([1, 2, 3, 4])
        assertThrows(.elementCountMismatch(type: .sparsePullReply, declared: 6, actual: 4)) {
            try MessageCodec.decodePayload(type: .sparsePullReply, bytes: writer.bytes)
        }
    }

    func test_roundTrip_emptyIdListsAndValues() throws {
        for message in [
            Message.sparsePull(SparsePull(table: 2, clock: 9, ids: [])),
            .sparsePush(SparsePush(table: 1, clock: 9, ids: [], values: [])),
            .sparsePullReply(SparsePullReply(table: 1, width: 4, values: [])),
        ] {
            let payload = MessageCodec.encodePayload(message)
            XCTAssertEqual(payload.count, 16)
            XCTAssertEqual(try MessageCodec.decodePayload(type: message.type, bytes: payload), message)
        }
    }
}
