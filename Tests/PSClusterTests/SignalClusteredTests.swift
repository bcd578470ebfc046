import Foundation
import PSCheckpoint
import PSPosix
import PSTestSupport
import XCTest

/// SIGTERM and SIGINT stop psserver cleanly (exit 0, a `stopping` line) whichever of its threads the kernel
/// delivers them to; a server running a job checkpoints at the next step boundary first.
final class SignalClusteredTests: XCTestCase {
    func test_plainStore_SIGTERMandSIGINT_exit0_withAStoppingLine() throws {
        for (signal, name) in [(SIGTERM, "SIGTERM"), (SIGINT, "SIGINT")] {
            // Default OpenBLAS threading: its threads start before main and do not inherit main's signal mask.
            let server = try ChildProcess(binary: "psserver", arguments: ["--host", "127.0.0.1", "--port", "0"])
            _ = try server.waitForLine(matching: "event=listening", in: .standardError, timeout: .seconds(60))
            server.kill(signal: signal)
            XCTAssertEqual(server.wait(timeout: .seconds(30)), 0, "\(name): \(server.standardError)")
            XCTAssertTrue(server.standardError.contains("event=stopping reason=\(name)"), server.standardError)
        }
    }

    func test_bspJob_SIGTERM_checkpointsAtTheNextStep_thenExits0() throws {
        let cluster = try LocalCluster()
        try cluster.startServer([
            "--workers", "2", "--model", "mlp:16", "--data", "digits", "--batch", "16", "--epochs", "5",
            "--mode", "bsp", "--stop-timeout", "20",
        ])
        for name in ["w0", "w1"] {
            try cluster.startWorker(name: name, ["--quiet", "--debug-step-delay-ms", "20"], reconnectTimeout: 2)
        }
        XCTAssertTrue(
            try waitUntil(timeout: .seconds(60)) {
                (try serverStatus(port: cluster.port)["completed_steps"] as? Int ?? 0) >= 3
            })
        guard let server = cluster.server else { return XCTFail("no server") }
        server.kill(signal: SIGTERM)
        XCTAssertEqual(server.wait(timeout: .seconds(60)), 0, server.standardError)
        let line = try server.waitForLine(matching: "event=stop-checkpoint ", in: .standardError, timeout: .seconds(1))
        XCTAssertTrue(server.standardError.contains("event=stopping reason=SIGTERM"), server.standardError)
        guard let range = line.range(of: "path="), let stepRange = line.range(of: "step=") else {
            return XCTFail(line)
        }
        let path = String(line[range.upperBound...].prefix { $0 != " " })
        let step = UInt64(line[stepRange.upperBound...].prefix { $0.isNumber })
        let loaded = try CheckpointReader.load(directory: path)
        XCTAssertEqual(loaded.manifest.step, step)
        XCTAssertGreaterThanOrEqual(step ?? 0, 3)
    }
}
