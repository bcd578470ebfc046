import Foundation
import PSPosix
import PSServer
import PSTransport
import PSWire
import XCTest

/// What a peer can make the server spend in threads, time and buffered bytes is bounded: handshake and frame
/// deadlines, a send deadline, `--max-connections` and a cap on frames before `hello`.
final class ConnectionLimitTests: XCTestCase {
    /// A raw connection whose reads give up after 10 s, so a server that never answers fails the test, not hangs it.
    private func connect(_ harness: ServerHarness) throws -> FramedConnection {
        let connection = try harness.rawConnection()
        try connection.setReceiveTimeout(.seconds(10))
        return connection
    }

    private func writeHeader(_ header: FrameHeader, bytes extra: Int = 0, on connection: FramedConnection) throws {
        var frame = [UInt8](repeating: 0, count: WireProtocol.headerSize + extra)
        frame.withUnsafeMutableBytes { header.encode(into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<24])) }
        try frame.withUnsafeBytes { try connection.writeRawForTesting($0) }
    }

    /// Reads until the server closes; returns the error frames seen on the way.
    private func errorsUntilClosed(_ connection: FramedConnection) -> [ErrorMessage] {
        var errors: [ErrorMessage] = []
        while let reply = try? connection.readMessage() {
            if case .error(let error) = reply.message { errors.append(error) }
        }
        return errors
    }

    func test_silentConnection_isClosedAfterTheHandshakeTimeout_withATimeoutError() throws {
        let harness = try ServerHarness(shards: 1) { $0.handshakeTimeoutSeconds = 0.3 }
        let connection = try connect(harness)
        let start = MonotonicClock.nanoseconds()
        let errors = errorsUntilClosed(connection)
        XCTAssertEqual(errors.map(\.code), [.timeout])
        XCTAssertTrue(errors.first?.message.contains("--handshake-timeout") ?? false, "\(errors)")
        XCTAssertLessThan(Double(MonotonicClock.nanoseconds() - start) / 1e9, 5)
    }

    func test_halfSentFrame_afterHello_isClosedAfterTheFrameTimeout() throws {
        let harness = try ServerHarness(shards: 1) { $0.frameTimeoutSeconds = 0.3 }
        let connection = try connect(harness)
        try connection.send(.hello(Hello(role: .worker, name: "slow")), requestID: 1)
        guard case .welcome? = try connection.readMessage()?.message else { return XCTFail("expected welcome") }
        // A status request's header promises 100 payload bytes; 10 come, then nothing.
        try writeHeader(
            FrameHeader(type: .status, flags: [], payloadLength: 100, requestID: 2), bytes: 10, on: connection)
        let start = MonotonicClock.nanoseconds()
        let errors = errorsUntilClosed(connection)
        XCTAssertEqual(errors.map(\.code), [.timeout])
        XCTAssertLessThan(Double(MonotonicClock.nanoseconds() - start) / 1e9, 5)
    }

    func test_idleConnection_afterHello_staysOpenPastTheFrameTimeout() throws {
        let harness = try ServerHarness(shards: 1) {
            $0.frameTimeoutSeconds = 0.2
            $0.handshakeTimeoutSeconds = 0.2
        }
        let connection = try connect(harness)
        try connection.send(.hello(Hello(role: .control, name: "idle")), requestID: 1)
        guard case .welcome? = try connection.readMessage()?.message else { return XCTFail("expected welcome") }
        Thread.sleep(forTimeInterval: 0.8)
        try connection.send(.status(StatusRequest()), requestID: 2)
        guard case .statusReply? = try connection.readMessage()?.message else { return XCTFail("expected status") }
    }

    func test_largeFrameBeforeHello_isRefusedUnread_andClosed() throws {
        let harness = try ServerHarness(shards: 1)
        let connection = try connect(harness)
        // A hello header announcing 64 MiB, of which nothing follows: the server must not wait to buffer it.
        try writeHeader(FrameHeader(type: .hello, flags: [], payloadLength: 64 << 20, requestID: 1), on: connection)
        let errors = errorsUntilClosed(connection)
        XCTAssertEqual(errors.map(\.code), [.frameTooLarge])
        XCTAssertTrue(errors.first?.message.contains("before the handshake") ?? false, "\(errors)")
    }

    func test_connectionsBeyondMaxConnections_getResourceExhausted() throws {
        let harness = try ServerHarness(shards: 1) { $0.maxConnections = 2 }
        let first = try connect(harness)
        let second = try connect(harness)
        for (index, connection) in [first, second].enumerated() {
            try connection.send(.hello(Hello(role: .control, name: "c\(index)")), requestID: 1)
            guard case .welcome? = try connection.readMessage()?.message else { return XCTFail("expected welcome") }
        }
        let third = try connect(harness)
        let errors = errorsUntilClosed(third)
        XCTAssertEqual(errors.map(\.code), [.resourceExhausted])
        // A slot frees when a connection closes.
        first.close()
        let again = try waitForAdmission(harness)
        XCTAssertNotNil(again)
    }

    private func waitForAdmission(_ harness: ServerHarness) throws -> FramedConnection? {
        for _ in 0..<100 {
            let connection = try connect(harness)
            try? connection.send(.hello(Hello(role: .control, name: "later")), requestID: 1)
            if case .welcome? = try? connection.readMessage()?.message { return connection }
            Thread.sleep(forTimeInterval: 0.05)
        }
        return nil
    }

    func test_peerThatDoesNotReadItsReplies_isClosedAfterTheSendTimeout() throws {
        let harness = try ServerHarness(shards: 1) {
            $0.sendTimeoutSeconds = 0.3
            $0.maxFrameBytes = 8 << 20
        }
        let setup = try harness.client(name: "setup")
        _ = try setup.register(zeroTensors([1 << 20]))
        let connection = try connect(harness)
        try connection.send(.hello(Hello(role: .worker, name: "deaf")), requestID: 1)
        guard case .welcome? = try connection.readMessage()?.message else { return XCTFail("expected welcome") }
        // 40 pulls of 4 MiB each: far more than the socket buffers hold while nobody reads.
        for id in 0..<40 { try connection.send(.pull(Pull(shard: 0, clock: 0)), requestID: UInt64(id + 2)) }
        Thread.sleep(forTimeInterval: 1.5)
        var replies = 0
        while case .pullReply? = try? connection.readMessage()?.message { replies += 1 }
        XCTAssertLessThan(replies, 40, "the server kept the connection although its peer did not read")
    }
}
