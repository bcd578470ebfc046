import Foundation
import PSTestSupport
import XCTest

#if canImport(FoundationXML)
    import FoundationXML
#endif

/// `psctl plot` on the metrics files of two real runs (BSP and async), and on a file with a bad line.
final class PlotCommandTests: XCTestCase {
    func test_plot_bspAgainstAsync_writesOneSVGWithBothRuns() throws {
        let directory = try TemporaryDirectory(prefix: "swiftps-plot")
        defer { directory.remove() }
        var files: [String] = []
        for mode in ["bsp", "async"] {
            let cluster = try LocalCluster()
            try cluster.startServer([
                "--shards", "2", "--workers", "2", "--model", "softmax", "--data", "digits", "--batch", "32",
                "--epochs", "3", "--mode", mode,
            ])
            for rank in 0..<2 { try cluster.startWorker(name: "w\(rank)", ["--quiet"]) }
            cluster.waitForJob()
            let file = directory.path + "/\(mode).jsonl"
            try FileManager.default.copyItem(atPath: cluster.metricsPath, toPath: file)
            files.append(file)
        }
        let output = directory.path + "/runs.svg"
        let plot = try ChildProcess(binary: "psctl", arguments: ["plot"] + files + ["-o", output])
        XCTAssertEqual(plot.wait(timeout: .seconds(30)), 0, plot.standardError)
        XCTAssertTrue(plot.standardOutput.hasPrefix("wrote \(output): 2 runs"), plot.standardOutput)
        let svg = try String(contentsOfFile: output, encoding: .utf8)
        let parser = XMLParser(data: Data(svg.utf8))
        XCTAssertTrue(parser.parse(), "the SVG is well-formed XML")
        for run in 0..<2 {
            for series in ["loss-raw", "loss-smoothed", "accuracy"] {
                XCTAssertEqual(
                    svg.components(separatedBy: "id=\"run\(run)-\(series)\"").count, 2, "run\(run)-\(series)")
            }
        }
        XCTAssertTrue(svg.contains("bsp · 2 workers · softmax"), "legend names the BSP run")
        XCTAssertTrue(svg.contains("async · 2 workers · softmax"), "legend names the async run")
    }

    func test_plot_badLine_failsNamingTheLine() throws {
        let directory = try TemporaryDirectory(prefix: "swiftps-plot")
        defer { directory.remove() }
        let file = directory.path + "/bad.jsonl"
        try "{\"type\":\"step\",\"step\":0,\"loss\":2.3}\n{\"type\":\"step\",\"step\":1,\"loss\":\n".write(
            toFile: file, atomically: true, encoding: .utf8)
        let plot = try ChildProcess(binary: "psctl", arguments: ["plot", file, "-o", directory.path + "/x.svg"])
        XCTAssertEqual(plot.wait(timeout: .seconds(30)), 1)
        XCTAssertTrue(plot.standardError.contains("\(file):2: not a JSON object"), plot.standardError)
        XCTAssertFalse(FileManager.default.fileExists(atPath: directory.path + "/x.svg"))
    }
}
