import Foundation
import PSClient
import PSLog
import PSMath
import PSPosix
import PSServer
import PSWire

/// `psbench sparse`: one worker's step traffic for a row-sparse model against moving the same model densely.
///
/// A sparse step pulls the rows a batch touches (`sparsePull`) and pushes their gradients (`sparsePush`); the
/// dense baseline pulls and pushes the whole table as a dense tensor over the same in-process server's shards.
/// Batches hold 512 rows of 39 feature ids each, drawn from a Zipf(1) law over the table's rows (like Criteo's
/// 39 categorical fields). Bytes on the wire are counted from the frame layouts (header and payload, both
/// directions); steps/s is measured.
enum SparseBench {
    struct Table {
        let name: String
        let rows: Int
        let width: Int
    }

    static func run(quick: Bool) throws -> [BenchRow] {
        let tables = [
            Table(name: "sparse-lr 2^24 x 1", rows: 1 << 24, width: 1),
            Table(name: "embedding 2^20 x 16", rows: 1 << 20, width: 16),
        ]
        var rows: [BenchRow] = []
        for table in tables {
            FileHandle.standardError.write(Data("measuring \(table.name)\n".utf8))
            rows += try measure(table, sparseSteps: quick ? 20 : 100, denseSteps: quick ? 2 : 5)
        }
        return rows
    }

    /// The table with the ratio as a fraction where it is below 1 (`1/350` reads better than `0.00x`).
    static func printRows(_ rows: [BenchRow]) {
        print("\n### psbench sparse\n")
        print("| measurement | sparse | dense (same run) | ratio |")
        print("|---|---|---|---|")
        for row in rows {
            let ratio = row.ratio < 1 ? "1/\(Int((1 / row.ratio).rounded()))" : String(format: "%.1fx", row.ratio)
            print(
                "| \(row.name) | \(String(format: "%.1f", row.value)) \(row.unit) | "
                    + "\(String(format: "%.1f", row.baseline)) \(row.unit) | \(ratio) |")
        }
        fflush(nil)
    }

    /// Sorted, unique ids of one batch: 512 x 39 Zipf(1) draws over `rows`.
    static func batchIds(rows: Int, generator: inout SplitMix64) -> [UInt64] {
        let logSpan = log(Double(rows) + 1)
        var ids = Set<UInt64>()
        for _ in 0..<(512 * 39) {
            let rank = exp(generator.nextUnitDouble() * logSpan) - 1
            ids.insert(UInt64(min(max(Int(rank), 0), rows - 1)))
        }
        return ids.sorted()
    }

    static func measure(_ table: Table, sparseSteps: Int, denseSteps: Int) throws -> [BenchRow] {
        var config = ServerConfig()
        config.host = "127.0.0.1"
        config.port = 0
        config.shardCount = 4
        config.mode = .async
        config.optimizer = OptimizerConfig(kind: .adagrad, learningRate: 0.01)
        config.maxFrameBytes = max(table.rows * table.width * 4 + 4096, 1 << 20)
        config.sparseTables = [RowSparseTableSpec(name: "table", rows: table.rows, width: table.width)]
        let server = try ParameterServer(config: config, log: Logger(component: "bench", minimumLevel: .error))
        server.start()
        defer { server.stop(exitCode: 0, reason: "bench done") }
        let client = try ParameterClient.connect(
            host: "127.0.0.1", port: server.port, role: .worker, name: "bench", maxPayloadBytes: config.maxFrameBytes)
        defer { client.close() }
        let count = table.rows * table.width
        _ = try client.register([TensorSpec(name: "dense", shape: [table.rows, table.width], initializer: .zeros)])
        let layout = ShardLayout(tensorElementCounts: [count], shardCount: config.shardCount)

        var generator = SplitMix64(seed: 1)
        let batches = (0..<8).map { _ in batchIds(rows: table.rows, generator: &generator) }
        let header = WireProtocol.headerSize
        var sparseBytes = 0
        var idsPerStep = 0
        let sparseSeconds = try ServerBench.measureLoop(iterations: sparseSteps) {
            let ids = batches[Int.random(in: 0..<batches.count)]
            let values = try ParameterClient.sparseValues(try client.sparsePull(table: 0, clock: 0, ids: ids).wait())
            let gradient = values.map { $0 * 0 + 1e-3 }
            _ = try client.sparsePush(table: 0, clock: 0, ids: ids, values: gradient).wait()
            // pull request, its reply, push request, its pushAck
            sparseBytes =
                (header + 16 + 4 * ids.count) + (header + 16 + 4 * values.count)
                + (header + 16 + 4 * ids.count + 4 * values.count) + (header + 24)
            idsPerStep = ids.count
        }
        var weights = [Float](repeating: 0, count: count)
        let gradient = [Float](repeating: 1e-3, count: count)
        let denseSeconds = try ServerBench.measureLoop(iterations: denseSteps) {
            try weights.withUnsafeMutableBufferPointer { (flat) throws(ClientError) in
                let pulls = try (0..<layout.shardCount).map { (shard) throws(ClientError) in
                    try client.pull(
                        shard: shard, clock: 0,
                        into: UnsafeMutableBufferPointer(rebasing: flat[layout.range(ofShard: shard)]))
                }
                for pull in pulls { _ = try pull.wait() }
            }
            try gradient.withUnsafeBufferPointer { (flat) throws(ClientError) in
                let pushes = try (0..<layout.shardCount).map { (shard) throws(ClientError) in
                    try client.push(
                        shard: shard, clock: 0, baseVersion: 0,
                        gradient: UnsafeBufferPointer(rebasing: flat[layout.range(ofShard: shard)]))
                }
                for push in pushes { _ = try push.wait() }
            }
        }
        // Per shard: pull request and reply, push request and pushAck.
        let denseBytes =
            layout.shardCount * ((header + 16) + (header + 16) + (header + 24) + (header + 24)) + 2 * 4 * count
        let sparseRate = Double(sparseSteps) / sparseSeconds
        let denseRate = Double(denseSteps) / denseSeconds
        return [
            BenchRow(
                name: "\(table.name): bytes per step (\(idsPerStep) rows touched)", value: Double(sparseBytes),
                unit: "B", baseline: Double(denseBytes), baselineName: "dense pull + push", lowerIsBetter: true),
            BenchRow(
                name: "\(table.name): steps/s", value: sparseRate, unit: "steps/s", baseline: denseRate,
                baselineName: "dense pull + push"),
        ]
    }
}
