import Foundation
import PSTestSupport
import XCTest

/// Issue 15 item 11: in async and SSP the job's accuracy is that of its final weights, evaluated by the worker
/// that finishes last, not the first report of the last epoch (made while other workers still pushed).
final class FinalEvaluationClusteredTests: XCTestCase {
    func test_async_jobAccuracyIsTheFinalWeights_andEpochRecordsNameTheirWeights() throws {
        let cluster = try LocalCluster()
        try cluster.startServer([
            "--workers", "2", "--model", "mlp:16", "--data", "digits", "--batch", "16", "--epochs", "3", "--mode",
            "async",
        ])
        for name in ["a", "b"] { try cluster.startWorker(name: name, ["--quiet"]) }
        cluster.waitForJob()
        let log = cluster.server?.standardError ?? ""
        let final = try XCTUnwrap(
            log.split(separator: "\n").first { $0.contains("event=final-evaluation") }, log)
        let finished = try XCTUnwrap(log.split(separator: "\n").first { $0.contains("event=job-finished") }, log)
        let accuracy = try XCTUnwrap(final.split(separator: " ").first { $0.hasPrefix("test_accuracy=") })
        XCTAssertTrue(finished.contains(String(accuracy)), "\(finished) reports \(accuracy)")
        let epochs = try cluster.records(type: "epoch")
        XCTAssertEqual(epochs.count, 3)
        for record in epochs {
            XCTAssertNotNil(record["weights_at_step"], "\(record)")
            XCTAssertNotNil(record["min_clock"], "\(record)")
            XCTAssertNotNil(record["max_clock"], "\(record)")
        }
    }
}
