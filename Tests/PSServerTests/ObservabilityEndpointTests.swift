import Foundation
import PSMetrics
import PSPosix
import PSServer
import XCTest

/// `/metrics` of an in-process store server, checked without promtool: every family has help, a type and a
/// valid name, counters end in `_total`, every sample belongs to a declared family.
final class ObservabilityEndpointTests: XCTestCase {
    func test_metrics_familiesFollowThePrometheusConventions() throws {
        let harness = try ServerHarness(shards: 2) { $0.metricsPort = 0 }
        let client = try harness.client()
        defer { client.close() }
        _ = try client.register(zeroTensors([10, 6]))
        let port = try XCTUnwrap(harness.server.metricsPort)
        let text = try Self.get(port: port, path: "/metrics")
        XCTAssertTrue(text.hasPrefix("HTTP/1.1 200 OK\r\n"))
        let body = String(text[text.range(of: "\r\n\r\n")!.upperBound...])
        let declared = Self.checkConventions(body)
        XCTAssertEqual(declared["swiftps_shard_pushes_total"], "counter")
        XCTAssertEqual(declared["swiftps_apply_seconds"], "histogram")
        XCTAssertTrue(body.contains("swiftps_shard_pull_bytes_total{shard=\"1\"} 0\n"), body)
        let status = try Self.get(port: port, path: "/status.json")
        XCTAssertTrue(status.contains("\"shard_count\":2"), status)
    }

    /// Checks the metrics text `body` against the Prometheus conventions; returns the declared families' types.
    static func checkConventions(_ body: String) -> [String: String] {
        var declared: [String: String] = [:]
        var helped: Set<String> = []
        for line in body.split(separator: "\n") {
            let words = line.split(separator: " ", maxSplits: 3).map(String.init)
            if line.hasPrefix("# HELP ") {
                helped.insert(words[2])
            } else if line.hasPrefix("# TYPE ") {
                XCTAssertTrue(helped.contains(words[2]), "HELP before TYPE for \(words[2])")
                XCTAssertNil(declared[words[2]], "\(words[2]) declared twice")
                declared[words[2]] = words[3]
                XCTAssertTrue(PrometheusText.isValidName(words[2]), words[2])
                XCTAssertTrue(words[2].hasPrefix("swiftps_"), words[2])
                XCTAssertEqual(words[3] == "counter", words[2].hasSuffix("_total"), "\(words[2]) is a \(words[3])")
            } else {
                let name = String(line.prefix { $0 != "{" && $0 != " " })
                let family = ["_bucket", "_sum", "_count"].reduce(name) { family, suffix in
                    declared[family] == nil && family.hasSuffix(suffix) ? String(family.dropLast(suffix.count)) : family
                }
                XCTAssertNotNil(declared[family], "sample \(line) has no family")
                XCTAssertNotNil(Double(line.split(separator: " ").last.map(String.init) ?? ""), "value of \(line)")
            }
        }
        return declared
    }

    static func get(port: UInt16, path: String) throws -> String {
        let socket = try Socket.connect(host: "127.0.0.1", port: port, timeout: .seconds(5))
        defer { socket.close() }
        try socket.setReceiveTimeout(.seconds(10))
        try Array("GET \(path) HTTP/1.1\r\n\r\n".utf8).withUnsafeBytes { try socket.writeAll($0) }
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 8192)
        while true {
            let count = try buffer.withUnsafeMutableBytes { try socket.receive(into: $0) }
            if count == 0 { break }
            received += buffer[0..<count]
        }
        return String(decoding: received, as: UTF8.self)
    }
}
