import Foundation
import PSTestSupport
import XCTest

/// The example program (`psexample`, a user's autoencoder through the public worker API) against a real
/// `psserver --model external`.
final class ExampleClusteredTests: XCTestCase {
    /// Two psexample workers train the autoencoder on digits: the job finishes, the server's model is the one the
    /// first worker registered, and the held-out reconstruction loss falls.
    func test_psexample_twoWorkers_trainTheirOwnModel_endToEnd() throws {
        let cluster = try LocalCluster()
        try cluster.startServer([
            "--shards", "2", "--workers", "2", "--model", "external", "--data", "digits", "--batch", "32",
            "--epochs", "5", "--lr", "0.5",
        ])
        for name in ["a", "b"] {
            cluster.workers.append(
                try ChildProcess(
                    binary: "psexample", arguments: ["--server", "127.0.0.1:\(cluster.port)", "--name", name],
                    environment: ["OPENBLAS_NUM_THREADS": "1"]))
        }
        cluster.waitForJob()
        let losses = try cluster.records(type: "epoch").compactMap { $0["test_loss"] as? Double }
        XCTAssertEqual(losses.count, 5, "one evaluation per epoch")
        let first = try XCTUnwrap(losses.first)
        let last = try XCTUnwrap(losses.last)
        XCTAssertLessThan(last, 0.7 * first, "reconstruction loss per epoch: \(losses)")
        XCTAssertEqual(try cluster.finalTensor("encoder.weight").shape, [64, 16])
        XCTAssertEqual(try cluster.finalTensor("decoder.bias").shape, [64])
    }

    /// `psworker` cannot train an external job (it has no model of its own) and says what to run instead.
    func test_psworker_onExternalJob_failsNamingTheReason() throws {
        let cluster = try LocalCluster()
        try cluster.startServer(["--workers", "1", "--model", "external", "--data", "digits", "--epochs", "1"])
        let worker = try cluster.startWorker(name: "plain", ["--quiet"])
        XCTAssertEqual(worker.wait(timeout: .seconds(30)), 1)
        XCTAssertTrue(
            worker.standardError.contains(
                "the job's model is external: run a worker program that brings its own model"),
            worker.standardError)
    }
}
