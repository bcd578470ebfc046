import Foundation
import PSTestSupport
import XCTest

/// A job whose test set has a label outside the training classes: the worker refuses the test set with a data
/// error naming the file and line (it trains on without evaluation) instead of trapping in the model's label check.
final class BadTestSetClusteredTests: XCTestCase {
    func test_testLabelOutOfRange_isADataErrorNamingTheFile_andTheJobFinishes() throws {
        let cluster = try LocalCluster()
        // 40 rows, 2 features, classes 0...9; the test set has a 12.
        let train = (0..<40).map { "\($0 % 10),\(Double($0) / 40),\(Double($0 % 7) / 7)" }.joined(separator: "\n")
        let trainPath = cluster.directory.path + "/small.csv"
        let testPath = cluster.directory.path + "/small_eval.csv"
        try (train + "\n").write(toFile: trainPath, atomically: true, encoding: .utf8)
        try "3,0.5,0.5\n12,0.25,0.75\n".write(toFile: testPath, atomically: true, encoding: .utf8)
        // The server refuses such a --test at start-up (CommandLineTests); a worker's own --test is its to check.
        try cluster.startServer(["--model", "softmax", "--data", trainPath, "--batch", "4", "--epochs", "1"])
        let worker = try cluster.startWorker(name: "w0", ["--test", testPath])
        cluster.waitForJob(timeout: 60)
        XCTAssertTrue(worker.standardError.contains("no-test-set"), worker.standardError)
        XCTAssertTrue(
            worker.standardError.contains(
                "\(testPath): line 2: label 12 is not a class index below the class count 10"),
            worker.standardError)
    }
}
