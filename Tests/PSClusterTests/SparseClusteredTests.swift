import Foundation
import PSCheckpoint
import PSPosix
import PSTestSupport
import XCTest

/// `--model sparse-lr` with real `psserver` and `psworker` processes on 127.0.0.1: the server is SIGKILLed after
/// a checkpoint and restored with `--restore latest`; the workers reconnect, rewind to the checkpoint's step, and
/// the final row-sparse table (with its FTRL state restored) is bitwise that of an uninterrupted run.
final class SparseClusteredTests: XCTestCase {
    /// 40 steps per epoch (4000 rows, global batch 100).
    static let flags = [
        "--shards", "3", "--workers", "2", "--model", "sparse-lr", "--data", "synthetic-sparse:4000,2000,10,5",
        "--batch", "50", "--epochs", "2", "--seed", "3", "--optimizer", "ftrl", "--lr", "1", "--l1", "0.5", "--l2",
        "0.1", "--mode", "bsp", "--worker-timeout", "3", "--checkpoint-every-steps", "20",
    ]

    func test_killedServer_restoredFromLatest_finishesWithTheSameTableBitwise() throws {
        let reference = try LocalCluster()
        try reference.startServer(Self.flags)
        try reference.startWorker(name: "w0", ["--quiet"])
        try reference.startWorker(name: "w1", ["--quiet"])
        reference.waitForJob()

        let cluster = try LocalCluster()
        try cluster.startServer(Self.flags)
        let port = cluster.port
        // The step delay (no effect on the math) keeps the job running long enough to be killed mid-way.
        let workerFlags = ["--debug-step-delay-ms", "40", "--log-level", "info"]
        let w0 = try cluster.startWorker(name: "w0", workerFlags, reconnectTimeout: 60)
        try cluster.startWorker(name: "w1", workerFlags, reconnectTimeout: 60)
        // `latest` is written last, after the checkpoint's files and manifest: once it exists a restore finds it.
        XCTAssertTrue(
            waitUntil(timeout: .seconds(60), poll: .milliseconds(2)) {
                FileManager.default.fileExists(atPath: cluster.checkpointDirectory + "/latest")
            }, "no checkpoint was committed")
        cluster.server?.kill(signal: Signals.kill)
        XCTAssertEqual(cluster.server?.wait(timeout: .seconds(10)), 137)
        XCTAssertFalse(
            FileManager.default.fileExists(atPath: cluster.checkpointDirectory + "/final"),
            "the job must not have finished before the kill")

        try cluster.startServer(Self.flags + ["--port", "\(port)"], restore: true)
        let restored = try XCTUnwrap(
            cluster.server?.waitForLine(matching: "event=restored", in: .standardError, timeout: .seconds(10)))
        cluster.waitForJob()
        XCTAssertTrue(w0.standardError.contains("event=resumed"), w0.standardError)
        XCTAssertTrue(restored.contains("step=20") || restored.contains("step=40") || restored.contains("step=60"))

        let expected = try reference.finalTensor("weight")
        let actual = try cluster.finalTensor("weight")
        XCTAssertEqual(actual.shape, [2000, 1])
        XCTAssertEqual(actual.values.map(\.bitPattern), expected.values.map(\.bitPattern), "weight differs")
        XCTAssertEqual(
            try cluster.finalTensor("bias").values.map(\.bitPattern),
            try reference.finalTensor("bias").values.map(\.bitPattern))
        XCTAssertGreaterThan(expected.values.filter { $0 == 0 }.count, 1000, "FTRL leaves most weights exactly zero")
    }

    /// `psctl status` of a finished row-sparse job prints the table's line: shape, optimizer, rows touched and
    /// one update, push and pull per step (and one pull more for the final evaluation).
    func test_psctlStatus_afterASparseJob_printsTheTableLine() throws {
        let cluster = try LocalCluster()
        try cluster.startServer([
            "--shards", "3", "--workers", "1", "--model", "sparse-lr", "--data", "synthetic-sparse:4000,2000,10,5",
            "--batch", "100", "--epochs", "1", "--optimizer", "adam", "--lr", "0.05", "--mode", "bsp",
            "--keep-running",
        ])
        let worker = try cluster.startWorker(name: "w0", ["--quiet"])
        XCTAssertEqual(worker.wait(timeout: .seconds(120)), 0, worker.standardError)
        let status = try cluster.psctl(["status"])
        XCTAssertEqual(status.code, 0, status.output)
        XCTAssertTrue(
            status.output.contains(
                "TABLE                       ROWS  WIDTH  OPTIMIZER  ROWS TOUCHED    UPDATES     PUSHES      PULLS\n"),
            status.output)
        let line = try XCTUnwrap(status.output.split(separator: "\n").first { $0.hasPrefix("weight ") })
        let columns = line.split(separator: " ").map(String.init)
        XCTAssertEqual(columns.count, 8, String(line))
        XCTAssertEqual(Array(columns[..<4]), ["weight", "2000", "1", "adam"], String(line))
        let touched = try XCTUnwrap(Int(columns[4]), String(line))
        XCTAssertTrue((1...2000).contains(touched), String(line))
        XCTAssertEqual(Array(columns[5...]), ["40", "40", "41"], String(line))
    }

    /// The command line refuses what row-sparse jobs do not support, naming the flag, with exit 64.
    func test_psserver_sparseJobRefusals_areUsageErrors() throws {
        let data = ["--model", "sparse-lr", "--data", "synthetic-sparse:200,100,4", "--port", "0"]
        let cases: [([String], String)] = [
            (["--servers", "2"], "Error: --servers 2: a model with row-sparse tables runs on one server only"),
            (["--optimizer", "momentum"], "Error: --optimizer momentum has no lazy row-sparse form"),
            (["--features", "10"], "Error: --features applies to LIBSVM data"),
            (["--max-model-bytes", "100"], "more than --max-model-bytes 100"),
        ]
        for (flags, expected) in cases {
            let process = try ChildProcess(binary: "psserver", arguments: data + flags, environment: [:])
            let code = process.wait(timeout: .seconds(30))
            XCTAssertEqual(code, 64, "\(flags): \(process.standardError)")
            XCTAssertTrue(process.standardError.contains(expected), "\(flags): \(process.standardError)")
        }
        let dense = try ChildProcess(
            binary: "psserver", arguments: ["--model", "softmax", "--optimizer", "ftrl", "--port", "0"],
            environment: [:])
        XCTAssertEqual(dense.wait(timeout: .seconds(30)), 64)
        XCTAssertTrue(dense.standardError.contains("--optimizer ftrl is for row-sparse models"), dense.standardError)
    }
}
