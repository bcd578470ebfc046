import PSCoordinator
import PSTransport
import PSWire

/// Row-sparse requests (`sparsePull`, `sparsePush`; proto-docs/protocol.md, "Row-sparse tensors").
///
/// A request is validated in full (ids sorted, unique and in range, the value count, finite values) before any
/// shard lock is taken; a bad one is answered with an error frame and applies nothing.
extension ShardService {
    func sparsePull(_ pull: SparsePull, session: Session, requestID: UInt64) throws(TransportError) {
        guard let table = sparseTable(pull.table) else {
            server.serverMetrics.sparseUnknownTable.wrappingAdd(1, ordering: .relaxed)
            try session.replyError(
                .unknownTensor, SparseRowsError.unknownTable(pull.table).description, to: requestID)
            return
        }
        let ids = pull.ids.map(UInt64.init)
        do {
            // Before the BSP wait: a bad request is refused at once.
            try table.validate(ids: ids, valueCount: nil)
        } catch {
            table.counters.refused.wrappingAdd(1, ordering: .relaxed)
            try session.replyError(error.code, error.description, to: requestID)
            return
        }
        guard try waitUntilReadable(step: pull.clock, session: session, requestID: requestID) else { return }
        let values = table.rows(validated: ids)
        let counters = table.counters
        counters.pulls.wrappingAdd(1, ordering: .relaxed)
        counters.rowsPulled.wrappingAdd(UInt64(pull.ids.count), ordering: .relaxed)
        counters.pullBytes.wrappingAdd(UInt64(Self.sparseHeaderBytes + 4 * values.count), ordering: .relaxed)
        try session.reply(
            .sparsePullReply(SparsePullReply(table: pull.table, width: UInt32(table.spec.width), values: values)),
            to: requestID)
    }

    func sparsePush(_ push: SparsePush, session: Session, requestID: UInt64) throws(TransportError) {
        guard let table = sparseTable(push.table) else {
            server.serverMetrics.sparseUnknownTable.wrappingAdd(1, ordering: .relaxed)
            try session.replyError(
                .unknownTensor, SparseRowsError.unknownTable(push.table).description, to: requestID)
            return
        }
        let bsp = server.coordinator != nil && server.config.mode == .bsp
        let rank = session.rank
        if bsp, rank == nil {
            try session.replyError(.invalidState, "only a joined worker can push in bsp mode", to: requestID)
            return
        }
        do throws(SparseRowsError) {
            if bsp, let rank {
                try table.hold(rank: rank, step: push.clock, ids: push.ids.map(UInt64.init), values: push.values)
            } else {
                try table.push(ids: push.ids.map(UInt64.init), values: push.values)
            }
        } catch {
            table.counters.refused.wrappingAdd(1, ordering: .relaxed)
            try session.replyError(error.code, "\(error.description); nothing was applied", to: requestID)
            return
        }
        let counters = table.counters
        counters.pushes.wrappingAdd(1, ordering: .relaxed)
        counters.rowsPushed.wrappingAdd(UInt64(push.ids.count), ordering: .relaxed)
        counters.pushBytes.wrappingAdd(
            UInt64(Self.sparseHeaderBytes + 4 * push.ids.count + 4 * push.values.count), ordering: .relaxed)
        try session.reply(
            .pushAck(
                PushAck(shard: push.table, status: bsp ? .accepted : .applied, version: table.version, staleness: 0)),
            to: requestID)
    }

    /// The fixed fields of a `sparsePush` payload (table, count, clock) and of a `sparsePullReply` one (table,
    /// count, width, reserved).
    static let sparseHeaderBytes = 16

    private func sparseTable(_ index: UInt32) -> RowSparseTable? {
        Int(index) < server.sparseTables.count ? server.sparseTables[Int(index)] : nil
    }
}
