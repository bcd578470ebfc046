import Foundation
import PSPosix
import PSSecurity
import PSServer
import PSTestSupport
import PSTransport
import PSWire
import XCTest

@testable import PSClient

/// Optional TLS (`--tls-cert`, `--tls-key`, `--tls-ca`) with certificates made by the `openssl` command.
final class TLSTests: XCTestCase {
    private func certificates() throws -> TestCertificates {
        guard let certificates = try TestCertificates.make() else {
            throw XCTSkip("no openssl command: cannot make test certificates")
        }
        return certificates
    }

    private func server(_ pki: TestCertificates, mutual: Bool = false, token: String? = "s3cret") throws
        -> ServerHarness
    {
        try ServerHarness(shards: 2) {
            $0.token = token
            $0.tls = TLSFiles(
                certificate: pki.serverCertificatePath, key: pki.serverKeyPath, ca: mutual ? pki.caPath : nil)
        }
    }

    private func client(
        _ harness: ServerHarness, tls: TLSContext?, token: String? = "s3cret"
    ) throws -> ParameterClient {
        try ParameterClient.connect(
            host: "127.0.0.1", port: harness.port, role: .worker, name: "tls", token: token,
            connectTimeout: .seconds(10), requestTimeout: .seconds(30), tls: tls)
    }

    func test_tls_registerPushPull_work_overAnEncryptedConnection() throws {
        let pki = try certificates()
        let harness = try server(pki)
        let tls = try XCTUnwrap(try TLSFiles(ca: pki.caPath).clientContext())
        let client = try client(harness, tls: tls)
        defer { client.close() }
        XCTAssertTrue(client.connection.isTLS)
        _ = try client.register(zeroTensors([1000]))
        // 1000 elements over 2 shards; a big push and pull cross several TLS records.
        let gradient = [Float](repeating: 0.5, count: 500)
        let ack = try gradient.withUnsafeBufferPointer {
            try client.push(shard: 1, clock: 0, baseVersion: 0, gradient: $0).wait()
        }
        guard case .message(.pushAck(let pushAck)) = ack else { return XCTFail("expected pushAck, got \(ack)") }
        XCTAssertEqual(pushAck.status, .applied)
        var weights = [Float](repeating: 1, count: 500)
        _ = try weights.withUnsafeMutableBufferPointer { try client.pull(shard: 1, clock: 0, into: $0).wait() }
        XCTAssertEqual(weights, [Float](repeating: -0.5, count: 500))  // sgd, lr 1: 0 - 1 * 0.5
    }

    /// Over TLS, replies may wait decrypted in the TLS layer where the socket shows nothing: four pipelined 1 MiB
    /// push-pulls (the earlier replies read in the background) must all land, and the server going away must
    /// still be seen by a client with nothing pending.
    func test_tls_pipelinedBigReplies_land_andAHangUpIsSeenWithoutAWaiter() throws {
        let pki = try certificates()
        let harness = try server(pki)
        let tls = try XCTUnwrap(try TLSFiles(ca: pki.caPath).clientContext())
        let client = try client(harness, tls: tls)
        defer { client.close() }
        let perShard = 1 << 18
        _ = try client.register(zeroTensors([2 * perShard]))
        let gradient = [Float](repeating: 1, count: perShard)
        var weights = [Float](repeating: 0, count: 4 * perShard)
        try gradient.withUnsafeBufferPointer { g in
            try weights.withUnsafeMutableBufferPointer { all in
                let handles = try (0..<4).map { round in
                    try client.pushPull(
                        shard: round % 2, clock: UInt64(round), baseVersion: 0, gradient: g,
                        into: UnsafeMutableBufferPointer(rebasing: all[(round * perShard)..<((round + 1) * perShard)]))
                }
                for handle in handles { _ = try handle.wait(timeout: .seconds(60)) }
            }
        }
        // Each shard took two pushes of 1 (sgd, lr 1): -1 after the first, -2 after the second.
        let rounds = (0..<4).map { Array(weights[($0 * perShard)..<(($0 + 1) * perShard)]) }
        XCTAssertEqual(rounds.map { $0[0] }, [-1, -1, -2, -2])
        XCTAssertEqual(rounds.map { Set($0).count }, [1, 1, 1, 1])
        harness.server.stop(exitCode: 0, reason: "test stops the server")
        let deadline = MonotonicClock.deadline(afterSeconds: 10)
        while !client.isBroken && MonotonicClock.nanoseconds() < deadline { usleep(10_000) }
        XCTAssertTrue(client.isBroken, "the TLS client did not notice the server's hang-up")
    }

    func test_plaintextClient_atATLSServer_isRefusedWithAReason() throws {
        let pki = try certificates()
        let harness = try server(pki)
        XCTAssertThrowsError(try client(harness, tls: nil)) {
            guard case ClientError.rejected(let code, let reason) = $0 else { return XCTFail("\($0)") }
            XCTAssertEqual(code, .unauthorized)
            XCTAssertTrue(reason.contains("requires TLS"), reason)
        }
        // The server goes on serving TLS clients.
        XCTAssertNoThrow(try client(harness, tls: try TLSFiles(ca: pki.caPath).clientContext()).close())
    }

    func test_tlsClient_atAPlaintextServer_failsWithATLSError() throws {
        let pki = try certificates()
        let harness = try ServerHarness(shards: 1)
        XCTAssertThrowsError(try client(harness, tls: try TLSFiles(ca: pki.caPath).clientContext())) {
            XCTAssertTrue("\($0)".contains("TLS"), "\($0)")
        }
    }

    func test_serverCertificateFromAnotherCA_isRefusedByTheClient() throws {
        let pki = try certificates()
        let harness = try server(pki)
        XCTAssertThrowsError(try client(harness, tls: try TLSFiles(ca: pki.otherCAPath).clientContext())) {
            XCTAssertTrue("\($0)".contains("certificate"), "\($0)")
        }
    }

    func test_mutualTLS_refusesAClientWithoutCertificate_andAdmitsOneWithIt() throws {
        let pki = try certificates()
        let harness = try server(pki, mutual: true)
        XCTAssertThrowsError(try client(harness, tls: try TLSFiles(ca: pki.caPath).clientContext())) {
            XCTAssertTrue("\($0)".contains("TLS") || "\($0)".contains("closed"), "\($0)")
        }
        let withCertificate = try TLSFiles(
            certificate: pki.clientCertificatePath, key: pki.clientKeyPath, ca: pki.caPath
        ).clientContext()
        let client = try client(harness, tls: withCertificate)
        XCTAssertTrue(client.connection.isTLS)
        client.close()
    }

    func test_serverThatClosesDuringTheTLSHandshake_failsTheClientPromptly() throws {
        let pki = try certificates()
        let listener = try Socket.listen(host: "127.0.0.1", port: 0)
        let port = try listener.localPort()
        let server = TestThread(name: "closing-server") {
            defer { listener.close() }
            let (socket, _) = try listener.accept()
            socket.close()  // before any TLS byte is answered
        }
        let tls = try XCTUnwrap(try TLSFiles(ca: pki.caPath).clientContext())
        // Before the fix the client's write retried a zero-byte write for ever: bounded here by the join.
        let client = TestThread(name: "tls-client") { () -> String in
            do {
                _ = try ParameterClient.connect(
                    host: "127.0.0.1", port: port, role: .control, name: "c", connectTimeout: .seconds(5), tls: tls)
                return "connected"
            } catch {
                return "\(error)"
            }
        }
        let outcome = try client.join(timeout: .seconds(20))
        XCTAssertNotEqual(outcome, "connected")
        try server.join()
    }

    func test_tlsFiles_badCombinationsAndFiles_areRefused() throws {
        XCTAssertNotNil(TLSFiles(certificate: "a.pem").problem(server: true))
        XCTAssertNotNil(TLSFiles(ca: "ca.pem").problem(server: true))
        XCTAssertNil(TLSFiles(ca: "ca.pem").problem(server: false))
        XCTAssertThrowsError(try TLSFiles(ca: "/nonexistent/ca.pem").clientContext()) {
            XCTAssertTrue("\($0)".contains("/nonexistent/ca.pem"), "\($0)")
        }
    }
}
