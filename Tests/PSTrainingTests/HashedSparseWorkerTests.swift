import Foundation
import PSData
import PSLog
import PSMath
import PSModel
import PSPosix
import PSServer
import PSTraining
import PSWire
import XCTest

/// `--hash-features D` end to end: sparse-lr on a LIBSVM file whose indices exceed 2^31 (a table of one row per id
/// would be refused), hashed into 4096 rows, trains with two BSP workers against an in-process server, bitwise
/// reproducibly and well above chance.
final class HashedSparseWorkerTests: XCTestCase {
    static let hashRows = 4096

    /// Writes the train and test splits of `synthetic-sparse:4000,1000,10,5` as LIBSVM files whose 0-based feature
    /// id `f` becomes index `2^31 + 2000003 f + 1` (so indices run from 2^31 + 1 to about 4.1e9, order kept).
    private func writeWideFiles() throws -> (train: String, test: String) {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("hashed-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: directory) }
        let (train, test) = try SparseDataSource(parsing: "synthetic-sparse:4000,1000,10,5").loadSplits()
        func write(_ data: SparseDataset, _ name: String) throws -> String {
            var text = ""
            for row in 0..<data.rowCount {
                text += data.labels[row] == 1 ? "+1" : "-1"
                for id in data.row(row).ids {
                    text += " \((1 << 31) + 2_000_003 * Int(id) + 1):1"
                }
                text += "\n"
            }
            let path = directory.appendingPathComponent(name).path
            try Data(text.utf8).write(to: URL(fileURLWithPath: path))
            return path
        }
        return (try write(train, "wide-train.svm"), try write(try XCTUnwrap(test), "wide-test.svm"))
    }

    private func run(data: String, hashFeatures: Int) throws -> (table: [Float], dense: [Float]) {
        Signals.ignoreSIGPIPE()
        var request = JobRequest()
        request.model = "sparse-lr"
        request.data = data
        request.workers = 2
        request.batchPerWorker = 50
        request.epochs = 2
        request.hashFeatures = hashFeatures
        let planned = try JobPlanner.plan(request)
        let model = try XCTUnwrap(SparseModels.model(for: planned.job))
        XCTAssertEqual(model.table.rows, hashFeatures)
        return try runSparseJob(planned, model: model, optimizer: OptimizerConfig(kind: .adagrad, learningRate: 0.3))
    }

    func test_bspTwoWorkers_idsAbove2Pow31_hashedInto4096Rows_reproducibleAndAccurate() throws {
        let files = try writeWideFiles()
        let unhashed = try SparseDataSource(parsing: files.train).loadTrain()
        XCTAssertGreaterThan(unhashed.featureCount, 4_000_000_000, "one row per id would be a 4e9-row table")
        let first = try run(data: files.train, hashFeatures: Self.hashRows)
        let second = try run(data: files.train, hashFeatures: Self.hashRows)
        XCTAssertEqual(first.table.count, Self.hashRows)
        XCTAssertEqual(first.table, second.table, "bitwise reproducible")
        XCTAssertEqual(first.dense, second.dense)

        let test = try SparseDataSource(parsing: files.test).loadTrain(hashFeatures: Self.hashRows)
        let model = SparseLogisticRegression(featureCount: Self.hashRows, classCount: 2)
        let examples = SparseExamples(
            rowStarts: test.rowStarts, featureIds: test.featureIds, values: test.values, labels: test.labels)
        let evaluation = model.evaluate(
            examples, touched: (0..<UInt64(Self.hashRows)).map { $0 }, rows: first.table, bias: first.dense)
        let majority = max(test.labels.filter { $0 == 1 }.count, test.labels.filter { $0 == 0 }.count)
        let chance = Double(majority) / Double(test.rowCount)
        print("sparse-lr hashed into \(Self.hashRows) rows: test accuracy \(evaluation.accuracy!), majority \(chance)")
        XCTAssertGreaterThan(evaluation.accuracy!, 0.8)
        XCTAssertGreaterThan(evaluation.accuracy!, chance + 0.1, "well above always answering the majority class")
    }
}
