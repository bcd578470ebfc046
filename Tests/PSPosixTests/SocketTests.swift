import Foundation
import PSTestSupport
import XCTest

@testable import PSPosix

final class SocketTests: XCTestCase {
    override func setUp() {
        Signals.ignoreSIGPIPE()
    }

    /// A listener on 127.0.0.1 with an ephemeral port.
    private func makeListener(host: String = "127.0.0.1") throws -> (listener: Socket, port: UInt16) {
        let listener = try Socket.listen(host: host, port: 0)
        return (listener, try listener.localPort())
    }

    /// Accepts one connection on a test thread and runs `body` with it, closing it (and the listener) afterwards.
    private func serveOnce<Value: Sendable>(
        _ listener: Socket,
        _ body: @escaping @Sendable (Socket) throws -> Value
    ) -> TestThread<Value> {
        TestThread(name: "test-server") {
            defer { listener.close() }
            let (connection, _) = try listener.accept()
            defer { connection.close() }
            return try body(connection)
        }
    }

    func test_roundTrip_echoesBytesBack() throws {
        let (listener, port) = try makeListener()
        let server = serveOnce(listener) { connection in
            var request = [UInt8](repeating: 0, count: 5)
            try request.withUnsafeMutableBytes { try connection.readExactly(into: $0) }
            try Array(request.reversed()).withUnsafeBytes { try connection.writeAll($0) }
        }
        let client = try Socket.connect(host: "127.0.0.1", port: port, timeout: .seconds(5))
        defer { client.close() }
        try [UInt8]([1, 2, 3, 4, 5]).withUnsafeBytes { try client.writeAll($0) }
        var reply = [UInt8](repeating: 0, count: 5)
        try reply.withUnsafeMutableBytes { try client.readExactly(into: $0) }
        XCTAssertEqual(reply, [5, 4, 3, 2, 1])
        try server.join()
    }

    func test_writeAllThreeBuffers_eightMebibytes_arriveExactlyInOrder() throws {
        let header = [UInt8](repeating: 0xAA, count: 24)
        let prefix = (0..<24).map { UInt8($0) }
        let payload = [UInt8](unsafeUninitializedCapacity: 8 << 20) { buffer, count in
            for index in 0..<buffer.count {
                buffer[index] = UInt8(truncatingIfNeeded: index &* 31 &+ index >> 13)
            }
            count = buffer.count
        }
        let total = header.count + prefix.count + payload.count
        let (listener, port) = try makeListener()
        let server = serveOnce(listener) { connection in
            var received = [UInt8](repeating: 0, count: total)
            try received.withUnsafeMutableBytes { buffer in
                // Odd-sized reads that do not line up with the sender's buffers.
                var offset = 0
                while offset < buffer.count {
                    let chunk = min(7919, buffer.count - offset)
                    try connection.readExactly(
                        into: UnsafeMutableRawBufferPointer(rebasing: buffer[offset..<offset + chunk]))
                    offset += chunk
                }
            }
            return received
        }
        let client = try Socket.connect(host: "127.0.0.1", port: port, timeout: .seconds(5))
        defer { client.close() }
        try header.withUnsafeBytes { a in
            try prefix.withUnsafeBytes { b in
                try payload.withUnsafeBytes { c in try client.writeAll(a, b, c) }
            }
        }
        let received = try server.join()
        XCTAssertEqual(received.count, total)
        XCTAssertTrue(received[0..<24].elementsEqual(header))
        XCTAssertTrue(received[24..<48].elementsEqual(prefix))
        XCTAssertTrue(received.withUnsafeBytes { all in payload.withUnsafeBytes { all[48...].elementsEqual($0) } })
    }

    func test_writeAll_skipsEmptyBuffers() throws {
        let (listener, port) = try makeListener()
        let server = serveOnce(listener) { connection in
            var received = [UInt8](repeating: 0, count: 3)
            try received.withUnsafeMutableBytes { try connection.readExactly(into: $0) }
            return received
        }
        let client = try Socket.connect(host: "127.0.0.1", port: port, timeout: .seconds(5))
        defer { client.close() }
        try [UInt8]([7, 8, 9]).withUnsafeBytes { bytes in
            try client.writeAll(UnsafeRawBufferPointer(start: nil, count: 0), bytes)
        }
        XCTAssertEqual(try server.join(), [7, 8, 9])
    }

    func test_advanceVectors_partialWrites_advanceAcrossBuffers() {
        var storage: [UInt8] = Array(0..<30)
        storage.withUnsafeMutableBytes { raw in
            let base = raw.baseAddress!
            var vectors = [
                iovec(iov_base: base, iov_len: 10),
                iovec(iov_base: base + 10, iov_len: 5),
                iovec(iov_base: base + 15, iov_len: 15),
            ]
            vectors.withUnsafeMutableBufferPointer { iov in
                let pointer = iov.baseAddress!
                XCTAssertEqual(advanceVectors(pointer, first: 0, count: 3, by: 4), 0)
                XCTAssertEqual(iov[0].iov_len, 6)
                XCTAssertEqual(iov[0].iov_base, base + 4)
                XCTAssertEqual(advanceVectors(pointer, first: 0, count: 3, by: 6), 1)
                XCTAssertEqual(advanceVectors(pointer, first: 1, count: 3, by: 7), 2)
                XCTAssertEqual(iov[2].iov_len, 13)
                XCTAssertEqual(iov[2].iov_base, base + 17)
                XCTAssertEqual(advanceVectors(pointer, first: 2, count: 3, by: 13), 3)
            }
        }
    }

    func test_readExactly_endOfStreamMidBuffer_throwsWithCounts() throws {
        let (listener, port) = try makeListener()
        let server = serveOnce(listener) { connection in
            try [UInt8](repeating: 1, count: 10).withUnsafeBytes { try connection.writeAll($0) }
        }
        let client = try Socket.connect(host: "127.0.0.1", port: port, timeout: .seconds(5))
        defer { client.close() }
        try server.join()
        var buffer = [UInt8](repeating: 0, count: 24)
        XCTAssertThrowsError(try buffer.withUnsafeMutableBytes { try client.readExactly(into: $0) }) { error in
            XCTAssertEqual(error as? SocketError, .endOfStream(expected: 24, received: 10))
        }
    }

    func test_readExactlyOrEOF_cleanEndBetweenFrames_returnsFalse() throws {
        let (listener, port) = try makeListener()
        let server = serveOnce(listener) { connection in
            try [UInt8](repeating: 9, count: 8).withUnsafeBytes { try connection.writeAll($0) }
        }
        let client = try Socket.connect(host: "127.0.0.1", port: port, timeout: .seconds(5))
        defer { client.close() }
        try server.join()
        var buffer = [UInt8](repeating: 0, count: 8)
        XCTAssertTrue(try buffer.withUnsafeMutableBytes { try client.readExactlyOrEOF(into: $0) })
        XCTAssertEqual(buffer, [UInt8](repeating: 9, count: 8))
        XCTAssertFalse(try buffer.withUnsafeMutableBytes { try client.readExactlyOrEOF(into: $0) })
    }

    func test_readExactlyOrEOF_endAfterSomeBytes_throwsEndOfStream() throws {
        let (listener, port) = try makeListener()
        let server = serveOnce(listener) { connection in
            try [UInt8](repeating: 9, count: 3).withUnsafeBytes { try connection.writeAll($0) }
        }
        let client = try Socket.connect(host: "127.0.0.1", port: port, timeout: .seconds(5))
        defer { client.close() }
        try server.join()
        var buffer = [UInt8](repeating: 0, count: 8)
        XCTAssertThrowsError(try buffer.withUnsafeMutableBytes { try client.readExactlyOrEOF(into: $0) }) { error in
            XCTAssertEqual(error as? SocketError, .endOfStream(expected: 8, received: 3))
        }
    }

    func test_connect_closedPort_throwsConnectionRefusedNamingTheAddress() throws {
        let (listener, port) = try makeListener()
        listener.close()
        XCTAssertThrowsError(try Socket.connect(host: "127.0.0.1", port: port, timeout: .seconds(5))) { error in
            XCTAssertEqual(error as? SocketError, .connect(address: "127.0.0.1:\(port)", errno: .connectionRefused))
            XCTAssertEqual(
                "\(error)",
                "connect to 127.0.0.1:\(port) failed: ECONNREFUSED (Connection refused)"
            )
        }
    }

    func test_connect_invalidHostName_throwsResolve() {
        XCTAssertThrowsError(try Socket.connect(host: "nonexistent.invalid", port: 7000, timeout: .seconds(5))) {
            guard case .resolve(let host, let reason) = $0 as? SocketError else {
                return XCTFail("expected .resolve, got \($0)")
            }
            XCTAssertEqual(host, "nonexistent.invalid")
            XCTAssertFalse(reason.isEmpty)
        }
    }

    func test_connect_listenerBacklogFull_timesOutWithinTheTimeout() throws {
        // A listener that never accepts, with the smallest backlog: once its queue is full the kernel drops SYNs.
        let listener = try Socket.listen(host: "127.0.0.1", port: 0, backlog: 0)
        let port = try listener.localPort()
        var connected: [Socket] = []
        defer {
            connected.forEach { $0.close() }
            listener.close()
        }
        var timeout: SocketError?
        for _ in 0..<8 where timeout == nil {
            let start = MonotonicClock.nanoseconds()
            do {
                connected.append(try Socket.connect(host: "127.0.0.1", port: port, timeout: .milliseconds(200)))
            } catch {
                timeout = error
                XCTAssertLessThan(MonotonicClock.nanoseconds() - start, 2_000_000_000)
            }
        }
        XCTAssertEqual(timeout, .connectTimedOut(address: "127.0.0.1:\(port)", seconds: 0.2))
    }

    func test_localhost_listenAndConnect_roundTrip() throws {
        let (listener, port) = try makeListener(host: "localhost")
        let server = serveOnce(listener) { connection in
            try [UInt8]([42]).withUnsafeBytes { try connection.writeAll($0) }
        }
        let client = try Socket.connect(host: "localhost", port: port, timeout: .seconds(5))
        defer { client.close() }
        var byte: [UInt8] = [0]
        try byte.withUnsafeMutableBytes { try client.readExactly(into: $0) }
        XCTAssertEqual(byte, [42])
        try server.join()
    }

    func test_listen_anyAddress_acceptsLoopbackConnections() throws {
        for host in ["0.0.0.0", "::"] {
            let listener: Socket
            do {
                listener = try Socket.listen(host: host, port: 0)
            } catch {
                if host == "::", case .system(_, let errno) = error, errno.rawValue == EAFNOSUPPORT {
                    continue  // no IPv6 in this environment
                }
                throw error
            }
            let port = try listener.localPort()
            XCTAssertNotEqual(port, 0)
            let server = serveOnce(listener) { _ in () }
            let client = try Socket.connect(host: "127.0.0.1", port: port, timeout: .seconds(5))
            client.close()
            try server.join()
        }
    }

    func test_listen_portInUse_throwsNamingTheAddress() throws {
        let (listener, port) = try makeListener()
        defer { listener.close() }
        XCTAssertThrowsError(try Socket.listen(host: "127.0.0.1", port: port)) {
            XCTAssertEqual($0 as? SocketError, .system(operation: "bind 127.0.0.1:\(port)", errno: .addressInUse))
        }
    }

    func test_receiveTimeout_expires_throwsTimedOut() throws {
        let (listener, port) = try makeListener()
        let client = try Socket.connect(host: "127.0.0.1", port: port, timeout: .seconds(5))
        defer {
            client.close()
            listener.close()
        }
        try client.setReceiveTimeout(.milliseconds(100))
        let start = MonotonicClock.nanoseconds()
        var buffer = [UInt8](repeating: 0, count: 4)
        XCTAssertThrowsError(try buffer.withUnsafeMutableBytes { try client.readExactly(into: $0) }) {
            XCTAssertEqual($0 as? SocketError, .timedOut(operation: "read"))
        }
        XCTAssertGreaterThanOrEqual(MonotonicClock.nanoseconds() - start, 80_000_000)
    }

    func test_write_afterPeerClosed_throwsBrokenPipeOrReset() throws {
        let (listener, port) = try makeListener()
        let server = serveOnce(listener) { _ in () }
        let client = try Socket.connect(host: "127.0.0.1", port: port, timeout: .seconds(5))
        defer { client.close() }
        try server.join()
        let chunk = [UInt8](repeating: 0, count: 64 << 10)
        var failure: SocketError?
        for _ in 0..<100 where failure == nil {
            do {
                try chunk.withUnsafeBytes { try client.writeAll($0, $0) }
            } catch {
                failure = error as? SocketError
            }
        }
        guard case .system(_, let errno) = failure else {
            return XCTFail("expected a system error, got \(String(describing: failure))")
        }
        XCTAssertTrue(errno == .brokenPipe || errno == .connectionReset, "\(errno)")
    }

    func test_noDelay_isSetOnBothEnds() throws {
        let (listener, port) = try makeListener()
        let server = serveOnce(listener) { connection in
            try connection.isNoDelayEnabled()
        }
        let client = try Socket.connect(host: "127.0.0.1", port: port, timeout: .seconds(5))
        defer { client.close() }
        XCTAssertTrue(try client.isNoDelayEnabled())
        XCTAssertTrue(try server.join())
    }

    func test_accept_reportsPeerAddress() throws {
        let (listener, port) = try makeListener()
        let server = TestThread { () throws -> String in
            defer { listener.close() }
            let (connection, peer) = try listener.accept()
            connection.close()
            return peer
        }
        let client = try Socket.connect(host: "127.0.0.1", port: port, timeout: .seconds(5))
        defer { client.close() }
        let peer = try server.join()
        XCTAssertEqual(peer, try client.localAddressDescription())
    }

    func test_shutdown_wakesBlockedAccept() throws {
        let (listener, _) = try makeListener()
        defer { listener.close() }
        let acceptor = TestThread { () -> SocketError? in
            do {
                _ = try listener.accept()
                return nil
            } catch let error as SocketError {
                return error
            }
        }
        Thread.sleep(forTimeInterval: 0.05)
        listener.shutdown()
        XCTAssertEqual(try acceptor.join(timeout: .seconds(5)), .closed)
    }

    func test_errno_description_namesConstantAndMessage() {
        XCTAssertEqual(Errno.connectionRefused.description, "ECONNREFUSED (Connection refused)")
        XCTAssertEqual(Errno.brokenPipe.name, "EPIPE")
        XCTAssertEqual(Errno(rawValue: 9999).name, "errno 9999")
    }

    func test_valueOrErrno_minusOne_throwsErrnoAndRetriesInterrupted() {
        var calls = 0
        XCTAssertEqual(
            try valueOrErrno { () -> Int32 in
                calls += 1
                if calls == 1 {
                    errno = EINTR
                    return -1
                }
                return 7
            },
            7
        )
        XCTAssertEqual(calls, 2)
        XCTAssertThrowsError(
            try valueOrErrno { () -> Int32 in
                errno = ENOENT
                return -1
            }
        ) { XCTAssertEqual($0 as? Errno, .noSuchFileOrDirectory) }
    }

    func test_duration_saturatingNanoseconds() {
        XCTAssertEqual(Duration.milliseconds(1500).saturatingNanoseconds, 1_500_000_000)
        XCTAssertEqual(Duration.seconds(-1).saturatingNanoseconds, 0)
        XCTAssertEqual(Duration.seconds(Int64.max).saturatingNanoseconds, .max)
    }
}
