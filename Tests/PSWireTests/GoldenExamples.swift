import Foundation
import PSWire
import XCTest

/// One example frame of proto-docs/protocol.md: the message, the request id it is sent with, its ```hex block name.
struct GoldenExample {
    var requestID: UInt64
    var message: Message

    var name: String { message.type.name }
    var key: String { "\(name) requestID=\(requestID)" }
    var frame: [UInt8] { MessageCodec.encodeFrame(message, requestID: requestID) }
}

/// A ```hex block found in the protocol document.
struct DocHexBlock {
    var name: String
    var requestID: UInt64
    var bytes: [UInt8]
    var line: Int

    var key: String { "\(name) requestID=\(requestID)" }
}

enum Golden {
    /// The example challenge's nonce: the bytes 0x00 ... 0x1f (a real one is random).
    static let challengeNonce: [UInt8] = Array(0..<32)
    /// HMAC-SHA256 of ``challengeNonce`` under the token "s3cret" (checked against OpenSSL in `ChallengeTests`,
    /// and equal to `openssl dgst -sha256 -hmac s3cret` of the nonce's bytes).
    static let challengeAnswer: [UInt8] = hexBytes(
        "336266fe4a9c85bad2b0189849d662fd93934ca115f67b8d98d972bae8cd3082")

    static func hexBytes(_ hex: String) -> [UInt8] {
        let digits = Array(hex.utf8)
        return stride(from: 0, to: digits.count, by: 2).map {
            UInt8(String(decoding: digits[$0..<$0 + 2], as: UTF8.self), radix: 16)!
        }
    }

    /// The messages the examples in proto-docs/protocol.md must decode to, in the document's order.
    ///
    /// One small model runs through them: `fc1.weight` [2, 3] and `fc1.bias` [3], 9 elements over 3 shards of 3.
    static let examples: [GoldenExample] = [
        // A worker's connection.
        GoldenExample(requestID: 1, message: .hello(Hello(role: .worker, name: "worker-0"))),
        // A server with token "s3cret" challenges it; the worker answers HMAC-SHA256("s3cret", nonce).
        GoldenExample(requestID: 1, message: .challenge(Challenge(nonce: challengeNonce))),
        GoldenExample(requestID: 1, message: .authenticate(Authenticate(mac: challengeAnswer))),
        GoldenExample(
            requestID: 1,
            message: .welcome(Welcome(assignedID: 7, rank: 0, config: #"{"shardCount":3,"startStep":0}"#))
        ),
        GoldenExample(requestID: 1, message: .reject(Reject(code: .unauthorized, reason: "wrong token"))),
        GoldenExample(
            requestID: 2,
            message: .register(
                Register(tensors: [
                    TensorSpec(name: "fc1.weight", shape: [2, 3], initializer: .glorotUniform(seed: 1001)),
                    TensorSpec(name: "fc1.bias", shape: [3], initializer: .zeros),
                ])
            )
        ),
        GoldenExample(
            requestID: 2,
            message: .registered(Registered(shardElements: [3, 3, 3], tensorCount: 2, totalElements: 9))
        ),
        GoldenExample(
            requestID: 7,
            message: .push(Push(shard: 1, clock: 4, baseVersion: 3, floats: [0.5, -1.0, 2.0]))
        ),
        GoldenExample(
            requestID: 7,
            message: .pushAck(PushAck(shard: 1, status: .applied, version: 4, staleness: 0))
        ),
        GoldenExample(requestID: 8, message: .pull(Pull(shard: 1, clock: 5))),
        GoldenExample(
            requestID: 8,
            message: .pullReply(PullReply(shard: 1, version: 4, floats: [0.125, -0.75, 1.0]))
        ),
        GoldenExample(
            requestID: 9,
            message: .pushPull(Push(shard: 2, clock: 5, baseVersion: 4, floats: [0.25, 0.0, -0.5]))
        ),
        GoldenExample(
            requestID: 12,
            message: .exchange(
                Exchange(
                    prefix: ExchangePrefix(
                        rank: 1, clock: 5, loss: 0.5, samples: 64, baseVersions: [5, 5], count: 0),
                    gradient: [0.25, -0.5, 1.0]))
        ),
        // The same step compressed (proto-docs, "Compressed gradients"): fp16, then top-k 0.5 over shards of 1 and 2.
        GoldenExample(
            requestID: 16,
            message: .exchange(
                Exchange(
                    prefix: ExchangePrefix(
                        rank: 1, clock: 5, loss: 0.5, samples: 64, baseVersions: [5, 5], count: 3, encoding: .fp16),
                    compressed: [0x00, 0x34, 0x00, 0xb8, 0x00, 0x3c]))
        ),
        GoldenExample(
            requestID: 17,
            message: .exchange(
                Exchange(
                    prefix: ExchangePrefix(
                        rank: 1, clock: 5, loss: 0.5, samples: 64, baseVersions: [5, 5], count: 3, encoding: .topK),
                    compressed: [
                        1, 0, 0, 0, 0, 0, 0, 0, 0x00, 0x00, 0x80, 0x3e, 1, 0, 0, 0, 1, 0, 0, 0, 0x00, 0x00, 0x80, 0x3f,
                    ]
                ))
        ),
        GoldenExample(
            requestID: 12,
            message: .exchangeReply(
                ExchangeReply(
                    prefix: ExchangeReplyPrefix(jobState: .running, minClock: 6, versions: [6, 6], count: 0),
                    weights: [0.125, -0.75, 1.0]))
        ),
        GoldenExample(
            requestID: 16,
            message: .exchangeReply(
                ExchangeReply(
                    prefix: ExchangeReplyPrefix(
                        jobState: .running, minClock: 6, versions: [6, 6], count: 3, encoding: .bf16),
                    compressed: [0x00, 0x3e, 0x40, 0xbf, 0x80, 0x3f]))
        ),
        GoldenExample(
            requestID: 10,
            message: .error(
                ErrorMessage(code: .unknownShard, message: "shard 5 does not exist (the server has 3 shards)"))
        ),
        GoldenExample(
            requestID: 11,
            message: .clock(ClockReport(rank: 0, clock: 5, loss: 0.6931471805599453, samples: 320))
        ),
        GoldenExample(requestID: 11, message: .clockAck(ClockAck(jobState: .running, minClock: 4))),
        GoldenExample(requestID: 12, message: .heartbeat(Heartbeat(rank: 0, clock: 5))),
        GoldenExample(requestID: 12, message: .heartbeatAck(HeartbeatAck(jobState: .running))),
        GoldenExample(
            requestID: 13,
            message: .metrics(EpochMetrics(epoch: 0, testLoss: 0.25, testAccuracy: 0.9375, samples: 1797))
        ),
        GoldenExample(requestID: 13, message: .metricsAck),
        GoldenExample(requestID: 14, message: .leave(Leave(rank: 0, reason: .finished))),
        GoldenExample(requestID: 14, message: .leaveAck),
        // psctl's connection (after its own hello).
        GoldenExample(requestID: 2, message: .status(StatusRequest())),
        GoldenExample(
            requestID: 2,
            message: .statusReply(StatusReply(json: #"{"state":"running","step":5,"workers":2}"#))
        ),
        GoldenExample(requestID: 3, message: .checkpoint(CheckpointRequest(wait: true))),
        GoldenExample(
            requestID: 3,
            message: .checkpointReply(CheckpointReply(step: 5, durable: true, path: "/ckpt/step-0000000005"))
        ),
        GoldenExample(requestID: 4, message: .export(ExportRequest(path: "/tmp/model"))),
        GoldenExample(requestID: 4, message: .exportReply(ExportReply(step: 5, path: "/tmp/model"))),
        // A joined server's connection to the coordinator.
        GoldenExample(requestID: 1, message: .serverJoin(ServerJoin(shards: 2, advertise: "10.0.0.2:7001"))),
        GoldenExample(
            requestID: 1,
            message: .serverJoined(
                ServerJoined(
                    serverIndex: 1,
                    config: #"{"servers":[{"address":"10.0.0.1:7000","shards":1},"#
                        + #"{"address":"10.0.0.2:7001","shards":2}]}"#))),
        // A joined server's server link.
        GoldenExample(
            requestID: 8,
            message: .serverCall(
                ServerCall(
                    header: #"{"part":{"gather":43,"optimizerStep":42,"server":1,"versions":[42]}}"#,
                    floats: [0.5, -1]))),
        GoldenExample(
            requestID: 7,
            message: .serverCallReply(
                ServerCall(
                    header: #"{"entries":{"entries":[{"exitCode":0,"kind":"release","ranks":[0,1],"reason":"","#
                        + #""sequence":42,"step":41}]}}"#))),
        // Row-sparse tables.
        GoldenExample(requestID: 10, message: .sparsePull(SparsePull(table: 0, clock: 5, ids: [3, 17, UInt32.max]))),
        GoldenExample(
            requestID: 10,
            message: .sparsePullReply(SparsePullReply(table: 0, width: 2, values: [0.5, -1, 0.25, 0, 2, -0.5]))),
        GoldenExample(
            requestID: 11,
            message: .sparsePush(SparsePush(table: 0, clock: 5, ids: [3, 17], values: [0.5, -1, 2, 0.25]))
        ),
        GoldenExample(requestID: 5, message: .shutdown()),
        GoldenExample(requestID: 5, message: .shutdownAck),
    ]

    /// The protocol document: three directories up from this file is the package root.
    static let protocolDocumentPath: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.appendingPathComponent("proto-docs/protocol.md").path
    }()

    /// Every ```hex block of the protocol document, with its name and request id.
    static func documentHexBlocks() throws -> [DocHexBlock] {
        let text = try String(contentsOfFile: protocolDocumentPath, encoding: .utf8)
        return try parseHexBlocks(text)
    }

    struct ParseError: Error, CustomStringConvertible {
        var description: String
    }

    /// Parses blocks opened by ```` ```hex <name> requestID=<n> ```` and closed by ```` ``` ````.
    static func parseHexBlocks(_ text: String) throws -> [DocHexBlock] {
        var blocks: [DocHexBlock] = []
        var current: DocHexBlock?
        for (index, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = rawLine.trimmingCharacters(in: .whitespaces)
            if var block = current {
                if line == "```" {
                    blocks.append(block)
                    current = nil
                    continue
                }
                for token in line.split(separator: " ") {
                    guard token.count == 2, let byte = UInt8(token, radix: 16) else {
                        throw ParseError(description: "line \(index + 1): '\(token)' is not a hex byte")
                    }
                    block.bytes.append(byte)
                }
                current = block
            } else if line.hasPrefix("```hex") {
                let words = line.dropFirst(3).split(separator: " ")
                guard words.count == 3, words[2].hasPrefix("requestID="),
                    let requestID = UInt64(words[2].dropFirst("requestID=".count))
                else {
                    throw ParseError(description: "line \(index + 1): expected ```hex <name> requestID=<n>")
                }
                current = DocHexBlock(name: String(words[1]), requestID: requestID, bytes: [], line: index + 1)
            }
        }
        if let current { throw ParseError(description: "line \(current.line): unterminated hex block") }
        return blocks
    }

    /// The bytes as the document shows them: a ```hex block, 16 space-separated bytes per line.
    static func hexBlock(_ bytes: [UInt8], name: String, requestID: UInt64) -> String {
        var lines = ["```hex \(name) requestID=\(requestID)"]
        var index = 0
        while index < bytes.count {
            let row = bytes[index..<min(index + 16, bytes.count)]
            lines.append(row.map { String(format: "%02x", $0) }.joined(separator: " "))
            index += 16
        }
        lines.append("```")
        return lines.joined(separator: "\n")
    }
}

extension MessageCodec {
    /// `decodePayload` over an array, for tests.
    static func decodePayload(type: MessageType, bytes: [UInt8]) throws(WireError) -> Message {
        let result = bytes.withUnsafeBytes { raw in
            Result { () throws(WireError) in try decodePayload(type: type, raw) }
        }
        return try result.get()
    }

    /// `decodeFrame` over an array, for tests.
    static func decodeFrame(bytes: [UInt8], maxPayloadBytes: Int = WireProtocol.defaultMaxPayloadBytes)
        throws(WireError) -> Frame
    {
        let result = bytes.withUnsafeBytes { raw in
            Result { () throws(WireError) in try decodeFrame(raw, maxPayloadBytes: maxPayloadBytes) }
        }
        return try result.get()
    }
}

/// Asserts that `body` throws exactly `expected`.
func assertThrows<T>(
    _ expected: WireError,
    file: StaticString = #filePath,
    line: UInt = #line,
    _ body: () throws -> T
) {
    do {
        let value = try body()
        XCTFail("expected \(expected), got the value \(value)", file: file, line: line)
    } catch {
        XCTAssertEqual(error as? WireError, expected, file: file, line: line)
    }
}
