import Foundation
import PSTestSupport
import XCTest

/// Two workers started with the same `--name`: the second is refused with a message naming the conflict while
/// the first is alive, instead of the two stealing the rank from each other.
final class DuplicateNameClusteredTests: XCTestCase {
    func test_secondWorkerWithTheSameName_isRefused_andTheFirstKeepsItsRank() throws {
        let cluster = try LocalCluster()
        try cluster.startServer(["--workers", "2", "--model", "softmax", "--epochs", "1", "--batch", "32"])
        let first = try cluster.startWorker(name: "dup", ["--quiet"])
        _ = try cluster.server?.waitForLine(
            matching: "event=worker-joined name=dup rank=0", in: .standardError, timeout: .seconds(60))
        let second = try cluster.startWorker(name: "dup", ["--quiet"])
        XCTAssertEqual(second.wait(timeout: .seconds(60)), 1, second.standardError)
        XCTAssertTrue(second.standardError.contains("a worker named 'dup' is already connected"), second.standardError)
        XCTAssertTrue(first.isRunning, first.standardError)
        XCTAssertFalse(
            cluster.server?.standardError.contains("event=replaced-connection") ?? true,
            "the live worker's connection was taken over")
        // The job still completes with a correctly named second worker.
        try cluster.startWorker(name: "other", ["--quiet"])
        cluster.workers.remove(at: 1)
        cluster.waitForJob()
    }
}
