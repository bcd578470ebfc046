import CCRC32C

/// CRC-32C (Castagnoli): the checksum of every checkpoint data file.
///
/// Reflected polynomial 0x82F63B78, initial value and final XOR 0xFFFFFFFF, as in iSCSI, ext4 and Google's
/// crc32c; the check value of "123456789" is 0xE3069283. Computed with the SSE4.2 CRC32 instruction where the CPU
/// has it (CCRC32C; 11 ms against 38 ms for 64 MiB on the development VM), otherwise slice-by-8 from eight 256-entry tables.
public enum CRC32C {
    /// The reflected Castagnoli polynomial.
    public static let polynomial: UInt32 = 0x82F6_3B78

    /// Eight 256-entry tables, concatenated: table k maps a byte to its CRC contribution k bytes further on.
    static let tables: [UInt32] = {
        var tables = [UInt32](repeating: 0, count: 8 * 256)
        for byte in 0..<256 {
            var crc = UInt32(byte)
            for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ polynomial : crc >> 1 }
            tables[byte] = crc
        }
        for slice in 1..<8 {
            for byte in 0..<256 {
                let previous = tables[(slice - 1) * 256 + byte]
                tables[slice * 256 + byte] = (previous >> 8) ^ tables[Int(previous & 0xFF)]
            }
        }
        return tables
    }()

    /// Whether `checksum` uses the CPU's CRC32 instruction.
    public static let usesHardware = ccrc32c_hardware_available() != 0

    /// The CRC-32C of `bytes`; pass a previous result as `seed` to continue it over the next bytes.
    public static func checksum(_ bytes: UnsafeRawBufferPointer, seed: UInt32 = 0) -> UInt32 {
        guard usesHardware else { return tableChecksum(bytes, seed: seed) }
        guard let base = bytes.baseAddress else { return seed }
        return ~ccrc32c_hardware_update(~seed, base, bytes.count)
    }

    /// The CRC-32C computed slice-by-8 from the tables (the fallback; tests compare it with the hardware's).
    static func tableChecksum(_ bytes: UnsafeRawBufferPointer, seed: UInt32 = 0) -> UInt32 {
        tables.withUnsafeBufferPointer { table in
            var crc = ~seed
            var index = 0
            let count = bytes.count
            while count - index >= 8 {
                let low = UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: index, as: UInt32.self)) ^ crc
                let high = UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: index + 4, as: UInt32.self))
                crc =
                    table[7 * 256 + Int(low & 0xFF)] ^ table[6 * 256 + Int((low >> 8) & 0xFF)]
                    ^ table[5 * 256 + Int((low >> 16) & 0xFF)] ^ table[4 * 256 + Int(low >> 24)]
                    ^ table[3 * 256 + Int(high & 0xFF)] ^ table[2 * 256 + Int((high >> 8) & 0xFF)]
                    ^ table[1 * 256 + Int((high >> 16) & 0xFF)] ^ table[Int(high >> 24)]
                index += 8
            }
            while index < count {
                crc = (crc >> 8) ^ table[Int((crc ^ UInt32(bytes[index])) & 0xFF)]
                index += 1
            }
            return ~crc
        }
    }

    /// The CRC-32C of a byte array.
    public static func checksum(_ bytes: [UInt8], seed: UInt32 = 0) -> UInt32 {
        bytes.withUnsafeBytes { checksum($0, seed: seed) }
    }
}
