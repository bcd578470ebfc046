import PSWire
import XCTest

final class WireErrorTests: XCTestCase {
    func test_description_everyCase_namesItsNumbers() {
        let cases: [(WireError, ErrorCode, [String])] = [
            (.truncatedHeader(got: 10), .malformedFrame, ["10", "24"]),
            (.truncatedBody(expected: 36, got: 31), .malformedFrame, ["36", "31"]),
            (.badMagic(0x1234_5678), .malformedFrame, ["0x12345678", "0x53505753", "SWPS"]),
            (.unsupportedVersion(2), .unsupportedVersion, ["version 2", "version 1"]),
            (.frameTooLarge(length: 4_294_967_295, maximum: 536_870_912), .frameTooLarge, ["4294967295", "536870912"]),
            (.unknownMessageType(0x00ff), .unknownMessageType, ["0x00ff"]),
            (.payloadTooShort(type: .push, minimum: 24, got: 0), .malformedFrame, ["push", "24", "0"]),
            (.trailingBytes(type: .pull, count: 3), .malformedFrame, ["pull", "3"]),
            (.elementCountMismatch(type: .push, declared: 3, actual: 2), .lengthMismatch, ["push", "3", "2"]),
            (.misalignedPayload(type: .pullReply, floatBytes: 13), .lengthMismatch, ["pullReply", "13", "4"]),
            (.invalidUTF8(field: "hello.name"), .malformedFrame, ["hello.name"]),
            (
                .invalidField(type: .hello, field: "role", reason: "role 9 is not 1, 2 or 3"), .invalidArgument,
                ["hello", "role", "9"]
            ),
        ]
        for (error, code, words) in cases {
            XCTAssertEqual(error.code, code, "\(error)")
            for word in words {
                XCTAssertTrue(error.description.contains(word), "'\(error)' does not mention '\(word)'")
            }
        }
    }

    func test_description_elementCountMismatch_readsAsASentence() {
        XCTAssertEqual(
            WireError.elementCountMismatch(type: .push, declared: 3, actual: 2).description,
            "push declares 3 floats but its payload carries 2"
        )
        XCTAssertEqual(
            WireError.frameTooLarge(length: 600, maximum: 512).description,
            "frame payload of 600 bytes exceeds the maximum of 512 bytes"
        )
    }

    func test_errorCode_knownCodes_haveTheirContractNumbersAndNames() {
        let expected = [
            "malformedFrame", "unsupportedVersion", "unknownMessageType", "frameTooLarge", "unauthorized",
            "handshakeRequired", "unknownTensor", "unknownShard", "lengthMismatch", "nonFinite", "notRegistered",
            "registrationConflict", "invalidState", "timeout", "shuttingDown", "dataMismatch", "jobFull",
            "checkpointFailed", "invalidArgument", "internalError", "resourceExhausted",
        ]
        XCTAssertEqual(ErrorCode.allKnown.map(\.name), expected)
        XCTAssertEqual(ErrorCode.allKnown.map(\.rawValue), Array(1...21))
        XCTAssertEqual(ErrorCode.frameTooLarge.description, "frameTooLarge (4)")
    }

    func test_errorCode_unknownCode_isRepresentable() {
        let code = ErrorCode(rawValue: 999)
        XCTAssertFalse(code.isKnown)
        XCTAssertFalse(ErrorCode(rawValue: 0).isKnown)
        XCTAssertEqual(code.name, "unknown(999)")
        XCTAssertEqual(code.description, "unknown(999)")
    }
}
