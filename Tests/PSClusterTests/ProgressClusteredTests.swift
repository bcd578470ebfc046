import Foundation
import PSTestSupport
import XCTest

/// What a new user sees: the worker's epoch line carries the epoch's mean training loss (not the last batch's),
/// a rate and an ETA, and numbers epochs from 1 like the server's log and metrics.
final class ProgressClusteredTests: XCTestCase {
    func test_epochLine_meanLossOfTheEpoch_rateAndETA_epochsFrom1Everywhere() throws {
        let cluster = try LocalCluster()
        try cluster.startServer(["--model", "softmax", "--data", "digits", "--batch", "64", "--epochs", "2"])
        let worker = try cluster.startWorker(name: "w0")
        cluster.waitForJob(timeout: 120)
        let lines = worker.standardError.split(separator: "\n").filter { $0.hasPrefix("epoch ") }
        XCTAssertEqual(lines.count, 2, worker.standardError)
        guard let first = lines.first,
            let stepField = first.split(separator: " ").first(where: { $0.contains("/") && !$0.hasPrefix("1/") }),
            let stepsPerEpoch = Int(stepField.split(separator: "/")[0]),
            let lossRange = first.range(of: "loss "),
            let printed = Double(first[lossRange.upperBound...].prefix { $0 != " " })
        else { return XCTFail(worker.standardError) }
        XCTAssertTrue(first.hasPrefix("epoch 1/2  step \(stepsPerEpoch)/\(2 * stepsPerEpoch)"), String(first))
        XCTAssertTrue(first.contains(" samples/s  ETA "), String(first))
        // One worker: each step record's loss is this worker's batch loss.
        let losses = try cluster.records(type: "step").compactMap { record -> Double? in
            guard let step = record["step"] as? Int, step < stepsPerEpoch else { return nil }
            return record["loss"] as? Double
        }
        XCTAssertEqual(losses.count, stepsPerEpoch)
        let mean = losses.reduce(0, +) / Double(losses.count)
        XCTAssertEqual(printed, mean, accuracy: 6e-5, "the epoch's mean loss, not the last batch's (\(losses.last!))")
        let epochs = try cluster.records(type: "epoch").compactMap { $0["epoch"] as? Int }
        XCTAssertEqual(epochs, [1, 2], "the metrics file numbers epochs like the console")
        XCTAssertTrue(cluster.server?.standardError.contains("event=epoch epoch=1 ") ?? false)
        XCTAssertTrue(cluster.server?.standardError.contains("event=epoch epoch=2 ") ?? false)
    }

    func test_summary_wallTimeExcludesTheWaitForWorkers_whichItReportsAsWaited() throws {
        let cluster = try LocalCluster()
        try cluster.startServer(["--model", "softmax", "--data", "digits", "--batch", "64", "--epochs", "1"])
        Thread.sleep(forTimeInterval: 2)
        let workerStarted = Date()
        try cluster.startWorker(name: "late", ["--quiet"])
        cluster.waitForJob(timeout: 120)
        let sinceWorkerStart = Date().timeIntervalSince(workerStarted)
        let summary = try XCTUnwrap(
            cluster.server?.waitForLine(matching: "event=job-finished", in: .standardError, timeout: .seconds(1)))
        func seconds(_ key: String) -> Double? {
            guard let range = summary.range(of: " \(key)=") else { return nil }
            return Double(summary[range.upperBound...].prefix { $0 != " " })
        }
        XCTAssertGreaterThanOrEqual(seconds("waited_s") ?? 0, 1.9, summary)
        // Counted with the wait, wall_s would be at least 2 s more than the time since the worker started.
        XCTAssertLessThanOrEqual(seconds("wall_s") ?? .infinity, sinceWorkerStart + 0.5, summary)
    }
}
