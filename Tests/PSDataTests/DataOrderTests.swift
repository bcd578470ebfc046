import Foundation
import PSData
import PSMath
import PSPosix
import XCTest

final class DataOrderTests: XCTestCase {
    /// `shared/reference/splitmix_permutation_check.json` next to the package root (three levels above this file),
    /// or one level further up for a checkout in a worktree directory.
    static let referenceFile: URL? = {
        let root = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        return [root.deletingLastPathComponent(), root.deletingLastPathComponent().deletingLastPathComponent()]
            .map { $0.appendingPathComponent("shared/reference/splitmix_permutation_check.json") }
            .first { FileManager.default.fileExists(atPath: $0.path) }
    }()

    struct Reference: Decodable {
        let n: Int
        let first16: [[Int]]
    }

    func test_permutations_matchTheReferenceFile() throws {
        guard let file = Self.referenceFile else {
            throw XCTSkip("no shared/reference/splitmix_permutation_check.json beside the package root")
        }
        let reference = try JSONDecoder().decode(Reference.self, from: Data(contentsOf: file))
        XCTAssertEqual(reference.n, 1347)
        XCTAssertEqual(reference.first16.count, 3)
        let order = DataOrder(rowCount: reference.n, workerCount: 1, batchPerWorker: 16, seed: 0)
        for (epoch, first16) in reference.first16.enumerated() {
            XCTAssertEqual(Array(order.permutation(epoch: epoch).prefix(16)), first16, "epoch \(epoch)")
            XCTAssertEqual(Array(order.rows(step: epoch * order.stepsPerEpoch, rank: 0)), first16, "epoch \(epoch)")
        }
        let twoWorkers = DataOrder(rowCount: reference.n, workerCount: 2, batchPerWorker: 8, seed: 0)
        XCTAssertEqual(Array(twoWorkers.rows(step: 0, rank: 1)), Array(reference.first16[0][8..<16]))
    }

    func test_rows_followTheReferenceRule_forOneTwoAndFourWorkers() {
        let rowCount = 1347
        let globalBatch = 64
        let seed: UInt64 = 5
        for workerCount in [1, 2, 4] {
            let order = DataOrder(
                rowCount: rowCount, workerCount: workerCount, batchPerWorker: globalBatch / workerCount, seed: seed)
            XCTAssertEqual(order.stepsPerEpoch, 21)
            XCTAssertEqual(order.globalBatch, 64)
            for step in [0, 1, 20, 21, 22, 41, 42, 100, 209] {
                let epoch = step / 21
                let inEpoch = step % 21
                XCTAssertEqual(order.epoch(ofStep: step), epoch)
                XCTAssertEqual(order.stepInEpoch(ofStep: step), inEpoch)
                let permutation = splitmixPermutation(count: rowCount, seed: seed + UInt64(epoch))
                let expected = Array(permutation[(inEpoch * 64)..<((inEpoch + 1) * 64)])
                let concatenated = (0..<workerCount).flatMap { order.rows(step: step, rank: $0) }
                XCTAssertEqual(concatenated, expected, "K=\(workerCount) step \(step)")
                XCTAssertEqual(Array(order.globalRows(step: step)), expected)
            }
        }
    }

    func test_stepsPerEpoch_dropsThePartialBatch() {
        XCTAssertEqual(DataOrder(rowCount: 100, workerCount: 3, batchPerWorker: 10, seed: 0).stepsPerEpoch, 3)
        XCTAssertEqual(DataOrder(rowCount: 29, workerCount: 3, batchPerWorker: 10, seed: 0).stepsPerEpoch, 0)
        let order = DataOrder(rowCount: 100, workerCount: 3, batchPerWorker: 10, seed: 0)
        let epoch0 = Set((0..<3).flatMap { step in (0..<3).flatMap { order.rows(step: step, rank: $0) } })
        XCTAssertEqual(epoch0.count, 90, "no row repeats within an epoch")
    }

    func test_copiesAndThreads_shareOneCorrectOrder() {
        let order = DataOrder(rowCount: 500, workerCount: 2, batchPerWorker: 25, seed: 9)
        let copy = order
        let expected = (0..<60).map { step in Array(order.rows(step: step, rank: step % 2)) }
        let results = LockedValue<[Int: [Int]]>([:])
        DispatchQueue.concurrentPerform(iterations: 4) { thread in
            for step in stride(from: thread, to: 60, by: 4) {
                let rows = Array(copy.rows(step: step, rank: step % 2))
                results.withLock { $0[step] = rows }
            }
        }
        let got = results.withLock { $0 }
        XCTAssertEqual((0..<60).map { got[$0] ?? [] }, expected)
    }
}
