import PSMath
import XCTest

final class ByteFeaturesTests: XCTestCase {
    /// Every byte value, at lengths and offsets that leave vector tails, by every path this CPU has: bitwise the
    /// scalar formula `Float(byte) / divisor`, for the IDX divisor and an odd one.
    func test_scale_everyPath_isBitwiseTheScalarFormula() {
        let bytes = (0..<1000).map { UInt8(($0 * 37 + 5) % 256) }
        let paths: [FusedUpdate.VectorPath] = FusedUpdate.VectorPath.avx2Available ? [.portable, .avx2] : [.portable]
        for path in paths {
            for divisor: Float in [255, 7.3] {
                for (start, count) in [(0, 1000), (3, 0), (1, 7), (5, 33), (0, 256)] {
                    let slice = Array(bytes[start..<(start + count)])
                    var out = [Float](repeating: .nan, count: count + 1)
                    slice.withUnsafeBufferPointer { source in
                        out.withUnsafeMutableBufferPointer {
                            ByteFeatures.scale(source, divisor: divisor, into: $0.baseAddress!, path: path)
                        }
                    }
                    XCTAssertEqual(
                        out.prefix(count).map(\.bitPattern), slice.map { (Float($0) / divisor).bitPattern },
                        "\(path), divisor \(divisor), \(count) bytes from \(start)")
                    XCTAssertTrue(out[count].isNaN, "\(path) wrote past \(count) bytes")
                }
            }
        }
    }

    /// Touching rows reads them only: the bytes are unchanged, rows may repeat, and a row that ends off a cache-line
    /// boundary (the last row of the array) is read to its last byte without going past it.
    func test_touchRows_readsTheRowsOnly() {
        let rowBytes = 100
        let data = (0..<(5 * rowBytes)).map { UInt8($0 % 251) }
        let rows = [4, 0, 4, 2]
        data.withUnsafeBytes { raw in
            rows.withUnsafeBufferPointer { ByteFeatures.touchRows(raw.baseAddress!, rowBytes: rowBytes, rows: $0) }
        }
        XCTAssertEqual(data, (0..<(5 * rowBytes)).map { UInt8($0 % 251) })
    }
}
