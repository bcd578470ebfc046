import PSSecurity
import PSWire
import XCTest

/// The handshake's challenge-response: the documented example is what OpenSSL computes, and the codec refuses
/// what a challenge or an answer may not be.
final class ChallengeTests: XCTestCase {
    func test_documentedAnswer_isHMACSHA256OfTheNonceUnderTheToken() {
        XCTAssertEqual(Crypto.hmacSHA256(token: "s3cret", message: Golden.challengeNonce), Golden.challengeAnswer)
    }

    func test_hmacSHA256_matchesRFC4231TestCase2() {
        // RFC 4231, test case 2: key "Jefe", data "what do ya want for nothing?".
        let tag = Crypto.hmacSHA256(key: Array("Jefe".utf8), message: Array("what do ya want for nothing?".utf8))
        XCTAssertEqual(tag, Golden.hexBytes("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"))
    }

    func test_constantTimeEquals_comparesContentAndLength() {
        XCTAssertTrue(Crypto.constantTimeEquals([1, 2, 3], [1, 2, 3]))
        XCTAssertFalse(Crypto.constantTimeEquals([1, 2, 3], [1, 2, 4]))
        XCTAssertFalse(Crypto.constantTimeEquals([1, 2, 3], [1, 2]))
        XCTAssertTrue(Crypto.constantTimeEquals([], []))
    }

    func test_randomBytes_differEveryCall() {
        let a = Crypto.randomBytes(count: Challenge.size)
        let b = Crypto.randomBytes(count: Challenge.size)
        XCTAssertEqual(a.count, 32)
        XCTAssertNotEqual(a, b)
    }

    func test_decodeChallenge_unknownAlgorithm_throwsInvalidField() {
        var payload = MessageCodec.encodePayload(.challenge(Challenge(nonce: Golden.challengeNonce)))
        payload[0] = 2
        XCTAssertThrowsError(try MessageCodec.decodePayload(type: .challenge, bytes: payload)) { error in
            guard case WireError.invalidField(_, let field, _) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(field, "algorithm")
        }
    }

    func test_decodeAuthenticate_shortOrLongTag_isRefused() {
        XCTAssertThrowsError(
            try MessageCodec.decodePayload(type: .authenticate, bytes: [UInt8](repeating: 1, count: 31)))
        XCTAssertThrowsError(
            try MessageCodec.decodePayload(type: .authenticate, bytes: [UInt8](repeating: 1, count: 33)))
    }
}
