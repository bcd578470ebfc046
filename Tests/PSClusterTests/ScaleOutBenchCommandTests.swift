import Foundation
import PSTestSupport
import XCTest

/// `psbench scaleout` is a benchmark, not a test: this only smoke-runs its loopback rows on a 1 MiB model (2 workers,
/// 2 steps) to check that the table comes out; the shaped rows need root and minutes (see the README).
final class ScaleOutBenchCommandTests: XCTestCase {
    func test_scaleout_loopbackOnly_printsTheTable() throws {
        let bench = try ChildProcess(
            binary: "psbench",
            arguments: [
                "scaleout", "--loopback-only", "--model-mib", "1", "--workers", "2", "--steps", "2", "--timeout", "120",
            ])
        XCTAssertEqual(bench.wait(timeout: .seconds(180)), 0, bench.standardError)
        let lines = bench.standardOutput.split(separator: "\n")
        XCTAssertTrue(bench.standardOutput.contains("loopback, no shaping"), bench.standardOutput)
        XCTAssertTrue(bench.standardOutput.contains("mlp:4096 on synthetic:48,61,2"), bench.standardOutput)
        XCTAssertEqual(lines.filter { $0.hasPrefix("| 1 | ") || $0.hasPrefix("| 2 | ") }.count, 2, bench.standardOutput)
    }

    func test_scaleout_badRate_isAUsageError() throws {
        let bench = try ChildProcess(binary: "psbench", arguments: ["scaleout", "--rate", "fast"])
        XCTAssertNotEqual(bench.wait(timeout: .seconds(60)), 0)
        XCTAssertTrue(bench.standardError.contains("--rate must be a tc rate"), bench.standardError)
    }
}
