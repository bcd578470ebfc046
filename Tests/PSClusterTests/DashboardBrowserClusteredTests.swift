import Foundation
import PSTestSupport
import XCTest

/// The dashboard in a real browser: headless Chromium (Debian's `chromium`) loads `/` of a running job; the
/// rendered DOM has a loss curve with as many points as the steps so far and a row for every worker. It saves a
/// screenshot (`.build/dashboard.png`; with `PS_UPDATE_SCREENSHOT=1` also `docs/dashboard.png`).
final class DashboardBrowserClusteredTests: XCTestCase {
    static var chromium: String? {
        ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"].first {
            FileManager.default.isExecutableFile(atPath: $0)
        }
    }

    func test_dashboard_inHeadlessChromium_drawsEveryStepAndEveryWorker() throws {
        guard let chromium = Self.chromium else {
            throw XCTSkip("Chromium is not installed (apt-get install chromium); the dashboard browser test skips")
        }
        let cluster = try LocalCluster()
        try cluster.startServer([
            "--shards", "2", "--workers", "3", "--model", "mlp:32", "--data", "digits", "--batch", "16",
            "--epochs", "200", "--mode", "ssp", "--staleness", "3", "--metrics-port", "0",
        ])
        let port = try cluster.metricsPort()
        for rank in 0..<3 { try cluster.startWorker(name: "worker-\(rank)", ["--quiet"]) }
        XCTAssertTrue(
            waitUntil(timeout: .seconds(60)) { (try? Self.stepCount(port: port)) ?? 0 > 50 }
                && waitUntil(timeout: .seconds(60)) {
                    let text = try? HTTPProbe.get(port: port, path: "/metrics").body
                    return HTTPProbe.value(of: "swiftps_epoch", in: text ?? "") ?? 0 >= 1
                }, "training runs for an epoch")

        let before = try Self.stepCount(port: port)
        let dom = try Self.runChromium(chromium, ["--dump-dom", "http://127.0.0.1:\(port)/"])
        let after = try Self.stepCount(port: port)

        let points = try XCTUnwrap(Self.attribute("data-points", ofElementWithID: "loss-raw", in: dom), dom)
        XCTAssertTrue(
            before <= points && points <= after, "loss curve has \(points) points; steps \(before)...\(after)")
        XCTAssertGreaterThan(points, 50)
        XCTAssertNotNil(Self.attribute("data-points", ofElementWithID: "loss-smoothed", in: dom))
        let accuracy = try XCTUnwrap(Self.attribute("data-points", ofElementWithID: "accuracy", in: dom))
        XCTAssertGreaterThanOrEqual(accuracy, 1)
        for rank in 0..<3 { XCTAssertTrue(dom.contains("data-worker=\"worker-\(rank)\""), "row for worker-\(rank)") }
        XCTAssertTrue(dom.contains("class=\"badge running\">running<"), "the phase badge says running")
        XCTAssertTrue(dom.contains("data-shard=\"1\""), "a row per shard")

        let screenshot = TestPaths.packageRoot.appendingPathComponent(".build/dashboard.png").path
        _ = try Self.runChromium(
            chromium,
            ["--hide-scrollbars", "--window-size=1280,900", "--screenshot=\(screenshot)", "http://127.0.0.1:\(port)/"])
        XCTAssertTrue(FileManager.default.fileExists(atPath: screenshot), "screenshot saved")
        if ProcessInfo.processInfo.environment["PS_UPDATE_SCREENSHOT"] == "1" {
            let docs = TestPaths.packageRoot.appendingPathComponent("docs/dashboard.png").path
            try? FileManager.default.removeItem(atPath: docs)
            try FileManager.default.copyItem(atPath: screenshot, toPath: docs)
        }
        XCTAssertEqual(try cluster.psctl(["shutdown"]).code, 0)
    }

    static func stepCount(port: UInt16) throws -> Int {
        let body = try HTTPProbe.get(port: port, path: "/history.json").body
        let object = try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any]
        return (object?["steps"] as? [Any])?.count ?? 0
    }

    /// Runs headless Chromium with 3 s of virtual time (the page polls every second); returns its stdout.
    static func runChromium(_ path: String, _ arguments: [String]) throws -> String {
        let profile = try TemporaryDirectory(prefix: "swiftps-chromium")
        defer { profile.remove() }
        let process = try ChildProcess(
            executable: URL(fileURLWithPath: path),
            arguments: [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--user-data-dir=\(profile.path)", "--virtual-time-budget=3000",
            ] + arguments)
        guard let code = process.wait(timeout: .seconds(90)) else {
            process.kill()
            throw ClusterError("chromium did not finish: \(process.standardError.suffix(2000))")
        }
        XCTAssertEqual(code, 0, "chromium: \(process.standardError.suffix(2000))")
        return process.standardOutput
    }

    /// The integer value of `attribute` on the element with `id` (attributes in any order).
    static func attribute(_ attribute: String, ofElementWithID id: String, in dom: String) -> Int? {
        guard let idRange = dom.range(of: "id=\"\(id)\"") else { return nil }
        let tagStart = dom[..<idRange.lowerBound].lastIndex(of: "<") ?? idRange.lowerBound
        let tagEnd = dom[idRange.upperBound...].firstIndex(of: ">") ?? dom.endIndex
        let tag = dom[tagStart..<tagEnd]
        guard let valueRange = tag.range(of: "\(attribute)=\"") else { return nil }
        return Int(tag[valueRange.upperBound...].prefix { $0.isNumber })
    }
}
