import Foundation
import PSTestSupport
import XCTest

/// `psctl shutdown` mid-job: the server checkpoints at the next step boundary and exits 0, its workers keep
/// retrying, and a server restarted with `--restore latest` continues the job; `--no-checkpoint` stops at once.
final class ShutdownClusteredTests: XCTestCase {
    static let flags = [
        "--workers", "2", "--model", "mlp:16", "--data", "digits", "--batch", "16", "--epochs", "8", "--mode", "bsp",
        "--stop-timeout", "20", "--worker-timeout", "5",
    ]

    private func startJob(_ cluster: LocalCluster) throws {
        try cluster.startServer(Self.flags)
        for name in ["w0", "w1"] {
            try cluster.startWorker(name: name, ["--quiet", "--debug-step-delay-ms", "20"], reconnectTimeout: 60)
        }
        XCTAssertTrue(
            try waitUntil(timeout: .seconds(60)) {
                (try serverStatus(port: cluster.port)["completed_steps"] as? Int ?? 0) >= 3
            })
    }

    func test_psctlShutdown_midJob_checkpointsThenExits0_andARestoredServerContinues() throws {
        let cluster = try LocalCluster()
        try startJob(cluster)
        let port = cluster.port
        let shutdown = try cluster.psctl(["shutdown"])
        XCTAssertEqual(shutdown.code, 0, shutdown.output)
        guard let server = cluster.server else { return XCTFail("no server") }
        XCTAssertEqual(server.wait(timeout: .seconds(60)), 0, server.standardError)
        let line = try server.waitForLine(matching: "event=stop-checkpoint ", in: .standardError, timeout: .seconds(1))
        guard let stepRange = line.range(of: "step="),
            let step = Int(line[stepRange.upperBound...].prefix(while: \.isNumber))
        else { return XCTFail(line) }
        XCTAssertGreaterThanOrEqual(step, 3)
        XCTAssertTrue(
            server.standardError.contains("event=stopping reason=\"shutdown requested\""), server.standardError)

        // The workers are still retrying: the restarted server takes them back at the checkpoint's step.
        try cluster.startServer(Self.flags + ["--port", "\(port)"], restore: true)
        let restored = try XCTUnwrap(
            cluster.server?.waitForLine(matching: "event=restored", in: .standardError, timeout: .seconds(10)))
        XCTAssertTrue(restored.contains("step=\(step)"), restored)
        cluster.waitForJob()
        for worker in cluster.workers {
            XCTAssertTrue(worker.standardError.contains("event=resumed"), worker.standardError)
        }
    }

    func test_psctlShutdown_noCheckpoint_stopsAtOnce() throws {
        let cluster = try LocalCluster()
        try startJob(cluster)
        let shutdown = try cluster.psctl(["shutdown", "--no-checkpoint"])
        XCTAssertEqual(shutdown.code, 0, shutdown.output)
        XCTAssertTrue(shutdown.output.contains("no checkpoint"), shutdown.output)
        guard let server = cluster.server else { return XCTFail("no server") }
        XCTAssertEqual(server.wait(timeout: .seconds(30)), 0, server.standardError)
        XCTAssertFalse(server.standardError.contains("stop-checkpoint"), server.standardError)
        XCTAssertTrue(
            server.standardError.contains("reason=\"shutdown requested (no checkpoint)\""), server.standardError)
    }
}
