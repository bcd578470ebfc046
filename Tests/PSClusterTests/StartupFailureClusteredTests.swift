import Foundation
import PSTestSupport
import XCTest

/// Workers that cannot load their data: the job waits for a replacement within --worker-timeout, then goes on
/// without the rank (counting only the samples processed) or, with no worker left, fails with the reason.
final class StartupFailureClusteredTests: XCTestCase {
    /// The value of `key=` in a log line.
    private func field(_ key: String, in line: String) -> String? {
        guard let range = line.range(of: " \(key)=") else { return nil }
        return String(line[range.upperBound...].prefix { $0 != " " })
    }

    func test_oneOfTwoWorkersCannotLoadItsData_jobGoesOnWithout_summaryCountsOnlyProcessedSamples() throws {
        let cluster = try LocalCluster()
        try cluster.startServer([
            "--workers", "2", "--model", "softmax", "--data", "digits", "--batch", "32", "--epochs", "1",
            "--worker-timeout", "2",
        ])
        try cluster.startWorker(name: "good", ["--quiet"])
        let bad = try cluster.startWorker(name: "bad", ["--data", "/nonexistent/train.csv"])
        cluster.workers.removeLast()
        XCTAssertEqual(bad.wait(timeout: .seconds(60)), 1, bad.standardError)
        XCTAssertTrue(bad.standardError.contains("/nonexistent/train.csv"), bad.standardError)
        cluster.waitForJob(timeout: 120)
        guard let server = cluster.server else { return XCTFail("no server") }
        // Usually "bad" reports its failure before it has a rank, and the server gives up on it; on a loaded
        // machine its join can land first, and it then leaves with an error before the first step completes.
        let gaveUp = server.standardError.contains("event=workers-given-up failed=bad joined=1/2")
        let leftAfterJoining =
            server.standardError.contains("event=rank-released name=bad rank=1")
            && server.standardError.contains("event=worker-left rank=1 reason=error")
        XCTAssertTrue(gaveUp || leftAfterJoining, server.standardError)
        let summary = try server.waitForLine(matching: "event=job-finished", in: .standardError, timeout: .seconds(1))
        let steps = Int(field("steps", in: summary) ?? "") ?? 0
        XCTAssertGreaterThan(steps, 0, summary)
        XCTAssertEqual(Int(field("samples", in: summary) ?? ""), steps * 32, "one worker's rows only: \(summary)")
    }

    func test_onlyWorkerCannotLoadItsData_serverExitsNonZeroWithTheReason() throws {
        let cluster = try LocalCluster()
        try cluster.startServer([
            "--workers", "1", "--model", "softmax", "--data", "digits", "--batch", "32", "--epochs", "1",
            "--worker-timeout", "2",
        ])
        let worker = try cluster.startWorker(name: "only", ["--data", "/nonexistent/train.csv"])
        XCTAssertEqual(worker.wait(timeout: .seconds(60)), 1, worker.standardError)
        guard let server = cluster.server else { return XCTFail("no server") }
        XCTAssertEqual(server.wait(timeout: .seconds(60)), 1, server.standardError)
        XCTAssertTrue(server.standardError.contains("event=job-failed"), server.standardError)
        XCTAssertTrue(server.standardError.contains("no worker could start: 'only'"), server.standardError)
    }
}
