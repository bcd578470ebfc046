import Foundation
import PSWire
import XCTest

final class ShardLayoutTests: XCTestCase {
    /// Checks every property the layout promises, element by element.
    private func assertLayoutInvariants(
        _ layout: ShardLayout,
        _ context: String,
        file: StaticString = #filePath,
        line: UInt = #line
    ) {
        let counts = layout.tensorElementCounts
        let total = counts.reduce(0, +)
        XCTAssertEqual(layout.totalElements, total, context, file: file, line: line)
        XCTAssertEqual(layout.tensorOffsets.count, counts.count, context, file: file, line: line)

        // Ranges: contiguous, starting at 0, ending at N, balanced within one element, exactly s*N/S.
        var next = 0
        var sizes: [Int] = []
        for shard in 0..<layout.shardCount {
            let range = layout.range(ofShard: shard)
            XCTAssertEqual(range.lowerBound, next, "\(context) shard \(shard)", file: file, line: line)
            XCTAssertEqual(range.lowerBound, shard * total / layout.shardCount, context, file: file, line: line)
            XCTAssertEqual(layout.elementCount(ofShard: shard), range.count, context, file: file, line: line)
            next = range.upperBound
            sizes.append(range.count)
        }
        XCTAssertEqual(next, total, context, file: file, line: line)
        XCTAssertLessThanOrEqual((sizes.max() ?? 0) - (sizes.min() ?? 0), 1, context, file: file, line: line)

        // Every element in exactly one shard, and shard(ofElement:) agrees.
        var owner = [Int](repeating: -1, count: total)
        for shard in 0..<layout.shardCount {
            for element in layout.range(ofShard: shard) {
                XCTAssertEqual(owner[element], -1, "\(context): element \(element) twice", file: file, line: line)
                owner[element] = shard
            }
        }
        for element in 0..<total {
            XCTAssertEqual(layout.shard(ofElement: element), owner[element], context, file: file, line: line)
        }

        // Pieces tile each shard and, together, cover each tensor exactly once.
        var covered = counts.map { [Bool](repeating: false, count: $0) }
        for shard in 0..<layout.shardCount {
            let flat = layout.range(ofShard: shard)
            var shardCursor = 0
            for piece in layout.pieces(ofShard: shard) {
                XCTAssertFalse(piece.tensorRange.isEmpty, context, file: file, line: line)
                XCTAssertEqual(piece.shardRange.lowerBound, shardCursor, context, file: file, line: line)
                XCTAssertEqual(piece.shardRange.count, piece.tensorRange.count, context, file: file, line: line)
                XCTAssertEqual(
                    layout.tensorOffsets[piece.tensorIndex] + piece.tensorRange.lowerBound,
                    flat.lowerBound + piece.shardRange.lowerBound,
                    context,
                    file: file,
                    line: line
                )
                for element in piece.tensorRange {
                    XCTAssertFalse(covered[piece.tensorIndex][element], context, file: file, line: line)
                    covered[piece.tensorIndex][element] = true
                }
                shardCursor = piece.shardRange.upperBound
            }
            XCTAssertEqual(shardCursor, flat.count, "\(context): shard \(shard) not tiled", file: file, line: line)
        }
        XCTAssertTrue(
            covered.allSatisfy { $0.allSatisfy { $0 } }, "\(context): a tensor not covered", file: file, line: line)
    }

    func test_layout_documentedExampleOverThreeShards_matchesProtoDocs() {
        let layout = ShardLayout(tensorElementCounts: [6, 3], shardCount: 3)
        XCTAssertEqual(layout.totalElements, 9)
        XCTAssertEqual(layout.tensorOffsets, [0, 6])
        XCTAssertEqual((0..<3).map { layout.range(ofShard: $0) }, [0..<3, 3..<6, 6..<9])
        XCTAssertEqual(layout.pieces(ofShard: 1), [ShardPiece(tensorIndex: 0, tensorRange: 3..<6, shardRange: 0..<3)])
        XCTAssertEqual(layout.pieces(ofShard: 2), [ShardPiece(tensorIndex: 1, tensorRange: 0..<3, shardRange: 0..<3)])
    }

    func test_layout_documentedExampleOverFourShards_matchesProtoDocs() {
        let layout = ShardLayout(tensorElementCounts: [6, 3], shardCount: 4)
        XCTAssertEqual((0..<4).map { layout.range(ofShard: $0) }, [0..<2, 2..<4, 4..<6, 6..<9])
        XCTAssertEqual(layout.pieces(ofShard: 2), [ShardPiece(tensorIndex: 0, tensorRange: 4..<6, shardRange: 0..<2)])
        XCTAssertEqual(layout.pieces(ofShard: 3), [ShardPiece(tensorIndex: 1, tensorRange: 0..<3, shardRange: 0..<3)])
    }

    func test_pieces_shardSpanningTensors_listsEachPieceInTensorOrder() {
        let layout = ShardLayout(tensorElementCounts: [4, 0, 2, 5], shardCount: 2)
        XCTAssertEqual(layout.range(ofShard: 0), 0..<5)
        XCTAssertEqual(
            layout.pieces(ofShard: 0),
            [
                ShardPiece(tensorIndex: 0, tensorRange: 0..<4, shardRange: 0..<4),
                ShardPiece(tensorIndex: 2, tensorRange: 0..<1, shardRange: 4..<5),
            ]
        )
        XCTAssertEqual(
            layout.pieces(ofShard: 1),
            [
                ShardPiece(tensorIndex: 2, tensorRange: 1..<2, shardRange: 0..<1),
                ShardPiece(tensorIndex: 3, tensorRange: 0..<5, shardRange: 1..<6),
            ]
        )
    }

    func test_layout_moreShardsThanElements_leavesShardsEmpty() {
        let layout = ShardLayout(tensorElementCounts: [2, 1], shardCount: 10)
        let sizes = (0..<10).map { layout.elementCount(ofShard: $0) }
        XCTAssertEqual(sizes.reduce(0, +), 3)
        XCTAssertEqual(sizes.filter { $0 == 0 }.count, 7)
        XCTAssertEqual(layout.pieces(ofShard: 0), [])
        assertLayoutInvariants(layout, "3 elements over 10 shards")
    }

    func test_layout_noElements_givesEmptyShards() {
        for counts in [[], [0], [0, 0, 0]] {
            let layout = ShardLayout(tensorElementCounts: counts, shardCount: 4)
            XCTAssertEqual(layout.totalElements, 0)
            for shard in 0..<4 {
                XCTAssertEqual(layout.range(ofShard: shard), 0..<0)
                XCTAssertEqual(layout.pieces(ofShard: shard), [])
            }
        }
    }

    func test_layout_randomTensorListsAndShardCounts_keepEveryInvariant() {
        var state: UInt64 = 2024
        func random(_ bound: Int) -> Int {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return Int((z ^ (z >> 31)) % UInt64(bound))
        }
        for trial in 0..<150 {
            let tensorCount = random(7)
            let counts = (0..<tensorCount).map { _ in random(4) == 0 ? 0 : random(trial % 3 == 0 ? 5 : 60) }
            for shardCount in 1...16 {
                let layout = ShardLayout(tensorElementCounts: counts, shardCount: shardCount)
                assertLayoutInvariants(layout, "counts \(counts), \(shardCount) shards")
            }
        }
    }

    func test_layout_hugeElementCounts_doNotOverflow() {
        let huge = Int.max / 2
        let layout = ShardLayout(tensorElementCounts: [huge, huge], shardCount: 16)
        var next = 0
        for shard in 0..<16 {
            let range = layout.range(ofShard: shard)
            XCTAssertEqual(range.lowerBound, next)
            XCTAssertLessThanOrEqual(abs(range.count - layout.totalElements / 16), 1)
            next = range.upperBound
        }
        XCTAssertEqual(next, layout.totalElements)
        XCTAssertEqual(layout.shard(ofElement: layout.totalElements - 1), 15)
        XCTAssertEqual(layout.shard(ofElement: 0), 0)
        XCTAssertEqual(layout.pieces(ofShard: 8).map(\.tensorIndex), [1])
    }

    func test_layout_fromTensorSpecs_usesTheirElementCounts() {
        let tensors = [
            TensorSpec(name: "fc1.weight", shape: [2, 3], initializer: .zeros),
            TensorSpec(name: "scalar", shape: [], initializer: .constant(1)),
        ]
        XCTAssertEqual(ShardLayout(tensors: tensors, shardCount: 2).tensorElementCounts, [6, 1])
    }

    func test_codable_roundTripsThroughJSON() throws {
        let layout = ShardLayout(tensorElementCounts: [7850, 10, 0, 3], shardCount: 5)
        let json = try JSONEncoder().encode(layout)
        XCTAssertEqual(try JSONDecoder().decode(ShardLayout.self, from: json), layout)
    }

    func test_codable_invalidInputs_throwInsteadOfTrapping() {
        let invalid = [
            #"{"tensorElementCounts":[1,2],"shardCount":0}"#,
            #"{"tensorElementCounts":[1,-2],"shardCount":2}"#,
            #"{"tensorElementCounts":[9223372036854775807,1],"shardCount":2}"#,
            #"{"shardCount":2}"#,
        ]
        for text in invalid {
            XCTAssertThrowsError(try JSONDecoder().decode(ShardLayout.self, from: Data(text.utf8)), text)
        }
    }
}
