import PSData
import XCTest

@testable import PSTraining

/// The worker's producer thread (issue 12 item 4): the batches it hands out are exactly the inline ones, in
/// order and after a jump (a rejoin), and it stops cleanly.
final class BatchPrefetcherTests: XCTestCase {
    private let data: Dataset = {
        let rows = 50
        let features = (0..<(rows * 3)).map { Float($0) }
        let labels = (0..<rows).map { Float($0 % 4) }
        return Dataset(name: "test", featureCount: 3, features: features, labels: labels, classCount: 4)
    }()

    private func inline(_ order: DataOrder, step: Int, rank: Int, rows: Int) -> ([Float], [Float]) {
        var features = [Float](repeating: 0, count: rows * 3)
        var labels = [Float](repeating: 0, count: rows)
        features.withUnsafeMutableBufferPointer { f in
            labels.withUnsafeMutableBufferPointer { l in
                data.gather(rows: order.rows(step: step, rank: rank), into: f, labels: l)
            }
        }
        return (features, labels)
    }

    func test_batches_areTheInlineOnes_inOrderAndAfterAJump() {
        let order = DataOrder(rowCount: 50, workerCount: 2, batchPerWorker: 4, seed: 9)
        let prefetcher = BatchPrefetcher(data: data, order: order, rowsPerBatch: 4)
        defer { prefetcher.stop() }
        // Steps in order, then a rejoin that moves rank 1 back to step 3 as rank 0, then on again.
        let visits = [(0, 1), (1, 1), (2, 1), (3, 1), (4, 1), (3, 0), (4, 0), (5, 0), (40, 0), (41, 0)]
        for (step, rank) in visits {
            let batch = prefetcher.batch(step: step, rank: rank)
            let expected = inline(order, step: step, rank: rank, rows: 4)
            XCTAssertEqual(batch.step, step)
            XCTAssertEqual(batch.rank, rank)
            XCTAssertEqual(batch.features, expected.0, "step \(step) rank \(rank)")
            XCTAssertEqual(batch.labels, expected.1, "step \(step) rank \(rank)")
        }
    }

    func test_stop_endsTheProducer_andIsIdempotent() {
        let order = DataOrder(rowCount: 50, workerCount: 1, batchPerWorker: 5, seed: 1)
        let prefetcher = BatchPrefetcher(data: data, order: order, rowsPerBatch: 5)
        _ = prefetcher.batch(step: 0, rank: 0)
        let started = Date()
        prefetcher.stop()
        prefetcher.stop()
        XCTAssertLessThan(Date().timeIntervalSince(started), 5, "the producer ends at once")
    }
}
