import PSWire

/// Row-sparse tables: pull and push only some rows (proto-docs/protocol.md, "Row-sparse tensors").
///
/// ```swift
/// let rows = try client.sparsePull(table: 0, clock: step, ids: [3, 17]).wait()
/// let weights = try ParameterClient.sparseValues(rows)            // 2 x width floats
/// _ = try client.sparsePush(table: 0, clock: step, ids: [3, 17], values: gradient).wait()
/// ```
extension ParameterClient {
    /// Asks for the rows `ids` (sorted, unique) of table `table`, for step `clock`.
    public func sparsePull(table: Int, clock: UInt64, ids: [UInt64]) throws(ClientError) -> RequestHandle {
        try request(.sparsePull(SparsePull(table: UInt32(table), clock: clock, ids: try Self.wireIds(ids))))
    }

    /// Pushes a gradient for the rows `ids` (sorted, unique) of table `table`: `ids.count x width` values.
    public func sparsePush(
        table: Int, clock: UInt64, ids: [UInt64], values: [Float]
    ) throws(ClientError) -> RequestHandle {
        try request(
            .sparsePush(SparsePush(table: UInt32(table), clock: clock, ids: try Self.wireIds(ids), values: values)))
    }

    /// Row ids as the wire's u32 (a table has at most 2^32 rows).
    static func wireIds(_ ids: [UInt64]) throws(ClientError) -> [UInt32] {
        if let id = ids.first(where: { $0 > UInt64(UInt32.max) }) {
            throw .protocolViolation("row id \(id) is beyond 2^32 - 1, the largest a row-sparse table has")
        }
        return ids.map { UInt32($0) }
    }

    /// The values of a `sparsePull` reply; a reply of another type is a protocol violation.
    public static func sparseValues(_ reply: Reply) throws(ClientError) -> [Float] {
        guard case .message(.sparsePullReply(let rows)) = reply else {
            throw .protocolViolation("expected sparsePullReply, got \(reply)")
        }
        return rows.values
    }
}
