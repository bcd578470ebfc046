import Foundation
import PSTraining
import PSWire
import XCTest

final class SparseJobPlannerTests: XCTestCase {
    private func request(_ model: String, _ data: String, features: Int? = nil) -> JobRequest {
        var request = JobRequest()
        request.model = model
        request.data = data
        request.batchPerWorker = 2
        request.epochs = 1
        request.features = features
        return request
    }

    private func planError(_ request: JobRequest) -> String {
        do {
            _ = try JobPlanner.plan(request)
            return "planned"
        } catch {
            return "\(error)"
        }
    }

    func test_plan_libsvmWithFeatures_carriesTheWidthInTheJobsDataSpelling() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("plan-\(UUID().uuidString).svm").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try Data("+1 3:1 7:1\n-1 2:1\n+1 1:0.5\n-1 9:1\n".utf8).write(to: URL(fileURLWithPath: path))
        let plain = try JobPlanner.plan(request("sparse-lr", path))
        XCTAssertEqual(plain.job.featureCount, 9)
        XCTAssertEqual(plain.job.classCount, 2, "-1/+1 labels are two classes")
        XCTAssertEqual(plain.tensors.map(\.name), ["bias"])
        let wide = try JobPlanner.plan(request("sparse-lr", path, features: 1000))
        XCTAssertEqual(wide.job.featureCount, 1000)
        XCTAssertEqual(wide.job.data, "libsvm:\(path),1000")
        let mlp = try JobPlanner.plan(request("sparse-mlp:4,8", path))
        XCTAssertEqual(mlp.tensors.map(\.name), ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"])
    }

    func test_plan_hashFeatures_tableHasDRows_whateverTheIds_andTheJobCarriesIt() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("plan-\(UUID().uuidString).svm").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try Data("+1 3:1 4294967296:1\n-1 2147483649:1\n+1 1:0.5\n-1 4000000000:1\n".utf8)
            .write(to: URL(fileURLWithPath: path))
        var hashed = request("sparse-lr", path)
        hashed.hashFeatures = 4096
        let planned = try JobPlanner.plan(hashed)
        XCTAssertEqual(planned.job.featureCount, 4096)
        XCTAssertEqual(planned.job.hashFeatures, 4096)
        XCTAssertEqual(planned.job.data, path, "the data spelling is unchanged; hashFeatures travels apart")
        XCTAssertEqual(SparseModels.model(for: planned.job)?.table.rows, 4096)
        let json = String(decoding: try JSONEncoder().encode(planned.job), as: UTF8.self)
        XCTAssertTrue(json.contains("\"hashFeatures\":4096"), json)
        let plain = try JobPlanner.plan(request("sparse-lr", path))
        XCTAssertEqual(plain.job.featureCount, 4_294_967_296)
        XCTAssertFalse(
            String(decoding: try JSONEncoder().encode(plain.job), as: UTF8.self).contains("hashFeatures"),
            "an unhashed job's welcome is unchanged")
        var mismatched = planned.job
        mismatched.featureCount = 100
        XCTAssertThrowsError(try mismatched.validate()) { error in
            XCTAssertTrue("\(error)".contains("job.hashFeatures"), "\(error)")
        }
    }

    func test_plan_hashFeaturesRefusals_nameTheFlag() {
        func hashed(_ model: String, _ data: String, _ rows: Int, features: Int? = nil) -> String {
            var request = request(model, data, features: features)
            request.hashFeatures = rows
            return planError(request)
        }
        XCTAssertEqual(
            hashed("softmax", "digits", 64),
            "--hash-features is for the row-sparse models (--model sparse-lr or sparse-mlp:E,H)")
        XCTAssertEqual(
            hashed("sparse-lr", "libsvm:x.svm", 64, features: 10),
            "--hash-features D sets the table's rows; it cannot be combined with --features")
        XCTAssertEqual(
            hashed("sparse-lr", "libsvm:x.svm,10", 64),
            "--hash-features D sets the table's rows; drop the feature count 10 from --data libsvm:x.svm,10")
        for rows in [0, -1, (1 << 31) + 1] {
            XCTAssertEqual(
                hashed("sparse-lr", "synthetic-sparse:100,50,3", rows),
                "--hash-features must be between 1 and 2^31, got \(rows)")
        }
        XCTAssertEqual(hashed("sparse-lr", "synthetic-sparse:100,50,3", 1 << 31), "planned")
    }

    func test_plan_refusals_nameTheFlag() {
        XCTAssertEqual(
            planError(request("sparse-lr", "synthetic-sparse:100,50,3", features: 10)),
            "--features applies to LIBSVM data; synthetic-sparse:ROWS,FEATURES,NNZ names its own")
        XCTAssertEqual(
            planError(request("softmax", "digits", features: 10)),
            "--features is for the row-sparse models (a dense model reads libsvm:PATH,FEATURES)")
        XCTAssertTrue(planError(request("sparse-lr", "digits")).hasPrefix("--data: digits: a sparse model reads"))
        XCTAssertEqual(
            planError(request("sparse-mlp:0,4", "synthetic-sparse:100,50,3")),
            "--model sparse-mlp:0,4: expected sparse-lr or sparse-mlp:E,H (E and H between 1 and 4096)")
        XCTAssertTrue(
            planError(request("softmax", "synthetic-sparse:100,50,3")).contains("--model sparse-lr or sparse-mlp:E,H"))
        var compressed = request("sparse-lr", "synthetic-sparse:100,50,3")
        compressed.compression = .fp16
        XCTAssertEqual(
            planError(compressed),
            "--compression is for dense models' exchanges; sparse-lr moves only the rows a batch touches, uncompressed")
    }
}
