import Foundation
import PSMath
import PSServer
import PSWire
import XCTest

final class RowSparseTableTests: XCTestCase {
    private func makeTable(rows: Int = 10, width: Int = 2, shards: Int = 3, kind: RowOptimizerKind = .sgd)
        -> RowSparseTable
    {
        RowSparseTable(
            spec: RowSparseTableSpec(name: "emb", rows: rows, width: width), shardCount: shards,
            optimizer: RowOptimizerConfig(kind: kind, learningRate: 1))
    }

    func test_placement_isRoundRobinOverShards() {
        let placement = RowPlacement(rows: 10, shardCount: 4)
        XCTAssertEqual((0..<10).map { placement.shard(of: UInt64($0)) }, [0, 1, 2, 3, 0, 1, 2, 3, 0, 1])
        XCTAssertEqual((0..<10).map { placement.localRow(of: UInt64($0)) }, [0, 0, 0, 0, 1, 1, 1, 1, 2, 2])
        XCTAssertEqual((0..<4).map { placement.rowCount(shard: $0) }, [3, 3, 2, 2])
    }

    func test_pushAndPull_touchOnlyTheNamedRows() throws {
        let table = makeTable()
        try table.push(ids: [1, 5, 9], values: [1, 2, 3, 4, 5, 6])
        XCTAssertEqual(try table.pull(ids: [0, 1, 5, 9]), [0, 0, -1, -2, -3, -4, -5, -6])
        var expected = [Float](repeating: 0, count: 20)
        expected.replaceSubrange(2..<4, with: [-1, -2])
        expected.replaceSubrange(10..<12, with: [-3, -4])
        expected.replaceSubrange(18..<20, with: [-5, -6])
        XCTAssertEqual(table.denseWeights(), expected)
        XCTAssertEqual(try table.pull(ids: []), [])
    }

    func test_badRequests_areRefusedWithNothingApplied() {
        let table = makeTable()
        let cases: [([UInt64], [Float], SparseRowsError, ErrorCode)] = [
            ([2, 1], [0, 0, 0, 0], .notIncreasing(index: 1, previous: 2, id: 1), .invalidArgument),
            ([1, 1], [0, 0, 0, 0], .notIncreasing(index: 1, previous: 1, id: 1), .invalidArgument),
            ([1, 10], [0, 0, 0, 0], .outOfRange(index: 1, id: 10, rows: 10), .invalidArgument),
            ([1, 2], [1, 1, 1], .valueCountMismatch(expected: 4, actual: 3), .lengthMismatch),
            ([1, 2], [1, 1, .nan, 1], .nonFinite(index: 2), .nonFinite),
        ]
        for (ids, values, error, code) in cases {
            XCTAssertThrowsError(try table.push(ids: ids, values: values)) { thrown in
                XCTAssertEqual(thrown as? SparseRowsError, error)
                XCTAssertEqual((thrown as? SparseRowsError)?.code, code)
            }
            XCTAssertThrowsError(try table.hold(rank: 0, step: 1, ids: ids, values: values))
        }
        XCTAssertThrowsError(try table.pull(ids: [3, 3]))
        XCTAssertEqual(
            "\(SparseRowsError.notIncreasing(index: 1, previous: 1, id: 1))",
            "row ids must be sorted and unique: id 1 at index 1 is a duplicate of the previous id 1")
        XCTAssertEqual(table.denseWeights(), [Float](repeating: 0, count: 20), "nothing applied")
        XCTAssertFalse(table.applyStep(1, ranks: [0]), "no held gradient")
        XCTAssertEqual(table.optimizerState().step, 0)
    }

    func test_concurrentPushesOfOverlappingRows_sumExactly() throws {
        let rows = 64
        let table = makeTable(rows: rows, width: 3, shards: 4)
        let clients = 6
        let pushesPerClient = 200
        let done = DispatchGroup()
        for client in 0..<clients {
            done.enter()
            let thread = Thread {
                var generator = SplitMix64(seed: UInt64(client))
                for _ in 0..<pushesPerClient {
                    // A random sorted subset of the rows, always with row 0 (the hot row every client touches).
                    let ids = [UInt64(0)] + (1..<rows).compactMap { generator.next() % 4 == 0 ? UInt64($0) : nil }
                    // Integer gradients: every partial sum is exact in float32, so any order gives the same bits.
                    let values = [Float](repeating: 1, count: ids.count * 3)
                    try? table.push(ids: ids, values: values)
                }
                done.leave()
            }
            thread.start()
        }
        done.wait()
        // Replay the same subsets to count how often each row was pushed.
        var counts = [Float](repeating: 0, count: rows)
        for client in 0..<clients {
            var generator = SplitMix64(seed: UInt64(client))
            for _ in 0..<pushesPerClient {
                counts[0] += 1
                for row in 1..<rows where generator.next() % 4 == 0 { counts[row] += 1 }
            }
        }
        let weights = table.denseWeights()
        for row in 0..<rows {
            XCTAssertEqual(Array(weights[(row * 3)..<(row * 3 + 3)]), [Float](repeating: -counts[row], count: 3))
        }
        XCTAssertEqual(weights[0], -Float(clients * pushesPerClient))
    }

    func test_bspStep_sumsInRankOrderWhateverTheArrivalOrder_andEqualsTheDenseMean() throws {
        var generator = SplitMix64(seed: 9)
        func gradient(_ count: Int) -> [Float] { (0..<count).map { _ in Float(generator.nextUnitDouble() - 0.5) } }
        let pushes: [(ids: [UInt64], values: [Float])] = [
            ([0, 3, 7], gradient(6)), ([3, 4], gradient(4)), ([0, 4, 7, 9], gradient(8)),
        ]
        var results: [[Float]] = []
        for order in [[0, 1, 2], [2, 0, 1], [1, 2, 0]] {
            let table = makeTable(kind: .adagrad)
            for rank in order {
                try table.hold(rank: rank, step: 1, ids: pushes[rank].ids, values: pushes[rank].values)
            }
            XCTAssertFalse(table.applyStep(1, ranks: [0, 1, 2, 3]), "rank 3 has not pushed")
            XCTAssertTrue(table.applyStep(1, ranks: [2, 1, 0]))
            results.append(table.denseWeights())
        }
        XCTAssertEqual(results[0], results[1])
        XCTAssertEqual(results[0], results[2])
        // The dense computation: rank-order sum of the scattered gradients, times 1/3, then dense AdaGrad.
        var sum = [Float](repeating: 0, count: 20)
        for push in pushes {
            for (slot, id) in push.ids.enumerated() {
                for column in 0..<2 { sum[Int(id) * 2 + column] += push.values[slot * 2 + column] }
            }
        }
        var mean = sum.map { $0 * (1 / Float(3)) }
        var weights = [Float](repeating: 0, count: 20)
        var state = OptimizerState(config: OptimizerConfig(kind: .adagrad, learningRate: 1), count: 20)
        weights.withUnsafeMutableBufferPointer { w in
            mean.withUnsafeMutableBufferPointer { g in state.apply(weights: w, gradient: g) }
        }
        XCTAssertEqual(results[0], weights)
    }

    func test_restore_roundTripsWeightsAndOptimizerState() throws {
        let table = makeTable(kind: .ftrl)
        try table.push(ids: [1, 2, 8], values: [3, -2, 0.5, 4, -1, 2])
        let saved = (weights: table.denseWeights(), state: table.optimizerState())
        let other = makeTable(kind: .ftrl)
        try other.restore(weights: saved.weights, step: saved.state.step, slots: saved.state.slots)
        XCTAssertEqual(other.denseWeights(), saved.weights)
        XCTAssertEqual(other.optimizerState().slots, saved.state.slots)
        try table.push(ids: [2, 5], values: [1, 1, -1, 1])
        try other.push(ids: [2, 5], values: [1, 1, -1, 1])
        XCTAssertEqual(other.denseWeights(), table.denseWeights(), "resumes bitwise")
        XCTAssertThrowsError(try other.restore(weights: [1], step: 0, slots: saved.state.slots))
    }
}
