import Foundation
import PSTestSupport
import XCTest

/// The built-in CNN from the command line: `psserver --model cnn:C1,C2,H` and plain `psworker`s.
final class CNNClusteredTests: XCTestCase {
    /// Two workers train a small cnn on 28x28 synthetic images in BSP; the job finishes, the final tensors have
    /// the im2col shapes and the epoch records carry a test accuracy.
    func test_cnn_twoWorkers_fromTheCommandLine_trains() throws {
        let cluster = try LocalCluster()
        try cluster.startServer([
            "--shards", "3", "--workers", "2", "--model", "cnn:4,6,8", "--data", "synthetic:256,784,4", "--batch",
            "16", "--epochs", "2", "--lr", "0.05",
        ])
        try cluster.startWorker(name: "a", ["--quiet"])
        try cluster.startWorker(name: "b", ["--quiet"])
        cluster.waitForJob()
        XCTAssertEqual(try cluster.records(type: "step").count, 16)
        XCTAssertEqual(try cluster.records(type: "epoch").count, 2)
        XCTAssertEqual(try cluster.finalTensor("conv1.weight").shape, [9, 4])
        XCTAssertEqual(try cluster.finalTensor("conv2.weight").shape, [36, 6])
        XCTAssertEqual(try cluster.finalTensor("fc1.weight").shape, [150, 8])
        XCTAssertEqual(try cluster.finalTensor("fc2.bias").shape, [4])
    }
}
