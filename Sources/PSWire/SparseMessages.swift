/// A worker asks for some rows of a row-sparse table (`sparsePull`, 0x0050; proto-docs/protocol.md).
///
/// The ids must be sorted and unique and below the table's row count; the server checks them, not the codec.
public struct SparsePull: Sendable, Equatable {
    /// The table's index in the job's list of row-sparse tables.
    public var table: UInt32
    /// The step the puller is about to compute (BSP: the reply waits until step `clock - 1` is applied).
    public var clock: UInt64
    /// Global row ids (u32 on the wire: a table has at most 2^32 rows).
    public var ids: [UInt32]

    /// Creates a request.
    public init(table: UInt32, clock: UInt64, ids: [UInt32]) {
        self.table = table
        self.clock = clock
        self.ids = ids
    }
}

/// The rows a `sparsePull` asked for, in its order (`sparsePullReply`, 0x0051).
public struct SparsePullReply: Sendable, Equatable {
    /// The table's index.
    public var table: UInt32
    /// The row width.
    public var width: UInt32
    /// `rows x width` float32 values.
    public var values: [Float]

    /// Creates a reply; `values.count` must be a multiple of `width`.
    public init(table: UInt32, width: UInt32, values: [Float]) {
        self.table = table
        self.width = width
        self.values = values
    }

    /// The number of rows.
    public var rowCount: Int { width == 0 ? 0 : values.count / Int(width) }
}

/// A gradient for some rows of a row-sparse table (`sparsePush`, 0x0052); answered by `pushAck`.
public struct SparsePush: Sendable, Equatable {
    /// The table's index.
    public var table: UInt32
    /// The step the gradient belongs to.
    public var clock: UInt64
    /// Sorted, unique global row ids.
    public var ids: [UInt32]
    /// `ids.count x width` float32 gradient values, row after row.
    public var values: [Float]

    /// Creates a push.
    public init(table: UInt32, clock: UInt64, ids: [UInt32], values: [Float]) {
        self.table = table
        self.clock = clock
        self.ids = ids
        self.values = values
    }
}

extension MessageCodec {
    static func encode(_ pull: SparsePull, into writer: inout ByteWriter) {
        writer.writeInteger(pull.table)
        writer.writeInteger(UInt32(pull.ids.count))
        writer.writeInteger(pull.clock)
        for id in pull.ids { writer.writeInteger(id) }
    }

    static func encode(_ reply: SparsePullReply, into writer: inout ByteWriter) {
        writer.writeInteger(reply.table)
        writer.writeInteger(UInt32(reply.rowCount))
        writer.writeInteger(reply.width)
        writer.writeInteger(UInt32(0))
        writer.writeFloats(reply.values)
    }

    static func encode(_ push: SparsePush, into writer: inout ByteWriter) {
        writer.writeInteger(push.table)
        writer.writeInteger(UInt32(push.ids.count))
        writer.writeInteger(push.clock)
        for id in push.ids { writer.writeInteger(id) }
        writer.writeFloats(push.values)
    }

    static func decodeSparsePull(_ reader: inout PayloadReader) throws(WireError) -> Message {
        let table = try reader.u32()
        let count = Int(try reader.u32())
        let clock = try reader.u64()
        return .sparsePull(SparsePull(table: table, clock: clock, ids: try rowIds(&reader, count: count)))
    }

    static func decodeSparsePullReply(_ reader: inout PayloadReader) throws(WireError) -> Message {
        let table = try reader.u32()
        let count = Int(try reader.u32())
        let width = try reader.u32()
        _ = try reader.u32()
        let floatBytes = reader.remaining
        let (declared, overflow) = count.multipliedReportingOverflow(by: Int(width))
        guard !overflow, floatBytes % 4 == 0, floatBytes / 4 == declared else {
            throw .elementCountMismatch(type: reader.type, declared: declared, actual: floatBytes / 4)
        }
        let values = floats(try reader.bytes(count: floatBytes))
        return .sparsePullReply(SparsePullReply(table: table, width: width, values: values))
    }

    static func decodeSparsePush(_ reader: inout PayloadReader) throws(WireError) -> Message {
        let table = try reader.u32()
        let count = Int(try reader.u32())
        let clock = try reader.u64()
        let ids = try rowIds(&reader, count: count)
        let floatBytes = reader.remaining
        guard floatBytes % 4 == 0 else { throw .misalignedPayload(type: reader.type, floatBytes: floatBytes) }
        let values = floats(try reader.bytes(count: floatBytes))
        return .sparsePush(SparsePush(table: table, clock: clock, ids: ids, values: values))
    }

    private static func rowIds(_ reader: inout PayloadReader, count: Int) throws(WireError) -> [UInt32] {
        let bytes = try reader.bytes(count: 4 * count)
        return (0..<count).map { UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self)) }
    }
}
