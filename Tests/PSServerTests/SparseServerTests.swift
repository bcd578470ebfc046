import Foundation
import PSClient
import PSMath
import PSPosix
import PSServer
import PSWire
import XCTest

/// Row-sparse tables over the wire: `sparsePush` / `sparsePull` against a real server on loopback.
final class SparseServerTests: XCTestCase {
    private func harness(rows: Int = 1000, width: Int = 2, shards: Int = 3) throws -> ServerHarness {
        try ServerHarness(shards: shards) { config in
            config.sparseTables = [RowSparseTableSpec(name: "emb", rows: rows, width: width)]
        }
    }

    func test_concurrentClientsPushingOverlappingRows_sumExactly() throws {
        let harness = try harness()
        let clients = 4
        let rounds = 40
        let errors = LockedValue<[String]>([])
        let group = DispatchGroup()
        /// Client `w`'s rows in round `r`: every third row from an offset, plus the hot rows 0 and 999.
        @Sendable func ids(_ w: Int, _ r: Int) -> [UInt64] {
            Array(Set([0, 999] + stride(from: (w + r) % 3, to: 1000, by: 3).map { $0 })).sorted().map { UInt64($0) }
        }
        for w in 0..<clients {
            group.enter()
            let port = harness.port
            Thread {
                defer { group.leave() }
                do {
                    let client = try ParameterClient.connect(
                        host: "127.0.0.1", port: port, role: .worker, name: "w\(w)")
                    for round in 0..<rounds {
                        let rows = ids(w, round)
                        // Multiples of 2^-4: every partial sum is exact, whatever the arrival order.
                        let values = rows.flatMap { [Float(w + 1) / 16, -Float($0 % 5) / 16] }
                        _ = try client.sparsePush(table: 0, clock: UInt64(round), ids: rows, values: values).wait()
                    }
                    client.close()
                } catch {
                    errors.withLock { $0.append("client \(w): \(error)") }
                }
            }.start()
        }
        XCTAssertEqual(group.wait(timeout: .now() + 60), .success)
        XCTAssertEqual(errors.withLock { $0 }, [])
        var expected = [Float](repeating: 0, count: 2000)
        for w in 0..<clients {
            for round in 0..<rounds {
                for id in ids(w, round) {
                    expected[Int(id) * 2] -= Float(w + 1) / 16
                    expected[Int(id) * 2 + 1] += Float(id % 5) / 16
                }
            }
        }
        let client = try harness.client()
        let all = (0..<1000).map { UInt64($0) }
        let pulled = try ParameterClient.sparseValues(try client.sparsePull(table: 0, clock: 0, ids: all).wait())
        XCTAssertEqual(pulled, expected)
    }

    func test_badSparseFrames_getErrorFramesAndApplyNothing() throws {
        let harness = try harness(rows: 10)
        let client = try harness.client()
        let cases: [(Message, ErrorCode, String)] = [
            (
                .sparsePush(SparsePush(table: 0, clock: 0, ids: [3, 2], values: [1, 1, 1, 1])), .invalidArgument,
                "row ids must be sorted and unique: id 2 at index 1 is not greater than the previous id 3; "
                    + "nothing was applied"
            ),
            (
                .sparsePush(SparsePush(table: 0, clock: 0, ids: [1, 1], values: [1, 1, 1, 1])), .invalidArgument,
                "row ids must be sorted and unique: id 1 at index 1 is a duplicate of the previous id 1; "
                    + "nothing was applied"
            ),
            (
                .sparsePush(SparsePush(table: 0, clock: 0, ids: [1, 10], values: [1, 1, 1, 1])), .invalidArgument,
                "row id 10 at index 1 is out of range: the table has 10 rows; nothing was applied"
            ),
            (
                .sparsePush(SparsePush(table: 0, clock: 0, ids: [1, 2], values: [1, 1, 1])), .lengthMismatch,
                "expected 4 values (row count x width), got 3; nothing was applied"
            ),
            (
                .sparsePush(SparsePush(table: 0, clock: 0, ids: [1, 2], values: [1, .infinity, 1, 1])), .nonFinite,
                "value 1 is NaN or infinite; nothing was applied"
            ),
            (
                .sparsePush(SparsePush(table: 3, clock: 0, ids: [1], values: [1, 1])), .unknownTensor,
                "no row-sparse table 3"
            ),
            (
                .sparsePull(SparsePull(table: 0, clock: 0, ids: [5, 5])), .invalidArgument,
                "row ids must be sorted and unique: id 5 at index 1 is a duplicate of the previous id 5"
            ),
            (.sparsePull(SparsePull(table: 1, clock: 0, ids: [5])), .unknownTensor, "no row-sparse table 1"),
        ]
        for (message, code, text) in cases {
            XCTAssertThrowsError(try client.request(message).wait()) { error in
                XCTAssertEqual(error as? ClientError, .remote(code: code, message: text))
            }
        }
        // The connection still works and nothing was applied.
        let all = (0..<10).map { UInt64($0) }
        let pulled = try ParameterClient.sparseValues(try client.sparsePull(table: 0, clock: 0, ids: all).wait())
        XCTAssertEqual(pulled, [Float](repeating: 0, count: 20))
        XCTAssertEqual(harness.server.sparseTables[0].version, 0)
    }

    func test_config_sparseTablesOnSeveralServers_isRefusedNamingTheLimitation() {
        var config = ServerConfig()
        config.sparseTables = [RowSparseTableSpec(name: "w", rows: 10, width: 1)]
        config.servers = 2
        config.job = nil
        XCTAssertThrowsError(try config.validate()) { error in
            XCTAssertTrue("\(error)".contains("--servers"), "\(error)")
        }
        config.servers = 1
        config.sparseTables = [RowSparseTableSpec(name: "w", rows: 1 << 32, width: 1)]
        config.maxModelBytes = 1 << 30
        XCTAssertThrowsError(try config.validate()) { error in
            XCTAssertTrue("\(error)".contains("more than --max-model-bytes"), "\(error)")
        }
        config.sparseTables = [RowSparseTableSpec(name: "w", rows: 10, width: 1)]
        config.optimizer = OptimizerConfig(kind: .momentum, learningRate: 0.1)
        XCTAssertThrowsError(try config.validate()) { error in
            XCTAssertTrue("\(error)".contains("no lazy row-sparse form"), "\(error)")
        }
    }
}
