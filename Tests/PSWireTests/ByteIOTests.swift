import PSWire
import XCTest

final class ByteIOTests: XCTestCase {
    func test_writer_writesLittleEndian() {
        var writer = ByteWriter()
        writer.writeInteger(UInt16(0x0102))
        writer.writeInteger(Int32(-2))
        writer.writeFloat(1)
        writer.writeDouble(-2)
        writer.writeString("é")
        XCTAssertEqual(
            writer.bytes,
            [
                0x02, 0x01, 0xfe, 0xff, 0xff, 0xff, 0x00, 0x00, 0x80, 0x3f, 0, 0, 0, 0, 0, 0, 0, 0xc0, 2, 0, 0, 0, 0xc3,
                0xa9,
            ]
        )
        XCTAssertEqual(writer.count, 24)
    }

    func test_reader_readsBackAndStopsAtTheEnd() {
        var writer = ByteWriter()
        writer.writeInteger(UInt64(0x0102_0304_0506_0708))
        writer.writeFloat(-0.5)
        writer.writeDouble(3.25)
        writer.writeInteger(UInt8(7))
        writer.bytes.withUnsafeBytes { raw in
            var reader = ByteReader(raw)
            XCTAssertEqual(reader.getInteger(at: 0, as: UInt8.self), 0x08)
            XCTAssertEqual(reader.readInteger(as: UInt64.self), 0x0102_0304_0506_0708)
            XCTAssertEqual(reader.readInteger(as: UInt32.self).map(Float.init(bitPattern:)), -0.5)
            XCTAssertEqual(reader.readInteger(as: UInt64.self).map(Double.init(bitPattern:)), 3.25)
            XCTAssertEqual(reader.remaining, 1)
            XCTAssertNil(reader.readInteger(as: UInt16.self))
            XCTAssertEqual(reader.readerIndex, 20, "a failed read consumes nothing")
            XCTAssertNil(reader.readBytes(count: 2))
            XCTAssertEqual(reader.readBytes(count: 1).map(Array.init), [7])
            XCTAssertNil(reader.getInteger(at: -1, as: UInt8.self))
            XCTAssertEqual(reader.remaining, 0)
        }
    }
}
