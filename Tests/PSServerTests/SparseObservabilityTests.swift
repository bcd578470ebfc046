import Foundation
import PSClient
import PSMath
import PSServer
import PSTestSupport
import PSWire
import XCTest

/// Row-sparse tables in `/metrics` and `/status.json`: exact counts after a scripted sequence of requests.
final class SparseObservabilityTests: XCTestCase {
    /// Two pushes (5 rows), one pull (2 rows), one bad push, one bad pull and one push to a table that is not
    /// there, against a 10 x 2 table over 3 shards.
    private func scriptedServer() throws -> ServerHarness {
        let harness = try ServerHarness(shards: 3) { config in
            config.metricsPort = 0
            config.sparseTables = [RowSparseTableSpec(name: "emb", rows: 10, width: 2)]
        }
        let client = try harness.client()
        defer { client.close() }
        _ = try client.sparsePush(table: 0, clock: 0, ids: [1, 4], values: [1, 1, 1, 1]).wait()
        _ = try client.sparsePush(table: 0, clock: 0, ids: [4, 7, 9], values: [1, 1, 1, 1, 1, 1]).wait()
        _ = try client.sparsePull(table: 0, clock: 0, ids: [0, 4]).wait()
        let bad: [Message] = [
            .sparsePush(SparsePush(table: 0, clock: 0, ids: [3, 3], values: [1, 1, 1, 1])),
            .sparsePull(SparsePull(table: 0, clock: 0, ids: [10])),
            .sparsePush(SparsePush(table: 5, clock: 0, ids: [1], values: [1, 1])),
        ]
        for message in bad {
            XCTAssertThrowsError(try client.request(message).wait())
        }
        return harness
    }

    func test_metrics_afterScriptedRequests_countPullsPushesRowsBytesAndRefusals() throws {
        let harness = try scriptedServer()
        let port = try XCTUnwrap(harness.server.metricsPort)
        let text = try ObservabilityEndpointTests.get(port: port, path: "/metrics")
        let body = String(text[text.range(of: "\r\n\r\n")!.upperBound...])
        let declared = ObservabilityEndpointTests.checkConventions(body)
        let expected = [
            // Payload bytes: 16 fixed + 4 per id + 4 per value (pushes: 16+8+16 and 16+12+24; the reply: 16+16).
            "swiftps_sparse_pulls_total{table=\"emb\"} 1",
            "swiftps_sparse_pushes_total{table=\"emb\"} 2",
            "swiftps_sparse_rows_pulled_total{table=\"emb\"} 2",
            "swiftps_sparse_rows_pushed_total{table=\"emb\"} 5",
            "swiftps_sparse_pull_wire_bytes_total{table=\"emb\"} 32",
            "swiftps_sparse_push_wire_bytes_total{table=\"emb\"} 92",
            "swiftps_sparse_requests_refused_total{table=\"emb\"} 2",
            "swiftps_sparse_unknown_table_requests_total 1",
            "swiftps_sparse_table_elements{table=\"emb\"} 20",
            "swiftps_sparse_table_rows_touched{table=\"emb\"} 4",
            "swiftps_sparse_table_version{table=\"emb\"} 2",
        ]
        for line in expected {
            XCTAssertTrue(body.contains("\n" + line + "\n"), "missing \(line) in\n\(body)")
        }
        XCTAssertEqual(declared["swiftps_sparse_pushes_total"], "counter")
        XCTAssertEqual(declared["swiftps_sparse_table_rows_touched"], "gauge")
        if Promtool.path != nil { try Promtool.check(body, stage: "after row-sparse requests") }
    }

    func test_statusJSON_afterScriptedRequests_hasTheTable() throws {
        let harness = try scriptedServer()
        let port = try XCTUnwrap(harness.server.metricsPort)
        let text = try ObservabilityEndpointTests.get(port: port, path: "/status.json")
        let json = String(text[text.range(of: "\r\n\r\n")!.upperBound...])
        let status = try StatusDocument.decode(json: json)
        XCTAssertEqual(
            status.tables,
            [
                StatusDocument.Table(
                    name: "emb", rows: 10, width: 2, optimizer: "sgd", rowsTouched: 4, updatesApplied: 2, pushes: 2,
                    pulls: 1)
            ])
    }

    func test_denseStore_hasNoSparseFamiliesNorTables() throws {
        let harness = try ServerHarness(shards: 1) { $0.metricsPort = 0 }
        let port = try XCTUnwrap(harness.server.metricsPort)
        let metrics = try ObservabilityEndpointTests.get(port: port, path: "/metrics")
        XCTAssertFalse(metrics.contains("swiftps_sparse_"))
        let status = try ObservabilityEndpointTests.get(port: port, path: "/status.json")
        XCTAssertFalse(status.contains("\"tables\""), status)
    }

    func test_rowsTouched_bspStepAndRestore() throws {
        let table = RowSparseTable(
            spec: RowSparseTableSpec(name: "w", rows: 130, width: 1), shardCount: 2,
            optimizer: RowOptimizerConfig(kind: .adagrad, learningRate: 0.1))
        try table.hold(rank: 0, step: 0, ids: [0, 64, 129], values: [1, 1, 1])
        try table.hold(rank: 1, step: 0, ids: [64, 128], values: [1, 1])
        XCTAssertEqual(table.rowsTouched, 0)
        XCTAssertTrue(table.applyStep(0, ranks: [0, 1]))
        XCTAssertEqual(table.rowsTouched, 4)
        XCTAssertEqual(table.version, 1)
        try table.push(ids: [0, 1], values: [1, 1])
        XCTAssertEqual(table.rowsTouched, 5)
        try table.push(ids: [1], values: [1])  // shard 1 only: still one update of the table
        XCTAssertEqual(table.version, 3)
        let copy = table.copy()
        try table.restore(weights: copy.weights, step: copy.step, slots: copy.slots)
        XCTAssertEqual(table.rowsTouched, 0)
    }
}
