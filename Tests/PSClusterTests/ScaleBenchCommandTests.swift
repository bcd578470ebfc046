import Foundation
import PSTestSupport
import XCTest

/// `psbench scale` is a benchmark, not a test: this only smoke-runs its smallest form (digits, 1 and 2 workers,
/// one epoch each) to check that the table and the SVG come out.
final class ScaleBenchCommandTests: XCTestCase {
    func test_scale_quick_printsTheTableAndWritesTheSVG() throws {
        let directory = try TemporaryDirectory(prefix: "swiftps-scale")
        defer { directory.remove() }
        let output = directory.path + "/scale.svg"
        let bench = try ChildProcess(
            binary: "psbench", arguments: ["scale", "--quick", "--data", "digits", "--workers", "1,2", "-o", output])
        XCTAssertEqual(bench.wait(timeout: .seconds(120)), 0, bench.standardError)
        let lines = bench.standardOutput.split(separator: "\n")
        XCTAssertEqual(
            lines.filter { $0.hasPrefix("| bsp | ") || $0.hasPrefix("| async | ") }.count, 4, bench.standardOutput)
        XCTAssertTrue(bench.standardOutput.contains("bsp: fitted serial fraction"), bench.standardOutput)
        let svg = try String(contentsOfFile: output, encoding: .utf8)
        for id in ["ideal", "measured-bsp", "amdahl-bsp", "measured-async", "amdahl-async"] {
            XCTAssertTrue(svg.contains("id=\"\(id)\""), id)
        }
    }
}
