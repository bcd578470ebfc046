import Foundation
import PSTestSupport
import XCTest

/// `psbench train` is a benchmark, not a test: this smoke-runs its quick form (two rounds) on a small synthetic data
/// set to check that every row comes out, and that the jobs' sampled CPU time per step is a plausible share of the
/// machine.
final class TrainBenchCommandTests: XCTestCase {
    func test_train_quick_printsTheEpochRawLoopAndSampledCPURows() throws {
        // 12,800 rows of 784 features: 100 steps per epoch, enough for the CPU sampler's window.
        let bench = try ChildProcess(
            binary: "psbench", arguments: ["train", "--quick", "--repeat", "2", "--data", "synthetic:12800,784,10"])
        XCTAssertEqual(bench.wait(timeout: .seconds(300)), 0, bench.standardError)
        let rows = bench.standardOutput.split(separator: "\n").filter { $0.hasPrefix("| ") }
        func row(_ prefix: String) -> (value: Double, ratio: Double)? {
            guard let line = rows.first(where: { $0.hasPrefix("| \(prefix)") }) else { return nil }
            let cells = line.split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) }
            guard cells.count >= 4, let value = Double(cells[1].prefix { $0.isNumber || $0 == "." }),
                let ratio = Double(cells[3].dropLast())
            else { return nil }
            return (value, ratio)
        }
        XCTAssertNotNil(row("mlp:128 epoch ratio 2 workers x 64 / 1 worker x 128"), bench.standardOutput)
        // Two rounds: the ratio row is their median and lists each round's ratio, ours and the raw loop's.
        XCTAssertTrue(
            rows.contains { $0.hasPrefix("| mlp:128 epoch ratio") && $0.contains("median of 2 round(s): ours ") },
            bench.standardOutput)
        XCTAssertNotNil(row("raw BSP loop, 2 clients x 64: CPU time per step"), bench.standardOutput)
        // The raw loop with the server's check and SGD apply ran both shapes in both rounds (a client whose server
        // thread refused its gradient, or a barrier that never released, would have failed the run).
        let working = try XCTUnwrap(
            row("mlp:128 epoch ratio, raw BSP loop with the server's check and SGD apply"), bench.standardOutput)
        XCTAssertGreaterThan(working.value, 0)
        XCTAssertTrue(
            rows.contains { $0.contains("with the server's check and SGD apply") && $0.contains("rounds: ") },
            bench.standardOutput)
        for job in ["2 workers x 64", "1 worker x 128"] {
            // The job's CPU per step against its cores' capacity: above zero, and not beyond the machine (a little
            // slack for the 50 ms sampling).
            let total = try XCTUnwrap(row("mlp:128 job, \(job): CPU time per step"), bench.standardOutput)
            XCTAssertGreaterThan(total.value, 0, job)
            XCTAssertGreaterThan(total.ratio, 0, job)
            XCTAssertLessThanOrEqual(total.ratio, 1.2, job)
            let server = try XCTUnwrap(row("mlp:128 job, \(job): server CPU time per step"), bench.standardOutput)
            XCTAssertGreaterThan(server.ratio, 0, job)
            XCTAssertLessThan(server.ratio, 1, "\(job): the workers spend CPU too")
        }
    }
}
