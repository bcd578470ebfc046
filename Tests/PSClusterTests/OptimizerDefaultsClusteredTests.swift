import Foundation
import PSCheckpoint
import PSTestSupport
import XCTest

/// psserver's optimizer flags default to each optimizer's conventional (PyTorch) values.
final class OptimizerDefaultsClusteredTests: XCTestCase {
    func test_adagrad_withoutEpsilon_uses1e10_adamUses1e8() throws {
        for (optimizer, expected) in [("adagrad", 1e-10), ("adam", 1e-8)] {
            let cluster = try LocalCluster()
            try cluster.startServer([
                "--workers", "1", "--model", "softmax", "--epochs", "1", "--batch", "64", "--optimizer", optimizer,
                "--lr", "0.01",
            ])
            try cluster.startWorker(name: "w0", ["--quiet"])
            cluster.waitForJob()
            let loaded = try CheckpointReader.load(directory: cluster.checkpointDirectory + "/final")
            let epsilon = try XCTUnwrap(loaded.manifest.optimizer.hyperParameters["epsilon"], optimizer)
            XCTAssertEqual(Float(epsilon), Float(expected), optimizer)
        }
    }
}
