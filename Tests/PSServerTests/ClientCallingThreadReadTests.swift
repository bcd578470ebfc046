import Foundation
import PSClient
import PSPosix
import PSTransport
import PSWire
import XCTest

/// The client reads replies on the calling thread when no other thread is reading (the read token), and the
/// reader thread reads the replies asked to be read in background and what precedes a hang-up: replies must land
/// in the right handles whichever thread reads them, and every wait keeps its deadline.
final class ClientCallingThreadReadTests: XCTestCase {
    func test_waitingOnTheLastHandleFirst_completesTheEarlierOnesToo() throws {
        let harness = try ServerHarness(shards: 1)
        let client = try harness.client()
        defer { client.close() }
        _ = try client.register(zeroTensors([4]))
        let gradient: [Float] = [1, 1, 1, 1]
        let handles = try gradient.withUnsafeBufferPointer { g in
            try (0..<4).map { step in try client.push(shard: 0, clock: UInt64(step), baseVersion: 0, gradient: g) }
        }
        for handle in handles.reversed() {
            guard case .message(.pushAck) = try handle.wait(timeout: .seconds(30)) else {
                return XCTFail("expected a push acknowledgement")
            }
        }
        var weights = [Float](repeating: 0, count: 4)
        _ = try weights.withUnsafeMutableBufferPointer { try client.pull(shard: 0, clock: 4, into: $0).wait() }
        XCTAssertEqual(weights, [-4, -4, -4, -4])
    }

    func test_fourThreadsSharingOneClient_eachWaitingOnItsOwnReplies() throws {
        let harness = try ServerHarness(shards: 2)
        let client = try harness.client()
        defer { client.close() }
        _ = try client.register(zeroTensors([6]))
        let threads = 4
        let rounds = 50
        let finished = LockedValue(0)
        let failures = LockedValue<[String]>([])
        for thread in 0..<threads {
            Thread {
                let gradient: [Float] = [1, 1, 1]
                var weights = [Float](repeating: 0, count: 3)
                do {
                    for round in 0..<rounds {
                        try gradient.withUnsafeBufferPointer { g in
                            try weights.withUnsafeMutableBufferPointer { w in
                                _ = try client.pushPull(
                                    shard: thread % 2, clock: UInt64(round), baseVersion: 0, gradient: g, into: w
                                ).wait(timeout: .seconds(30))
                            }
                        }
                    }
                } catch {
                    failures.withLock { $0.append("thread \(thread): \(error)") }
                }
                finished.withLockAndBroadcast { $0 += 1 }
            }.start()
        }
        XCTAssertTrue(
            finished.wait(until: MonotonicClock.deadline(afterSeconds: 60), while: { $0 < threads }),
            "threads still running")
        XCTAssertEqual(failures.withLock { $0 }, [])
        var weights = [Float](repeating: 0, count: 6)
        try weights.withUnsafeMutableBufferPointer { all in
            for shard in 0..<2 {
                _ = try client.pull(
                    shard: shard, clock: UInt64(rounds),
                    into: UnsafeMutableBufferPointer(rebasing: all[(shard * 3)..<(shard * 3 + 3)])
                ).wait()
            }
        }
        XCTAssertEqual(weights, [Float](repeating: -Float(threads / 2 * rounds), count: 6))
    }

    /// Four 16 MiB push-pulls put in flight on one connection before any wait: while the client sends the later
    /// ones, the server writes the earlier replies, which no caller reads yet. The reader thread must read them
    /// (a request sent while others are pending flags those for background reading), or the server blocks in its
    /// send, stops reading, and the client's send blocks too (the server's send timeout is short here, so a stall
    /// fails the test instead of hanging it).
    func test_bigRequestsPipelinedOnOneConnection_doNotStallBehindTheirUnreadReplies() throws {
        let harness = try ServerHarness(shards: 4) { $0.sendTimeoutSeconds = 10 }
        let client = try harness.client()
        defer { client.close() }
        let perShard = 4 << 20
        _ = try client.register(zeroTensors([4 * perShard]))
        let gradient = [Float](repeating: 1, count: 4 * perShard)
        var weights = [Float](repeating: 0, count: 4 * perShard)
        try gradient.withUnsafeBufferPointer { g in
            try weights.withUnsafeMutableBufferPointer { w in
                let handles = try (0..<4).map { shard in
                    let range = (shard * perShard)..<((shard + 1) * perShard)
                    return try client.pushPull(
                        shard: shard, clock: 0, baseVersion: 0, gradient: UnsafeBufferPointer(rebasing: g[range]),
                        into: UnsafeMutableBufferPointer(rebasing: w[range]))
                }
                for handle in handles { _ = try handle.wait(timeout: .seconds(60)) }
            }
        }
        XCTAssertEqual(weights, [Float](repeating: -1, count: 4 * perShard))
    }

    /// `waitAll` over handles interleaved across two connections, [server 0, server 1, server 0], with 2 and 4 MiB
    /// replies: every reply lands in its own destination whichever thread reads it (the third is flagged for
    /// background reading, so server 0 is not left blocked writing it while the caller waits on server 1).
    func test_waitAll_interleavedAcrossTwoServers_readsTheLaterRepliesMeanwhile() throws {
        let count = 1 << 20
        let harnesses = try [
            ServerHarness(shards: 2) { $0.sendTimeoutSeconds = 5 },
            ServerHarness(shards: 1) { $0.sendTimeoutSeconds = 5 },
        ]
        let clients = try harnesses.map { try $0.client() }
        defer { for client in clients { client.close() } }
        for client in clients { _ = try client.register(zeroTensors([count])) }
        var first = [Float](repeating: 1, count: count)
        var second = [Float](repeating: 1, count: count)
        let replies = try first.withUnsafeMutableBufferPointer { a in
            try second.withUnsafeMutableBufferPointer { b in
                let half = count / 2
                return try RequestHandle.waitAll(
                    [
                        try clients[0].pull(
                            shard: 0, clock: 0, into: UnsafeMutableBufferPointer(rebasing: a[0..<half])),
                        try clients[1].pull(shard: 0, clock: 0, into: b),
                        try clients[0].pull(shard: 1, clock: 0, into: UnsafeMutableBufferPointer(rebasing: a[half...])),
                    ], timeout: .seconds(60))
            }
        }
        XCTAssertEqual(replies.count, 3)
        XCTAssertEqual(first, [Float](repeating: 0, count: count))
        XCTAssertEqual(second, [Float](repeating: 0, count: count))
    }

    /// The reader thread sleeps through replies (only waits read them) but still sees the server go away: a
    /// client with nothing pending must notice within a few seconds, not at its next request.
    func test_theServerGoingAway_isSeenWithoutAnyoneWaiting() throws {
        let harness = try ServerHarness(shards: 1)
        let client = try harness.client()
        defer { client.close() }
        _ = try client.register(zeroTensors([4]))
        XCTAssertFalse(client.isBroken)
        harness.server.stop(exitCode: 0, reason: "test stops the server")
        let deadline = MonotonicClock.deadline(afterSeconds: 10)
        while !client.isBroken && MonotonicClock.nanoseconds() < deadline { usleep(10_000) }
        XCTAssertTrue(client.isBroken, "the client did not notice the server's hang-up")
    }

    /// `waitAll` over two servers whose replies (4 MiB each) do not fit in the socket buffers: the second
    /// connection's reply is read in the background while the caller waits for the first, and both land whole.
    func test_waitAll_acrossTwoServers_landsEveryReply() throws {
        let count = 1 << 20
        let harnesses = try [ServerHarness(shards: 2), ServerHarness(shards: 1)]
        let clients = try harnesses.map { try $0.client() }
        defer { for client in clients { client.close() } }
        let gradient = [Float](repeating: 1, count: count)
        for client in clients {
            _ = try client.register(zeroTensors([count]))
            _ = try gradient.withUnsafeBufferPointer { g in
                try (0..<client.config.shardCount).map { shard in
                    let half = count / client.config.shardCount
                    return try client.push(
                        shard: shard, clock: 0, baseVersion: 0,
                        gradient: UnsafeBufferPointer(rebasing: g[(shard * half)..<((shard + 1) * half)]))
                }
            }.forEach { _ = try $0.wait() }
        }
        var first = [Float](repeating: 0, count: count)
        var second = [Float](repeating: 0, count: count)
        let replies = try first.withUnsafeMutableBufferPointer { a in
            try second.withUnsafeMutableBufferPointer { b in
                let half = count / 2
                let handles = [
                    try clients[0].pull(shard: 0, clock: 1, into: UnsafeMutableBufferPointer(rebasing: a[0..<half])),
                    try clients[1].pull(shard: 0, clock: 1, into: b),
                    try clients[0].pull(shard: 1, clock: 1, into: UnsafeMutableBufferPointer(rebasing: a[half...])),
                ]
                return try RequestHandle.waitAll(handles, timeout: .seconds(60))
            }
        }
        XCTAssertEqual(replies.count, 3)
        for reply in replies {
            guard case .pulled = reply else { return XCTFail("expected a pull reply, got \(reply)") }
        }
        XCTAssertEqual(first, [Float](repeating: -1, count: count))
        XCTAssertEqual(second, [Float](repeating: -1, count: count))
    }

    /// A fake server on 127.0.0.1:0 for one connection: it welcomes the client, then hands every request frame to
    /// `answer` until the client hangs up or `answer` returns false. Returns the port and a function that stops
    /// it and waits for its thread.
    func fakeServer(
        answer: @escaping @Sendable (FramedConnection, FrameHeader) -> Bool
    ) throws -> (port: UInt16, stop: () -> Void) {
        Signals.ignoreSIGPIPE()
        let listener = try Socket.listen(host: "127.0.0.1", port: 0)
        try listener.setReceiveTimeout(.seconds(30))
        let port = try listener.localPort()
        let served = LockedValue(false)
        Thread {
            defer { served.withLockAndBroadcast { $0 = true } }
            guard let (socket, peer) = try? listener.accept() else { return }
            let connection = FramedConnection(socket: socket, peer: peer)
            defer { connection.close() }
            let config = WelcomeConfig(
                job: nil, startStep: 0, shardCount: 1, shardMap: [""], tensors: [], heartbeatIntervalMillis: 1000,
                rejectsNonFinite: true)
            guard let (header, message) = try? connection.readMessage(), case .hello = message,
                let json = try? JSONEncoder().encode(config)
            else { return }
            try? connection.send(
                .welcome(Welcome(assignedID: 1, rank: -1, config: String(decoding: json, as: UTF8.self))),
                requestID: header.requestID)
            while let (request, _) = try? connection.readMessage(), answer(connection, request) {}
        }.start()
        return (
            port,
            {
                listener.shutdown()
                served.wait(until: MonotonicClock.deadline(afterSeconds: 30), while: { !$0 })
                listener.close()
            }
        )
    }

    /// A server that takes requests and never answers: `wait(timeout:)` gives up at its deadline (the socket's
    /// receive timeout is only a tick), fails the connection, and later requests say so.
    func test_wait_givesUpAtItsDeadline_whenTheServerNeverAnswers() throws {
        let server = try fakeServer { _, _ in true }
        defer { server.stop() }
        let client = try ParameterClient.connect(host: "127.0.0.1", port: server.port, role: .control, name: "t")
        defer { client.close() }
        let start = MonotonicClock.nanoseconds()
        XCTAssertThrowsError(try client.request(.status(StatusRequest())).wait(timeout: .milliseconds(400))) {
            error in
            guard case .timedOut? = error as? ClientError else { return XCTFail("\(error)") }
        }
        let waited = Double(MonotonicClock.nanoseconds() - start) / 1e9
        XCTAssertGreaterThanOrEqual(waited, 0.39)
        XCTAssertLessThan(waited, 10)
        XCTAssertTrue(client.isBroken)
        XCTAssertThrowsError(try client.request(.status(StatusRequest())).wait(timeout: .seconds(5)))
    }

    /// A server that dies in the middle of a reply: the request whose reply was cut off fails at once with the
    /// lost connection, not at its deadline with a timeout.
    func test_aReplyCutOffMidFrame_failsItsRequestAtOnce() throws {
        let server = try fakeServer { connection, request in
            // A header announcing 100 bytes of status reply, 10 of them, then the end.
            var bytes = [UInt8](repeating: 0, count: WireProtocol.headerSize + 10)
            bytes.withUnsafeMutableBytes { raw in
                FrameHeader(type: .statusReply, flags: .reply, payloadLength: 100, requestID: request.requestID)
                    .encode(into: UnsafeMutableRawBufferPointer(rebasing: raw[0..<WireProtocol.headerSize]))
            }
            bytes.withUnsafeBytes { try? connection.writeRawForTesting($0) }
            return false
        }
        defer { server.stop() }
        let client = try ParameterClient.connect(host: "127.0.0.1", port: server.port, role: .control, name: "t")
        defer { client.close() }
        let start = MonotonicClock.nanoseconds()
        XCTAssertThrowsError(try client.request(.status(StatusRequest())).wait(timeout: .seconds(30))) { error in
            guard case .connectionLost? = error as? ClientError else { return XCTFail("\(error)") }
        }
        XCTAssertLessThan(Double(MonotonicClock.nanoseconds() - start) / 1e9, 10, "waited for the deadline")
    }
}
