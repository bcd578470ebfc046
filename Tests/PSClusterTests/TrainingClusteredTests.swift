import Foundation
import PSCheckpoint
import PSTestSupport
import XCTest

/// Multi-process tests: a real psserver and real psworkers on 127.0.0.1.
final class TrainingClusteredTests: XCTestCase {
    /// BSP with K workers of batch 64/K reproduces the float64 reference trajectory (per-step loss and final
    /// weights) of single-process SGD with batch 64 on the same global data order.
    func bspMatchesReference(workers: Int) throws -> [Float] {
        guard let shared = sharedDirectory() else { throw XCTSkip("shared/reference is not available") }
        let cluster = try LocalCluster()
        try cluster.startServer([
            "--shards", "4", "--workers", "\(workers)", "--model", "softmax", "--data", "digits", "--batch",
            "\(64 / workers)", "--epochs", "10", "--seed", "0", "--optimizer", "sgd", "--lr", "0.1", "--mode", "bsp",
        ])
        for rank in 0..<workers { try cluster.startWorker(name: "w\(rank)", ["--quiet"]) }
        cluster.waitForJob()

        let referenceLosses = try String(
            contentsOfFile: shared + "/reference/sync_ref_softmax_B64_steploss.txt", encoding: .utf8
        ).split(separator: "\n").compactMap { Double($0.trimmingCharacters(in: .whitespaces)) }
        XCTAssertEqual(referenceLosses.count, 210)
        let steps = try cluster.records(type: "step")
        XCTAssertEqual(steps.count, 210, "one step record per step")
        var worstLoss = 0.0
        for record in steps {
            guard let step = record["step"] as? Int, let loss = record["loss"] as? Double, step < 210 else {
                XCTFail("bad step record \(record)")
                continue
            }
            worstLoss = max(worstLoss, abs(loss - referenceLosses[step]))
        }
        XCTAssertLessThan(worstLoss, 1e-5, "largest per-step loss difference")

        let referenceData = try Data(
            contentsOf: URL(fileURLWithPath: shared + "/reference/sync_final_params_softmax_B64.f64"))
        let reference: [Double] = referenceData.withUnsafeBytes { raw in
            (0..<650).map {
                Double(bitPattern: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 8, as: UInt64.self)))
            }
        }
        let weight = try cluster.finalTensor("fc1.weight")
        let bias = try cluster.finalTensor("fc1.bias")
        XCTAssertEqual(weight.shape, [64, 10])
        XCTAssertEqual(bias.shape, [10])
        let final = weight.values + bias.values
        var worstWeight = 0.0
        for i in 0..<650 { worstWeight = max(worstWeight, abs(Double(final[i]) - reference[i])) }
        XCTAssertLessThan(worstWeight, 1e-5, "largest final-weight difference")
        return final
    }

    func test_bsp_oneWorker_matchesReference() throws {
        _ = try bspMatchesReference(workers: 1)
    }

    func test_bsp_twoWorkers_matchesReference_andIsBitwiseRepeatable() throws {
        let first = try bspMatchesReference(workers: 2)
        let second = try bspMatchesReference(workers: 2)
        XCTAssertEqual(first.map(\.bitPattern), second.map(\.bitPattern), "two runs must give identical weights")
    }

    func test_bsp_fourWorkers_matchesReference() throws {
        _ = try bspMatchesReference(workers: 4)
    }

    /// Two workers train softmax on digits to >= 0.90 test accuracy; numpy reads the final weights.
    func test_twoWorkers_digitsSoftmax_reachesAccuracy_andNumpyReadsWeights() throws {
        let cluster = try LocalCluster()
        try cluster.startServer([
            "--shards", "4", "--workers", "2", "--model", "softmax", "--data", "digits", "--batch", "32",
            "--epochs", "10", "--lr", "0.1",
        ])
        try cluster.startWorker(name: "a")
        try cluster.startWorker(name: "b")
        cluster.waitForJob()
        let epochs = try cluster.records(type: "epoch")
        XCTAssertEqual(epochs.count, 10)
        let accuracy = epochs.last?["test_accuracy"] as? Double ?? 0
        XCTAssertGreaterThanOrEqual(accuracy, 0.90)
        let weight = try cluster.finalTensor("fc1.weight")
        if pythonHasNumpy() {
            let script =
                "import numpy; a = numpy.load('\(cluster.checkpointDirectory)/final/fc1.weight.npy'); "
                + "print(a.shape, repr(float(a.sum())))"
            let output = try runPython(["-c", script])
            XCTAssertTrue(output.hasPrefix("(64, 10)"), output)
            let sum = weight.values.reduce(0.0) { $0 + Double($1) }
            let printed = Double(output.split(whereSeparator: \.isWhitespace).last.map(String.init) ?? "") ?? .nan
            XCTAssertEqual(printed, sum, accuracy: 1e-3)
        }
    }

    /// A worker whose data does not match the job is refused with a message saying so.
    func test_workerWithMismatchedData_isRefused() throws {
        let cluster = try LocalCluster()
        try cluster.startServer([
            "--workers", "1", "--model", "softmax", "--data", "digits", "--epochs", "1", "--keep-running",
        ])
        let worker = try cluster.startWorker(name: "odd", ["--data", "synthetic:100,64,10"])
        XCTAssertEqual(worker.wait(timeout: .seconds(60)), 1)
        XCTAssertTrue(worker.standardError.contains("refused"), worker.standardError)
        XCTAssertTrue(worker.standardError.contains("1347"), worker.standardError)
    }
}

/// Whether python3 is installed and can import numpy.
func pythonHasNumpy() -> Bool {
    (try? runPython(["-c", "import numpy; print('ok')"]))?.contains("ok") ?? false
}

/// Runs python3 with `arguments` to completion and returns its output (stdout and stderr).
func runPython(_ arguments: [String]) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["python3"] + arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return String(decoding: data, as: UTF8.self)
}
