import PSWire
import XCTest

/// proto-docs/protocol.md is the golden source: its hex examples must be exactly what the codec reads and writes.
final class ProtocolDocTests: XCTestCase {
    func test_document_everyHexBlock_decodesToItsExpectedMessageAndReencodesToTheSameBytes() throws {
        let blocks = try Golden.documentHexBlocks()
        let expected = Dictionary(Golden.examples.map { ($0.key, $0) }, uniquingKeysWith: { first, _ in first })
        XCTAssertFalse(blocks.isEmpty, "no ```hex block in \(Golden.protocolDocumentPath)")
        for block in blocks {
            guard let example = expected[block.key] else {
                XCTFail("protocol.md line \(block.line): no expected message for '\(block.key)'")
                continue
            }
            do {
                let frame = try MessageCodec.decodeFrame(bytes: block.bytes)
                XCTAssertEqual(frame.message, example.message, "protocol.md line \(block.line): \(block.key)")
                XCTAssertEqual(frame.header.requestID, block.requestID, "line \(block.line)")
                XCTAssertEqual(frame.header.flags, example.message.isReply ? .reply : [], "line \(block.line)")
            } catch {
                XCTFail("protocol.md line \(block.line): \(block.key) does not decode: \(error)")
            }
            XCTAssertEqual(
                block.bytes,
                example.frame,
                "protocol.md line \(block.line): encoding gives\n"
                    + Golden.hexBlock(example.frame, name: example.name, requestID: example.requestID)
            )
        }
    }

    func test_document_everyGoldenExample_appearsExactlyOnce() throws {
        let blocks = try Golden.documentHexBlocks()
        for example in Golden.examples {
            let matches = blocks.filter { $0.key == example.key }
            XCTAssertEqual(
                matches.count,
                1,
                "protocol.md must hold this block exactly once:\n"
                    + Golden.hexBlock(example.frame, name: example.name, requestID: example.requestID)
            )
        }
    }

    func test_document_everyKnownMessageType_hasAHexExample() throws {
        let names = Set(try Golden.documentHexBlocks().map(\.name))
        for type in MessageType.allKnown {
            XCTAssertTrue(names.contains(type.name), "protocol.md has no ```hex \(type.name) example")
        }
    }

    func test_document_hexBlocks_holdSixteenBytesPerLine() throws {
        let text = try String(contentsOfFile: Golden.protocolDocumentPath, encoding: .utf8)
        var inBlock = false
        var lastLineLength = 16
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("```hex") {
                inBlock = true
                lastLineLength = 16
            } else if inBlock && line == "```" {
                inBlock = false
            } else if inBlock {
                XCTAssertEqual(lastLineLength, 16, "only a block's last line may be short: \(line)")
                lastLineLength = line.split(separator: " ").count
                XCTAssertLessThanOrEqual(lastLineLength, 16, "more than 16 bytes on a line: \(line)")
            }
        }
    }

    func test_document_errorCodeTable_listsEveryCodeWithItsName() throws {
        let text = try String(contentsOfFile: Golden.protocolDocumentPath, encoding: .utf8)
        for code in ErrorCode.allKnown {
            XCTAssertTrue(text.contains("| \(code.rawValue) | `\(code.name)` |"), "error code \(code) not in the table")
        }
    }

    func test_document_messageTypeTable_listsEveryTypeWithItsCode() throws {
        let text = try String(contentsOfFile: Golden.protocolDocumentPath, encoding: .utf8)
        for type in MessageType.allKnown {
            let code =
                "0x" + String(repeating: "0", count: 4 - String(type.rawValue, radix: 16).count)
                + String(type.rawValue, radix: 16)
            XCTAssertTrue(text.contains("| \(code) | `\(type.name)` |"), "message type \(type) not in the table")
        }
    }
}
