/// Appends little-endian integers, floats and wire strings to a growing byte array.
///
/// `write*` appends; the codec builds every payload with it.
public struct ByteWriter: Sendable {
    /// The bytes written so far.
    public private(set) var bytes: [UInt8]

    /// Creates an empty writer that reserves room for `capacity` bytes.
    public init(capacity: Int = 0) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    /// The number of bytes written so far.
    public var count: Int { bytes.count }

    /// Appends `value` in little-endian byte order.
    public mutating func writeInteger<T: FixedWidthInteger>(_ value: T) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    /// Appends the IEEE 754 bits of `value`, little-endian (4 bytes).
    public mutating func writeFloat(_ value: Float) {
        writeInteger(value.bitPattern)
    }

    /// Appends the IEEE 754 bits of `value`, little-endian (8 bytes).
    public mutating func writeDouble(_ value: Double) {
        writeInteger(value.bitPattern)
    }

    /// Appends `count` zero bytes (reserved fields).
    public mutating func writeZeros(count: Int) {
        bytes.append(contentsOf: repeatElement(0, count: count))
    }

    /// Appends raw bytes unchanged.
    public mutating func writeBytes(_ raw: UnsafeRawBufferPointer) {
        bytes.append(contentsOf: raw)
    }

    /// Appends a wire string: its UTF-8 byte length as `u32`, then the bytes (no terminator, no padding).
    public mutating func writeString(_ string: String) {
        var string = string
        string.withUTF8 { utf8 in
            precondition(utf8.count <= Int(UInt32.max), "a wire string is at most 4 GiB")
            writeInteger(UInt32(utf8.count))
            bytes.append(contentsOf: utf8)
        }
    }

    /// Appends `values` as consecutive little-endian float32.
    public mutating func writeFloats(_ values: [Float]) {
        #if _endian(little)
            values.withUnsafeBytes { bytes.append(contentsOf: $0) }
        #else
            for value in values { writeFloat(value) }
        #endif
    }
}

/// Reads little-endian integers, floats and byte ranges from a buffer it does not own.
///
/// `read*` consumes and returns nil, consuming nothing, when too few bytes remain; `get*` peeks at an offset.
/// The caller keeps the buffer alive while the reader is in use.
public struct ByteReader {
    /// The bytes being read.
    public let bytes: UnsafeRawBufferPointer
    /// The offset of the next byte `read*` consumes.
    public private(set) var readerIndex: Int

    /// Creates a reader positioned at the first byte of `bytes`.
    public init(_ bytes: UnsafeRawBufferPointer) {
        self.bytes = bytes
        readerIndex = 0
    }

    /// The number of bytes not yet consumed.
    public var remaining: Int { bytes.count - readerIndex }

    /// The little-endian integer at `offset`, or nil when the buffer ends before it.
    public func getInteger<T: FixedWidthInteger>(at offset: Int, as type: T.Type = T.self) -> T? {
        let size = MemoryLayout<T>.size
        guard offset >= 0, bytes.count - offset >= size else { return nil }
        return T(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: T.self))
    }

    /// Consumes and returns a little-endian integer, or nil when too few bytes remain.
    public mutating func readInteger<T: FixedWidthInteger>(as type: T.Type = T.self) -> T? {
        guard let value = getInteger(at: readerIndex, as: T.self) else { return nil }
        readerIndex += MemoryLayout<T>.size
        return value
    }

    /// Consumes `count` bytes and returns a view of them (no copy), or nil when too few remain.
    public mutating func readBytes(count: Int) -> UnsafeRawBufferPointer? {
        guard count >= 0, remaining >= count else { return nil }
        let view = UnsafeRawBufferPointer(rebasing: bytes[readerIndex..<readerIndex + count])
        readerIndex += count
        return view
    }
}
