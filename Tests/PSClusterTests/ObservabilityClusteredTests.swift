import Foundation
import PSPosix
import PSTestSupport
import PSWire
import XCTest

/// `psserver --metrics-port` against real clients: promtool checks `/metrics` before, during and after a job,
/// `/status.json` is `psctl status --json`'s document, and the error statuses.
final class ObservabilityClusteredTests: XCTestCase {
    func test_metrics_passPromtool_beforeDuringAndAfterAJob_andStatusMatchesPsctl() throws {
        let cluster = try LocalCluster()
        try cluster.startServer([
            "--shards", "3", "--workers", "2", "--model", "mlp:32", "--data", "digits", "--batch", "16",
            "--epochs", "3", "--mode", "bsp", "--metrics-port", "0", "--keep-running", "--checkpoint-every-steps",
            "50",
        ])
        let port = try cluster.metricsPort()
        let before = try HTTPProbe.get(port: port, path: "/metrics")
        XCTAssertEqual(before.status, 200)
        XCTAssertTrue(before.headers.contains("Content-Type: text/plain; version=0.0.4"), before.headers)
        try Promtool.check(before.body, stage: "before the job")
        XCTAssertTrue(before.body.contains("swiftps_job_phase{phase=\"waiting\"} 1"), before.body)

        for rank in 0..<2 { try cluster.startWorker(name: "w\(rank)", ["--quiet"]) }
        var during: String? = nil
        XCTAssertTrue(
            waitUntil(timeout: .seconds(60), poll: .milliseconds(20)) {
                guard let text = try? HTTPProbe.get(port: port, path: "/metrics").body,
                    let steps = HTTPProbe.value(of: "swiftps_applied_steps_total", in: text), steps > 0
                else { return false }
                during = text
                return true
            })
        try Promtool.check(during ?? "", stage: "during the job")

        XCTAssertTrue(
            waitUntil(timeout: .seconds(120), poll: .milliseconds(100)) {
                (try? HTTPProbe.get(port: port, path: "/metrics").body)?.contains(
                    "swiftps_job_phase{phase=\"finished\"} 1") ?? false
            }, "the job finishes")
        for worker in cluster.workers { XCTAssertEqual(worker.wait(timeout: .seconds(60)), 0, worker.standardError) }
        let after = try HTTPProbe.get(port: port, path: "/metrics").body
        try Promtool.check(after, stage: "after the job")
        for family in [
            "swiftps_shard_pushes_total{shard=\"2\"}", "swiftps_push_bytes_total", "swiftps_pull_bytes_total",
            "swiftps_stale_pushes_dropped_total", "swiftps_stale_pushes_scaled_total", "swiftps_applied_steps_total",
            "swiftps_workers{state=\"live\"}", "swiftps_workers{state=\"dead\"}", "swiftps_worker_rejoins_total",
            "swiftps_worker_clock{worker=\"w1\"", "swiftps_barrier_wait_seconds_bucket{le=\"+Inf\"}",
            "swiftps_apply_seconds_count", "swiftps_checkpoints_total", "swiftps_checkpoint_duration_seconds_sum",
            "swiftps_checkpoint_bytes_total", "swiftps_test_loss", "swiftps_test_accuracy_ratio",
            "swiftps_process_uptime_seconds", "swiftps_open_connections", "swiftps_process_resident_memory_bytes",
        ] {
            XCTAssertTrue(after.contains("\n" + family), "missing \(family)")
        }
        let steps = HTTPProbe.value(of: "swiftps_applied_steps_total", in: after) ?? 0
        XCTAssertGreaterThan(steps, 0)
        XCTAssertEqual(HTTPProbe.value(of: "swiftps_apply_seconds_count", in: after), steps * 3, "one apply per shard")
        XCTAssertGreaterThan(HTTPProbe.value(of: "swiftps_checkpoints_total", in: after) ?? 0, 0)
        XCTAssertGreaterThan(HTTPProbe.value(of: "swiftps_test_accuracy_ratio", in: after) ?? 0, 0.5)

        // /status.json is psctl status --json's document (the same keys; counters may move between the two).
        let status = try HTTPProbe.get(port: port, path: "/status.json")
        XCTAssertEqual(status.status, 200)
        let document = try StatusDocument.decode(json: status.body)
        let psctl = try cluster.psctl(["status", "--json"])
        XCTAssertEqual(psctl.code, 0, psctl.output)
        let viaPsctl = try StatusDocument.decode(json: psctl.output)
        XCTAssertEqual(document.jobStatus?.completedSteps, viaPsctl.jobStatus?.completedSteps)
        XCTAssertEqual(document.shards.map(\.version), viaPsctl.shards.map(\.version))
        XCTAssertEqual(document.jobStatus?.workers.map(\.name).sorted(), ["w0", "w1"])

        // The history has a loss for every step so far.
        let history = try HTTPProbe.get(port: port, path: "/history.json")
        let object = try JSONSerialization.jsonObject(with: Data(history.body.utf8)) as? [String: Any]
        XCTAssertEqual((object?["steps"] as? [Any])?.count, Int(steps))
        XCTAssertEqual((object?["epochs"] as? [Any])?.count, 3)

        // Errors.
        XCTAssertEqual(try HTTPProbe.get(port: port, path: "/nope").status, 404)
        XCTAssertEqual(try HTTPProbe.request(port: port, "POST /metrics HTTP/1.1\r\n\r\n").status, 405)
        XCTAssertEqual(try HTTPProbe.request(port: port, "HELLO\r\n\r\n").status, 400)
        let page = try HTTPProbe.get(port: port, path: "/")
        XCTAssertEqual(page.status, 200)
        XCTAssertTrue(page.body.hasPrefix("<!doctype html>"))
        XCTAssertEqual(try cluster.psctl(["shutdown"]).code, 0)
    }
}

extension LocalCluster {
    /// The port of the server's `--metrics-port 0` endpoint, from its `metrics-listening` log line.
    func metricsPort() throws -> UInt16 {
        guard let server else { throw ClusterError("no server") }
        let line = try server.waitForLine(
            matching: "event=metrics-listening", in: .standardError, timeout: .seconds(30))
        guard let range = line.range(of: "address=127.0.0.1:"),
            let port = UInt16(line[range.upperBound...].prefix { $0.isNumber })
        else { throw ClusterError("cannot read the metrics port from \(line)") }
        return port
    }
}

/// A minimal HTTP/1.1 client over PSPosix sockets: one request per connection, read until the server closes.
enum HTTPProbe {
    struct Reply {
        let status: Int
        let headers: String
        let body: String
    }

    static func get(port: UInt16, path: String) throws -> Reply {
        try request(port: port, "GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    }

    static func request(port: UInt16, _ text: String) throws -> Reply {
        let socket = try Socket.connect(host: "127.0.0.1", port: port, timeout: .seconds(5))
        defer { socket.close() }
        try socket.setReceiveTimeout(.seconds(10))
        try Array(text.utf8).withUnsafeBytes { try socket.writeAll($0) }
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 16384)
        while true {
            let count = try buffer.withUnsafeMutableBytes { try socket.receive(into: $0) }
            if count == 0 { break }
            received += buffer[0..<count]
        }
        let reply = String(decoding: received, as: UTF8.self)
        guard let split = reply.range(of: "\r\n\r\n"), reply.hasPrefix("HTTP/1.1 "),
            let status = Int(reply.dropFirst(9).prefix(3))
        else { throw ClusterError("not an HTTP reply: \(reply.prefix(200))") }
        return Reply(
            status: status, headers: String(reply[..<split.lowerBound]), body: String(reply[split.upperBound...]))
    }

    /// The value of the first sample line that starts with `name` followed by a space or `{`.
    static func value(of name: String, in text: String) -> Double? {
        for line in text.split(separator: "\n") where line.hasPrefix(name) {
            let rest = line.dropFirst(name.count)
            guard rest.first == " " || rest.first == "{" else { continue }
            return line.split(separator: " ").last.flatMap { Double($0) }
        }
        return nil
    }
}
