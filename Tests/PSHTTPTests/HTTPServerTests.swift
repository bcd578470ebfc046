import Foundation
import PSHTTP
import PSPosix
import PSTestSupport
import XCTest

/// The HTTP server against raw loopback sockets: routing through the handler, status codes, limits, deadlines.
final class HTTPServerTests: XCTestCase {
    private func startServer(_ configure: (inout HTTPServerLimits) -> Void = { _ in }) throws -> HTTPServer {
        Signals.ignoreSIGPIPE()
        var limits = HTTPServerLimits()
        configure(&limits)
        let server = try HTTPServer(host: "127.0.0.1", port: 0, limits: limits)
        server.start { request in
            if request.path == "/big" {
                return HTTPResponse(
                    status: 200, reason: "OK", contentType: "application/octet-stream",
                    body: [UInt8](repeating: 7, count: 16 << 20))
            }
            return request.path == "/hello"
                ? .ok("hello \(request.query["name"] ?? "")", contentType: "text/plain") : .notFound(request.path)
        }
        return server
    }

    /// Sends `bytes`, then reads until the server closes (bounded by a receive timeout).
    private func exchange(_ port: UInt16, _ bytes: [UInt8], timeout: Duration = .seconds(10)) throws -> String {
        let socket = try Socket.connect(host: "127.0.0.1", port: port, timeout: .seconds(5))
        defer { socket.close() }
        try socket.setReceiveTimeout(timeout)
        try bytes.withUnsafeBytes { try socket.writeAll($0) }
        return try readAll(socket)
    }

    private func readAll(_ socket: Socket) throws -> String {
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = try buffer.withUnsafeMutableBytes { try socket.receive(into: $0) }
            if count == 0 { break }
            received += buffer[0..<count]
        }
        return String(decoding: received, as: UTF8.self)
    }

    func test_get_routesToHandler() throws {
        let server = try startServer()
        defer { server.stop() }
        let reply = try exchange(server.port, Array("GET /hello?name=ps HTTP/1.1\r\nHost: x\r\n\r\n".utf8))
        XCTAssertTrue(reply.hasPrefix("HTTP/1.1 200 OK\r\n"), reply)
        XCTAssertTrue(reply.hasSuffix("\r\n\r\nhello ps"), reply)
        let missing = try exchange(server.port, Array("GET /nope HTTP/1.1\r\n\r\n".utf8))
        XCTAssertTrue(missing.hasPrefix("HTTP/1.1 404 Not Found\r\n"), missing)
    }

    func test_head_hasNoBody() throws {
        let server = try startServer()
        defer { server.stop() }
        let reply = try exchange(server.port, Array("HEAD /hello HTTP/1.1\r\n\r\n".utf8))
        XCTAssertTrue(reply.hasPrefix("HTTP/1.1 200 OK\r\n"), reply)
        XCTAssertTrue(reply.hasSuffix("\r\n\r\n"), reply)
        XCTAssertTrue(reply.contains("Content-Length: 6\r\n"), reply)
    }

    func test_otherMethods_get405WithAllow() throws {
        let server = try startServer()
        defer { server.stop() }
        for method in ["POST", "PUT", "DELETE", "BREW"] {
            let reply = try exchange(
                server.port, Array("\(method) /hello HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc".utf8))
            XCTAssertTrue(reply.hasPrefix("HTTP/1.1 405 Method Not Allowed\r\n"), reply)
            XCTAssertTrue(reply.contains("Allow: GET, HEAD\r\n"), reply)
        }
    }

    func test_malformedAndOversizedHeads_get400() throws {
        let server = try startServer { $0.maxHeadBytes = 2048 }
        defer { server.stop() }
        let bad = try exchange(server.port, Array("GARBAGE\r\n\r\n".utf8))
        XCTAssertTrue(bad.hasPrefix("HTTP/1.1 400 Bad Request\r\n"), bad)
        let huge = "GET / HTTP/1.1\r\nX: " + String(repeating: "a", count: 64 << 10) + "\r\n\r\n"
        let reply = try exchange(server.port, Array(huge.utf8))
        XCTAssertTrue(reply.hasPrefix("HTTP/1.1 400 Bad Request\r\n"), reply)
        XCTAssertTrue(reply.contains("larger than 2048 bytes"), reply)
    }

    /// An idle client and one that never finishes its head are both closed at the request deadline.
    func test_idleAndSlowClients_areClosedAtTheDeadline() throws {
        let server = try startServer { $0.requestTimeoutSeconds = 0.5 }
        defer { server.stop() }
        let started = Date()
        let idle = try exchange(server.port, [])
        XCTAssertTrue(idle.hasPrefix("HTTP/1.1 408 Request Timeout"), idle)
        let slow = try Socket.connect(host: "127.0.0.1", port: server.port, timeout: .seconds(5))
        defer { slow.close() }
        try slow.setReceiveTimeout(.seconds(10))
        for _ in 0..<3 {
            _ = try? Array("X".utf8).withUnsafeBytes { try slow.writeAll($0) }
            Thread.sleep(forTimeInterval: 0.2)
        }
        let reply = try readAll(slow)
        XCTAssertTrue(reply.isEmpty || reply.hasPrefix("HTTP/1.1 408"), reply)
        XCTAssertLessThan(Date().timeIntervalSince(started), 5)
    }

    /// A client that asks for a large response and never reads it is dropped at the write deadline.
    func test_clientThatNeverReads_isDroppedAtTheWriteDeadline() throws {
        let server = try startServer { $0.writeTimeoutSeconds = 0.5 }
        defer { server.stop() }
        let socket = try Socket.connect(host: "127.0.0.1", port: server.port, timeout: .seconds(5))
        defer { socket.close() }
        try Array("GET /big HTTP/1.1\r\n\r\n".utf8).withUnsafeBytes { try socket.writeAll($0) }
        XCTAssertTrue(waitUntil(timeout: .seconds(2)) { server.openConnections == 1 })
        XCTAssertTrue(waitUntil(timeout: .seconds(10)) { server.openConnections == 0 }, "the stuck write gave up")
    }

    /// Idle connections past the limit are evicted or refused, never more than twice the limit are open, and a
    /// real request still gets its answer while the idle ones are held.
    func test_idleConnectionsPastTheLimit_areEvictedOrRefused_andARealRequestIsServed() throws {
        let server = try startServer {
            $0.maxConnections = 4
            $0.requestTimeoutSeconds = 1
        }
        defer { server.stop() }
        var sockets: [Socket] = []
        defer { sockets.forEach { $0.close() } }
        for _ in 0..<20 {
            sockets.append(try Socket.connect(host: "127.0.0.1", port: server.port, timeout: .seconds(5)))
        }
        XCTAssertTrue(
            waitUntil(timeout: .seconds(5)) {
                server.refused.load(ordering: .relaxed) + server.evicted.load(ordering: .relaxed) >= 16
            })
        XCTAssertLessThanOrEqual(server.openConnections, 8)
        let whileHeld = try exchange(server.port, Array("GET /hello HTTP/1.1\r\n\r\n".utf8))
        XCTAssertTrue(whileHeld.hasPrefix("HTTP/1.1 200 OK"), whileHeld)
        sockets.forEach { $0.close() }
        sockets.removeAll()
        XCTAssertTrue(waitUntil(timeout: .seconds(5)) { server.openConnections == 0 })
        let reply = try exchange(server.port, Array("GET /hello HTTP/1.1\r\n\r\n".utf8))
        XCTAssertTrue(reply.hasPrefix("HTTP/1.1 200 OK"), reply)
    }
}
