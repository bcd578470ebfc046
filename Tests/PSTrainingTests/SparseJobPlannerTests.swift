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
