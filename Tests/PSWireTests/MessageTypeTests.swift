import PSWire
import XCTest

final class MessageTypeTests: XCTestCase {
    func test_messageType_knownTypes_haveTheirContractCodes() {
        let expected: [(MessageType, UInt16, String, Bool)] = [
            (.hello, 0x01, "hello", false), (.welcome, 0x02, "welcome", true), (.reject, 0x03, "reject", true),
            (.error, 0x04, "error", true), (.challenge, 0x05, "challenge", true),
            (.authenticate, 0x06, "authenticate", false), (.register, 0x10, "register", false),
            (.registered, 0x11, "registered", true), (.push, 0x12, "push", false), (.pushAck, 0x13, "pushAck", true),
            (.pull, 0x14, "pull", false), (.pullReply, 0x15, "pullReply", true), (.pushPull, 0x16, "pushPull", false),
            (.exchange, 0x17, "exchange", false), (.exchangeReply, 0x18, "exchangeReply", true),
            (.clock, 0x20, "clock", false), (.clockAck, 0x21, "clockAck", true),
            (.heartbeat, 0x22, "heartbeat", false), (.heartbeatAck, 0x23, "heartbeatAck", true),
            (.metrics, 0x24, "metrics", false), (.metricsAck, 0x25, "metricsAck", true), (.leave, 0x26, "leave", false),
            (.leaveAck, 0x27, "leaveAck", true), (.status, 0x30, "status", false),
            (.statusReply, 0x31, "statusReply", true), (.checkpoint, 0x32, "checkpoint", false),
            (.checkpointReply, 0x33, "checkpointReply", true), (.shutdown, 0x34, "shutdown", false),
            (.shutdownAck, 0x35, "shutdownAck", true), (.export, 0x36, "export", false),
            (.exportReply, 0x37, "exportReply", true), (.serverJoin, 0x40, "serverJoin", false),
            (.serverJoined, 0x41, "serverJoined", true), (.serverCall, 0x42, "serverCall", false),
            (.serverCallReply, 0x43, "serverCallReply", true), (.sparsePull, 0x50, "sparsePull", false),
            (.sparsePullReply, 0x51, "sparsePullReply", true), (.sparsePush, 0x52, "sparsePush", false),
        ]
        XCTAssertEqual(MessageType.allKnown, expected.map(\.0))
        for (type, code, name, isReply) in expected {
            XCTAssertEqual(type.rawValue, code)
            XCTAssertEqual(type.name, name)
            XCTAssertEqual(type.isReply, isReply, name)
            XCTAssertTrue(type.isKnown)
            XCTAssertNotNil(type.minimumPayloadLength)
        }
        XCTAssertEqual(MessageType.push.description, "push (0x0012)")
    }

    func test_messageType_unknownCode_isRepresentable() {
        let type = MessageType(rawValue: 0x00ff)
        XCTAssertFalse(type.isKnown)
        XCTAssertFalse(type.isReply)
        XCTAssertNil(type.minimumPayloadLength)
        XCTAssertEqual(type.name, "unknown(0x00ff)")
        XCTAssertEqual(type.description, "unknown(0x00ff)")
    }

    func test_codeTypes_names_describeKnownAndUnknownValues() {
        XCTAssertEqual(PushStatus.appliedScaled.description, "appliedScaled")
        XCTAssertEqual(PushStatus(rawValue: 9).description, "unknown(9)")
        XCTAssertEqual(JobState.stopping.description, "stopping")
        XCTAssertEqual(LeaveReason.interrupted.description, "interrupted")
        XCTAssertEqual(Role.control.description, "control")
        XCTAssertEqual(Role.allCases.map(\.rawValue), [1, 2, 3])
    }
}
