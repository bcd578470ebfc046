import Foundation
import PSClient
import PSPosix
import PSSecurity
import PSServer
import PSTransport
import PSWire
import XCTest

/// The handshake's challenge-response (proto-docs/protocol.md, "challenge"): the token never travels, so a
/// captured handshake does not log in again, and a wrong token gets one try per connection.
final class ChallengeResponseTests: XCTestCase {
    private func connect(_ harness: ServerHarness) throws -> FramedConnection {
        let connection = try harness.rawConnection()
        try connection.setReceiveTimeout(.seconds(10))
        return connection
    }

    /// Sends hello and returns the server's challenge nonce.
    private func challenge(_ connection: FramedConnection, name: String = "w") throws -> [UInt8] {
        try connection.send(.hello(Hello(role: .control, name: name)), requestID: 1)
        guard case .challenge(let challenge)? = try connection.readMessage()?.message else {
            throw ClientError.protocolViolation("expected challenge")
        }
        return challenge.nonce
    }

    /// Reads until the server closes; returns what it sent on the way.
    private func messagesUntilClosed(_ connection: FramedConnection) -> [Message] {
        var messages: [Message] = []
        while let reply = try? connection.readMessage() { messages.append(reply.message) }
        return messages
    }

    func test_capturedHelloAndAnswer_replayedOnANewConnection_isRefused() throws {
        let harness = try ServerHarness(shards: 1) { $0.token = "s3cret" }
        // The legitimate handshake, as an eavesdropper records it.
        let first = try connect(harness)
        let nonce = try challenge(first)
        let captured = Authenticate(mac: Crypto.hmacSHA256(token: "s3cret", message: nonce))
        try first.send(.authenticate(captured), requestID: 1)
        guard case .welcome? = try first.readMessage()?.message else { return XCTFail("expected welcome") }
        first.close()
        // The replay: same hello, same answer, on a new connection. The nonce is new, so the answer is wrong.
        let replay = try connect(harness)
        let secondNonce = try challenge(replay)
        XCTAssertNotEqual(secondNonce, nonce)
        try replay.send(.authenticate(captured), requestID: 1)
        let messages = messagesUntilClosed(replay)
        guard case .reject(let reject)? = messages.first else { return XCTFail("expected reject, got \(messages)") }
        XCTAssertEqual(reject.code, .unauthorized)
        XCTAssertEqual(messages.count, 1, "the server closes after the reject: \(messages)")
    }

    func test_wrongToken_isRejectedAndClosed_oneTryPerConnection() throws {
        let harness = try ServerHarness(shards: 1) { $0.token = "s3cret" }
        let connection = try connect(harness)
        let nonce = try challenge(connection)
        try connection.send(
            .authenticate(Authenticate(mac: Crypto.hmacSHA256(token: "s3creT", message: nonce))), requestID: 1)
        let messages = messagesUntilClosed(connection)
        XCTAssertEqual(messages, [.reject(Reject(code: .unauthorized, reason: "wrong token"))])
    }

    func test_client_withoutToken_atAServerWithOne_isToldATokenIsRequired() throws {
        let harness = try ServerHarness(shards: 1) { $0.token = "s3cret" }
        XCTAssertThrowsError(try harness.client(token: nil)) {
            guard case ClientError.rejected(let code, let reason) = $0 else { return XCTFail("\($0)") }
            XCTAssertEqual(code, .unauthorized)
            XCTAssertTrue(reason.contains("requires a token"), reason)
        }
        XCTAssertNoThrow(try harness.client(token: "s3cret").close())
    }

    func test_frameOtherThanAuthenticate_afterTheChallenge_isRefusedAndClosed() throws {
        let harness = try ServerHarness(shards: 1) { $0.token = "s3cret" }
        let connection = try connect(harness)
        _ = try challenge(connection)
        try connection.send(.status(StatusRequest()), requestID: 2)
        let messages = messagesUntilClosed(connection)
        guard case .error(let error)? = messages.first, messages.count == 1 else { return XCTFail("\(messages)") }
        XCTAssertEqual(error.code, .handshakeRequired)
    }

    func test_unansweredChallenge_isClosedAtTheHandshakeDeadline() throws {
        let harness = try ServerHarness(shards: 1) {
            $0.token = "s3cret"
            $0.handshakeTimeoutSeconds = 0.3
        }
        let connection = try connect(harness)
        _ = try challenge(connection)
        let messages = messagesUntilClosed(connection)
        guard case .error(let error)? = messages.first, messages.count == 1 else { return XCTFail("\(messages)") }
        XCTAssertEqual(error.code, .timeout)
    }

    func test_tokenlessServer_welcomesWithoutChallenge_andRefusesAStrayAuthenticate() throws {
        let harness = try ServerHarness(shards: 1)
        // A client configured with a token still connects: no challenge comes, nothing secret is sent.
        XCTAssertNoThrow(try harness.client(token: "s3cret").close())
        // authenticate as the first frame is not a handshake.
        let early = try connect(harness)
        try early.send(.authenticate(Authenticate(mac: [UInt8](repeating: 0, count: 32))), requestID: 1)
        guard case .error(let refused)? = messagesUntilClosed(early).first else { return XCTFail("expected error") }
        XCTAssertEqual(refused.code, .handshakeRequired)
        // After welcome it is a request out of place: error, and the connection stays usable.
        let connection = try connect(harness)
        try connection.send(.hello(Hello(role: .control, name: "c")), requestID: 1)
        guard case .welcome? = try connection.readMessage()?.message else { return XCTFail("expected welcome") }
        try connection.send(.authenticate(Authenticate(mac: [UInt8](repeating: 0, count: 32))), requestID: 2)
        guard case .error(let error)? = try connection.readMessage()?.message else { return XCTFail("expected error") }
        XCTAssertEqual(error.code, .invalidState)
        try connection.send(.status(StatusRequest()), requestID: 3)
        guard case .statusReply? = try connection.readMessage()?.message else { return XCTFail("expected status") }
        connection.close()
    }
}
