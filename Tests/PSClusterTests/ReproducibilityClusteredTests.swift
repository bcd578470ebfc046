import Foundation
import PSCheckpoint
import PSTestSupport
import XCTest

/// The server's arithmetic does not depend on its OpenBLAS thread count: the same BSP job gives bitwise the same
/// weights whatever the server's OPENBLAS_NUM_THREADS (the workers keep theirs fixed).
final class ReproducibilityClusteredTests: XCTestCase {
    private func finalWeights(serverThreads: String) throws -> [Float] {
        let cluster = try LocalCluster()
        let server = try ChildProcess(
            binary: "psserver",
            arguments: [
                "--host", "127.0.0.1", "--port", "0", "--checkpoint-dir", cluster.checkpointDirectory, "--shards", "1",
                "--workers", "2", "--model", "mlp:256", "--data", "synthetic:2048,512,10", "--batch", "64",
                "--epochs", "1", "--optimizer", "adam", "--lr", "0.01",
            ],
            environment: ["OPENBLAS_NUM_THREADS": serverThreads])
        cluster.server = server
        let line = try server.waitForLine(matching: "event=listening", in: .standardError, timeout: .seconds(60))
        guard let range = line.range(of: "address=127.0.0.1:"),
            let port = UInt16(line[range.upperBound...].prefix { $0.isNumber })
        else { throw ClusterError("no port in \(line)") }
        cluster.port = port
        for name in ["w0", "w1"] {
            try cluster.startWorker(name: name, ["--quiet"])
            _ = try server.waitForLine(
                matching: "event=worker-joined name=\(name)", in: .standardError, timeout: .seconds(60))
        }
        cluster.waitForJob()
        return try cluster.finalTensor("fc1.weight").values
    }

    func test_bspJob_sameWeights_whateverTheServersBLASThreads() throws {
        let one = try finalWeights(serverThreads: "1")
        let two = try finalWeights(serverThreads: "2")
        XCTAssertEqual(one.count, two.count)
        XCTAssertTrue(one == two, "the server's OPENBLAS_NUM_THREADS changed the weights")
    }
}
