import XCTest

@testable import PSCheckpoint

final class CRC32CTests: XCTestCase {
    /// Bit-at-a-time CRC-32C, the definition the table-driven version must match.
    private func bitwise(_ bytes: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes {
            crc ^= UInt32(byte)
            for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1 }
        }
        return ~crc
    }

    func test_checkValue_123456789() {
        XCTAssertEqual(CRC32C.checksum(Array("123456789".utf8)), 0xE306_9283)
    }

    func test_checksum_rfc3720Vectors_matchThePublishedValues() {
        XCTAssertEqual(CRC32C.checksum([UInt8](repeating: 0, count: 32)), 0x8A91_36AA)
        XCTAssertEqual(CRC32C.checksum([UInt8](repeating: 0xFF, count: 32)), 0x62A8_AB43)
        XCTAssertEqual(CRC32C.checksum((0..<32).map { UInt8($0) }), 0x46DD_794E)
        XCTAssertEqual(CRC32C.checksum((0..<32).map { UInt8(31 - $0) }), 0x113F_DB5C)
    }

    func test_empty_isZero() {
        XCTAssertEqual(CRC32C.checksum([]), 0)
    }

    func test_sliceByEight_matchesBitwiseForEveryLengthAndAlignment() {
        var state: UInt64 = 12345
        let bytes: [UInt8] = (0..<80).map { _ in
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return UInt8(truncatingIfNeeded: state >> 56)
        }
        for start in 0..<8 {
            for end in start...bytes.count {
                let slice = Array(bytes[start..<end])
                XCTAssertEqual(CRC32C.checksum(slice), bitwise(slice), "bytes \(start)..<\(end)")
            }
        }
    }

    func test_seed_continuesAcrossChunks() {
        let bytes = Array("The quick brown fox jumps over the lazy dog".utf8)
        let whole = CRC32C.checksum(bytes)
        for split in 0...bytes.count {
            let first = CRC32C.checksum(Array(bytes[..<split]))
            XCTAssertEqual(CRC32C.checksum(Array(bytes[split...]), seed: first), whole, "split at \(split)")
        }
    }
}

/// The hardware path (SSE4.2 CRC32 instruction) against the table path, on this machine's CPU.
final class CRC32CHardwareTests: XCTestCase {
    func test_hardwareAndTable_agreeForEveryLengthAlignmentAndSeed() throws {
        try XCTSkipUnless(CRC32C.usesHardware, "this CPU has no SSE4.2 CRC32 instruction")
        let bytes = (0..<300).map { UInt8(truncatingIfNeeded: $0 &* 131 &+ 7) }
        bytes.withUnsafeBytes { all in
            for start in 0..<9 {
                for end in stride(from: start, through: all.count, by: 7) {
                    let part = UnsafeRawBufferPointer(rebasing: all[start..<end])
                    for seed: UInt32 in [0, 0xDEAD_BEEF] {
                        XCTAssertEqual(
                            CRC32C.checksum(part, seed: seed), CRC32C.tableChecksum(part, seed: seed),
                            "bytes \(start)..<\(end), seed \(seed)")
                    }
                }
            }
        }
    }
}
