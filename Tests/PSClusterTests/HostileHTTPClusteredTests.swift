import Foundation
import PSPosix
import PSTestSupport
import XCTest

/// Hostile clients on `--metrics-port` while a job trains: the data path keeps its speed, the server stays up and
/// its memory stays bounded. The attack is bounded in count (about 560 connections) and in time (about 6 s).
final class HostileHTTPClusteredTests: XCTestCase {
    func test_hostileHTTPClients_doNotSlowTrainingOrGrowMemory() throws {
        let cluster = try LocalCluster()
        try cluster.startServer([
            "--shards", "2", "--workers", "2", "--model", "mlp:32", "--data", "digits", "--batch", "16",
            "--epochs", "20000", "--mode", "bsp", "--metrics-port", "0",
        ])
        let port = try cluster.metricsPort()
        guard let serverPID = cluster.server?.processID else { throw ClusterError("no server") }
        for rank in 0..<2 { try cluster.startWorker(name: "w\(rank)", ["--quiet"]) }
        XCTAssertTrue(
            waitUntil(timeout: .seconds(60)) { (try? Self.trainingProgress(cluster))?.steps ?? 0 > 20 },
            "training starts")

        let quiet = try Self.samplesPerSecond(cluster, seconds: 2)
        let residentBefore = Self.residentBytes(pid: serverPID)
        let attack = TestThread(name: "attack") { Self.attack(port: port) }
        let underAttack = try Self.samplesPerSecond(cluster, seconds: 3)
        let attackStats = try attack.join(timeout: .seconds(60))
        let residentAfter = Self.residentBytes(pid: serverPID)
        print(
            "hostile-http: samples/s quiet \(Int(quiet)), under attack \(Int(underAttack)); rss \(residentBefore >> 20) -> \(residentAfter >> 20) MiB; \(attackStats)"
        )

        XCTAssertTrue(attackStats.contains("200 from a scrape"), attackStats)
        XCTAssertGreaterThan(underAttack, quiet * 0.4, "the data path keeps (loosely) its speed under the attack")
        XCTAssertLessThan(residentAfter, residentBefore + (64 << 20), "memory stays bounded")
        XCTAssertTrue(cluster.server?.isRunning ?? false, "the server survives")
        XCTAssertTrue(
            waitUntil(timeout: .seconds(10)) { (try? HTTPProbe.get(port: port, path: "/metrics"))?.status == 200 },
            "the endpoint serves again once the attackers are gone")
        XCTAssertEqual(try cluster.psctl(["shutdown"]).code, 0)
    }

    /// Steps, samples and training seconds so far, from the server's metrics file (the data path's own record,
    /// independent of the HTTP endpoint under attack).
    static func trainingProgress(_ cluster: LocalCluster) throws -> (steps: Int, samples: Double, elapsed: Double) {
        let steps = try cluster.records(type: "step")
        let samples = steps.reduce(0.0) { $0 + (($1["samples"] as? Double) ?? 0) }
        return (steps.count, samples, steps.last?["elapsed_s"] as? Double ?? 0)
    }

    /// Samples per second of training time over a window of `seconds`.
    static func samplesPerSecond(_ cluster: LocalCluster, seconds: Double) throws -> Double {
        let start = try trainingProgress(cluster)
        Thread.sleep(forTimeInterval: seconds)
        let end = try trainingProgress(cluster)
        return (end.samples - start.samples) / max(end.elapsed - start.elapsed, 1e-3)
    }

    static func residentBytes(pid: Int32) -> UInt64 {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
            let line = text.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
            let kib = UInt64(line.split(separator: " ").dropFirst().first ?? "")
        else { return 0 }
        return kib << 10
    }

    /// 500 idle connections, malformed request lines, huge headers, a header that never ends, clients that
    /// never read; returns a summary.
    static func attack(port: UInt16) -> String {
        var sockets: [Socket] = []
        defer { sockets.forEach { $0.close() } }
        func connect() -> Socket? {
            guard let socket = try? Socket.connect(host: "127.0.0.1", port: port, timeout: .seconds(2)) else {
                return nil
            }
            sockets.append(socket)
            return socket
        }
        func send(_ socket: Socket, _ text: String) {
            _ = try? Array(text.utf8).withUnsafeBytes { try socket.writeAll($0) }
        }
        var opened = 0
        for _ in 0..<500 where connect() != nil { opened += 1 }
        for line in ["GARBAGE\r\n\r\n", "GET\r\n\r\n", "GET / HTTP/9.9\r\n\r\n", "\u{1}\u{2}\u{3}\r\n\r\n"] {
            for _ in 0..<5 { if let socket = connect() { send(socket, line) } }
        }
        let hugeHeader = "GET /metrics HTTP/1.1\r\nX-Huge: " + String(repeating: "h", count: 256 << 10) + "\r\n\r\n"
        for _ in 0..<5 { if let socket = connect() { send(socket, hugeHeader) } }
        let neverEnds = connect()
        if let neverEnds { send(neverEnds, "GET /metrics HTTP/1.1\r\nX-Endless: ") }
        for _ in 0..<10 { if let socket = connect() { send(socket, "GET / HTTP/1.1\r\n\r\n") } }  // never read
        // A scraper still gets its answer while the idle connections are held (it evicts one of them).
        var scrape = "no reply"
        for _ in 0..<3 where !scrape.hasPrefix("200") {
            if let reply = try? HTTPProbe.get(port: port, path: "/metrics") { scrape = "\(reply.status) from a scrape" }
        }
        for _ in 0..<12 {
            if let neverEnds { send(neverEnds, String(repeating: "z", count: 64)) }
            Thread.sleep(forTimeInterval: 0.5)
        }
        return "attack: \(opened) idle connections opened, \(sockets.count) sockets in all; \(scrape)"
    }
}
