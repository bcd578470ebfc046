import Foundation
import PSClient
import PSMath
import PSPosix
import PSServer
import PSTestSupport
import PSTransport
import PSWire
import XCTest

final class ParameterServerTests: XCTestCase {
    /// ps-lite's test_kv_app oracle: W clients each push known vectors R times to every shard with SGD lr = 1;
    /// the final pull equals minus the exact sum of everything pushed.
    func exactnessOracle(clients: Int, shards: Int, rounds: Int = 50) throws {
        let harness = try ServerHarness(shards: shards)
        let sizes = [1000, 37, 4096]
        let setup = try harness.client(name: "setup")
        _ = try setup.register(zeroTensors(sizes))
        let total = sizes.reduce(0, +)
        let layout = ShardLayout(tensorElementCounts: sizes, shardCount: shards)
        let errors = LockedValue<[String]>([])
        let group = DispatchGroup()
        for w in 0..<clients {
            group.enter()
            let port = harness.port
            Thread {
                defer { group.leave() }
                do {
                    let client = try ParameterClient.connect(
                        host: "127.0.0.1", port: port, role: .worker, name: "w\(w)")
                    // Pushes are exactly representable multiples of 2^-6, so float sums are exact.
                    let gradient = (0..<total).map { Float(($0 % 7) + w + 1) / 64 }
                    for round in 0..<rounds {
                        var handles: [RequestHandle] = []
                        try gradient.withUnsafeBufferPointer { flat in
                            for s in 0..<shards {
                                handles.append(
                                    try client.push(
                                        shard: s, clock: UInt64(round), baseVersion: 0,
                                        gradient: UnsafeBufferPointer(rebasing: flat[layout.range(ofShard: s)])))
                            }
                        }
                        for handle in handles { _ = try handle.wait() }
                    }
                    client.close()
                } catch {
                    errors.withLock { $0.append("client \(w): \(error)") }
                }
            }.start()
        }
        XCTAssertEqual(group.wait(timeout: .now() + 120), .success)
        XCTAssertEqual(errors.withLock { $0 }, [])
        var pulled = [Float](repeating: .nan, count: total)
        try pulled.withUnsafeMutableBufferPointer { flat in
            for s in 0..<shards {
                let reply = try setup.pull(
                    shard: s, clock: 0, into: UnsafeMutableBufferPointer(rebasing: flat[layout.range(ofShard: s)])
                ).wait()
                guard case .pulled(_, let version) = reply else { return XCTFail("expected a pull reply") }
                XCTAssertEqual(version, UInt64(clients * rounds))
            }
        }
        for i in 0..<total {
            var expected: Float = 0
            for w in 0..<clients { expected -= Float(rounds) * Float((i % 7) + w + 1) / 64 }
            XCTAssertEqual(pulled[i], expected, accuracy: 1e-5, "element \(i)")
            if abs(pulled[i] - expected) > 1e-5 { break }
        }
    }

    func test_exactness_oneClient_oneShard() throws { try exactnessOracle(clients: 1, shards: 1) }
    func test_exactness_twoClients_fourShards() throws { try exactnessOracle(clients: 2, shards: 4) }
    func test_exactness_eightClients_oneShard() throws { try exactnessOracle(clients: 8, shards: 1) }
    func test_exactness_eightClients_fourShards() throws { try exactnessOracle(clients: 8, shards: 4) }

    func test_register_sameShapeTwice_isIdempotent() throws {
        let harness = try ServerHarness(shards: 2)
        let client = try harness.client()
        let first = try client.register(zeroTensors([10, 5]))
        let second = try client.register(zeroTensors([10, 5]))
        XCTAssertEqual(first, second)
        XCTAssertEqual(first.totalElements, 15)
    }

    func test_register_differentShape_namesBothShapes() throws {
        let harness = try ServerHarness(shards: 2)
        let client = try harness.client()
        _ = try client.register([TensorSpec(name: "w", shape: [4, 3], initializer: .zeros)])
        XCTAssertThrowsError(try client.register([TensorSpec(name: "w", shape: [3, 4], initializer: .zeros)])) {
            guard case ClientError.remote(let code, let message) = $0 else { return XCTFail("\($0)") }
            XCTAssertEqual(code, .registrationConflict)
            XCTAssertTrue(message.contains("[4, 3]") && message.contains("[3, 4]"), message)
        }
    }

    func test_register_overMaxModelBytes_isResourceExhausted_andTheServerKeepsServing() throws {
        let harness = try ServerHarness(shards: 2) { $0.maxModelBytes = 64 << 10 }
        let client = try harness.client()
        XCTAssertThrowsError(try client.register(zeroTensors([1 << 20]))) {
            guard case ClientError.remote(let code, let message) = $0 else { return XCTFail("\($0)") }
            XCTAssertEqual(code, .resourceExhausted)
            XCTAssertTrue(message.contains("--max-model-bytes 65536"), message)
        }
        // Nothing was registered; a model that fits is accepted on the same connection.
        XCTAssertEqual(try client.register(zeroTensors([100])).totalElements, 100)
    }

    func test_push_beforeRegistration_isRefused() throws {
        let harness = try ServerHarness(shards: 1)
        let client = try harness.client()
        let gradient: [Float] = [1, 2, 3]
        XCTAssertThrowsError(
            try gradient.withUnsafeBufferPointer {
                try client.push(shard: 0, clock: 0, baseVersion: 0, gradient: $0).wait()
            }
        ) {
            guard case ClientError.remote(let code, _) = $0 else { return XCTFail("\($0)") }
            XCTAssertEqual(code, .notRegistered)
        }
    }

    func test_push_validationErrors_applyNothing_andKeepTheConnection() throws {
        let harness = try ServerHarness(shards: 2)
        let client = try harness.client()
        _ = try client.register(zeroTensors([8]))
        func expectError(
            _ code: ErrorCode, shard: Int, _ values: [Float], file: StaticString = #filePath,
            line: UInt = #line
        ) {
            XCTAssertThrowsError(
                try values.withUnsafeBufferPointer {
                    try client.push(shard: shard, clock: 0, baseVersion: 0, gradient: $0).wait()
                }, file: file, line: line
            ) {
                guard case ClientError.remote(let got, let message) = $0 else { return XCTFail("\($0)") }
                XCTAssertEqual(got, code, message, file: file, line: line)
            }
        }
        expectError(.unknownShard, shard: 5, [1, 2, 3, 4])
        expectError(.lengthMismatch, shard: 0, [1, 2, 3])
        expectError(.nonFinite, shard: 0, [1, .nan, 3, 4])
        expectError(.nonFinite, shard: 1, [1, 2, .infinity, 4])
        // Nothing was applied, and the same connection still works.
        var weights = [Float](repeating: -1, count: 4)
        for shard in 0..<2 {
            let reply = try weights.withUnsafeMutableBufferPointer {
                try client.pull(shard: shard, clock: 0, into: $0).wait()
            }
            guard case .pulled(_, let version) = reply else { return XCTFail("expected pulled") }
            XCTAssertEqual(version, 0)
            XCTAssertEqual(weights, [0, 0, 0, 0])
        }
    }

    func test_pushPull_returnsWeightsAfterThePush() throws {
        let harness = try ServerHarness(shards: 1)
        let client = try harness.client()
        _ = try client.register(zeroTensors([4]))
        let gradient: [Float] = [1, 2, 3, 4]
        var weights = [Float](repeating: 0, count: 4)
        let reply = try gradient.withUnsafeBufferPointer { g in
            try weights.withUnsafeMutableBufferPointer { w in
                try client.pushPull(shard: 0, clock: 0, baseVersion: 0, gradient: g, into: w).wait()
            }
        }
        guard case .pulled(_, let version) = reply else { return XCTFail("expected pulled") }
        XCTAssertEqual(version, 1)
        XCTAssertEqual(weights, [-1, -2, -3, -4])
    }

    func test_malformedFrame_onOneConnection_doesNotDisturbAnother() throws {
        let harness = try ServerHarness(shards: 1)
        let good = try harness.client(name: "good")
        _ = try good.register(zeroTensors([16]))
        let bad = try harness.rawConnection()
        var garbage = [UInt8](repeating: 0xAB, count: 64)
        try garbage.withUnsafeMutableBytes { try bad.writeRawForTesting(UnsafeRawBufferPointer($0)) }
        // The bad connection gets an error frame, then is closed.
        let reply = try bad.readMessage()
        if case .error(let error)? = reply?.message {
            XCTAssertEqual(error.code, .malformedFrame)
        } else {
            XCTFail("expected an error frame, got \(String(describing: reply))")
        }
        XCTAssertNil(try? bad.readMessage())
        bad.close()
        let gradient = [Float](repeating: 1, count: 16)
        _ = try gradient.withUnsafeBufferPointer {
            try good.push(shard: 0, clock: 0, baseVersion: 0, gradient: $0).wait()
        }
    }

    func test_unknownMessageType_getsErrorAndConnectionStays() throws {
        let harness = try ServerHarness(shards: 1)
        let connection = try harness.rawConnection()
        try connection.send(.hello(Hello(role: .control, maxVersion: 1, name: "raw")), requestID: 1)
        guard case .welcome? = try connection.readMessage()?.message else { return XCTFail("expected welcome") }
        var frame = [UInt8](repeating: 0, count: WireProtocol.headerSize + 4)
        frame.withUnsafeMutableBytes { bytes in
            FrameHeader(type: MessageType(rawValue: 0x7777), flags: [], payloadLength: 4, requestID: 9)
                .encode(into: bytes)
        }
        try frame.withUnsafeBytes { try connection.writeRawForTesting($0) }
        let reply = try connection.readMessage()
        XCTAssertEqual(reply?.header.requestID, 9)
        guard case .error(let error)? = reply?.message else { return XCTFail("expected error") }
        XCTAssertEqual(error.code, .unknownMessageType)
        try connection.send(.status(StatusRequest()), requestID: 10)
        guard case .statusReply? = try connection.readMessage()?.message else { return XCTFail("expected status") }
        connection.close()
    }

    func test_requestBeforeHello_isRefused() throws {
        let harness = try ServerHarness(shards: 1)
        let connection = try harness.rawConnection()
        try connection.send(.status(StatusRequest()), requestID: 3)
        guard case .error(let error)? = try connection.readMessage()?.message else { return XCTFail("expected error") }
        XCTAssertEqual(error.code, .handshakeRequired)
        connection.close()
    }

    func test_token_wrongTokenIsRejected_rightTokenAccepted() throws {
        let harness = try ServerHarness(shards: 1) { $0.token = "s3cret" }
        XCTAssertThrowsError(try harness.client(token: "wrong")) {
            guard case ClientError.rejected(let code, _) = $0 else { return XCTFail("\($0)") }
            XCTAssertEqual(code, .unauthorized)
        }
        XCTAssertThrowsError(try harness.client(token: nil))
        XCTAssertNoThrow(try harness.client(token: "s3cret"))
    }

    func test_sixtyFourConcurrentConnections_allServed() throws {
        let harness = try ServerHarness(shards: 4)
        let setup = try harness.client(name: "setup")
        _ = try setup.register(zeroTensors([256]))
        let clients = try (0..<64).map { try harness.client(name: "c\($0)") }
        let layout = ShardLayout(tensorElementCounts: [256], shardCount: 4)
        let gradient = [Float](repeating: 0.25, count: 256)
        var handles: [RequestHandle] = []
        try gradient.withUnsafeBufferPointer { flat in
            for client in clients {
                for s in 0..<4 {
                    handles.append(
                        try client.push(
                            shard: s, clock: 0, baseVersion: 0,
                            gradient: UnsafeBufferPointer(rebasing: flat[layout.range(ofShard: s)])))
                }
            }
        }
        for handle in handles { _ = try handle.wait() }
        var weights = [Float](repeating: 0, count: 64)
        _ = try weights.withUnsafeMutableBufferPointer { try setup.pull(shard: 2, clock: 0, into: $0).wait() }
        XCTAssertEqual(weights, [Float](repeating: -16, count: 64))
        let status = try setup.request(.status(StatusRequest())).wait()
        guard case .message(.statusReply(let reply)) = status else { return XCTFail("expected status") }
        XCTAssertTrue(reply.json.contains("\"connections\":65"), reply.json)
        for client in clients { client.close() }
    }

    func test_momentumOptimizer_appliedOnTheServer() throws {
        let harness = try ServerHarness(
            shards: 2, optimizer: OptimizerConfig(kind: .momentum, learningRate: 0.5, momentum: 0.5))
        let client = try harness.client()
        _ = try client.register(zeroTensors([2]))
        let gradient: [Float] = [1]
        for _ in 0..<2 {
            _ = try gradient.withUnsafeBufferPointer {
                try client.push(shard: 0, clock: 0, baseVersion: 0, gradient: $0).wait()
            }
        }
        var weight: [Float] = [0]
        _ = try weight.withUnsafeMutableBufferPointer { try client.pull(shard: 0, clock: 0, into: $0).wait() }
        // v1 = 1, w = -0.5; v2 = 0.5 + 1 = 1.5, w = -0.5 - 0.75 = -1.25
        XCTAssertEqual(weight[0], -1.25, accuracy: 1e-6)
    }

    func test_staleGradient_dropPolicy_dropsAndCounts() throws {
        let harness = try ServerHarness(shards: 1) {
            $0.maxGradientStaleness = 1
            $0.stalePolicy = .drop
        }
        let client = try harness.client()
        _ = try client.register(zeroTensors([1]))
        let gradient: [Float] = [1]
        var statuses: [PushStatus] = []
        for _ in 0..<4 {
            let reply = try gradient.withUnsafeBufferPointer {
                try client.push(shard: 0, clock: 0, baseVersion: 0, gradient: $0).wait()
            }
            guard case .message(.pushAck(let ack)) = reply else { return XCTFail("expected ack") }
            statuses.append(ack.status)
        }
        // Versions 0 and 1 are within the bound (staleness 0, 1); then staleness 2 > 1 is dropped, version stays 2.
        XCTAssertEqual(statuses, [.applied, .applied, .droppedStale, .droppedStale])
    }
}

/// Only the control role may checkpoint, export or shut down; exports stay under the export directory.
final class ControlRoleTests: XCTestCase {
    private func connect(_ harness: ServerHarness, role: Role) throws -> FramedConnection {
        let connection = try harness.rawConnection()
        try connection.setReceiveTimeout(.seconds(10))
        try connection.send(.hello(Hello(role: role, name: "\(role)")), requestID: 1)
        guard case .welcome? = try connection.readMessage()?.message else {
            throw ClientError.protocolViolation("expected welcome")
        }
        return connection
    }

    private func errorCode(_ connection: FramedConnection, _ message: Message) throws -> (ErrorCode?, String) {
        try connection.send(message, requestID: 7)
        guard case .error(let error)? = try connection.readMessage()?.message else { return (nil, "") }
        return (error.code, error.message)
    }

    func test_worker_cannotCheckpointExportOrShutdown_andStaysConnected() throws {
        let directory = try TemporaryDirectory(prefix: "swiftps-roles")
        let harness = try ServerHarness(shards: 1) { $0.checkpointDirectory = directory.path + "/ckpt" }
        let setup = try harness.client(name: "setup")
        _ = try setup.register(zeroTensors([8]))
        let worker = try connect(harness, role: .worker)
        for request: Message in [
            .checkpoint(CheckpointRequest(wait: true)), .export(ExportRequest(path: "x")), .shutdown(),
        ] {
            let (code, text) = try errorCode(worker, request)
            XCTAssertEqual(code, .unauthorized, "\(request)")
            XCTAssertTrue(text.contains("needs the control role"), text)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: directory.path + "/ckpt/exports/x"))
        try worker.send(.status(StatusRequest()), requestID: 8)
        guard case .statusReply? = try worker.readMessage()?.message else { return XCTFail("the server stopped") }
    }

    func test_export_isConfinedToTheExportDirectory() throws {
        let directory = try TemporaryDirectory(prefix: "swiftps-export")
        let root = directory.path + "/exports"
        let harness = try ServerHarness(shards: 1) { $0.exportDirectory = root }
        let setup = try harness.client(name: "setup")
        _ = try setup.register(zeroTensors([8]))
        let control = try connect(harness, role: .control)
        for path in ["../escape", "a/../../escape", directory.path + "/escape", "/etc/swiftps", "", root] {
            let (code, text) = try errorCode(control, .export(ExportRequest(path: path)))
            XCTAssertEqual(code, .invalidArgument, "'\(path)': \(text)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: directory.path + "/escape"))
        try control.send(.export(ExportRequest(path: "snap")), requestID: 9)
        guard case .exportReply(let reply)? = try control.readMessage()?.message else { return XCTFail("no reply") }
        XCTAssertEqual(reply.path, root + "/snap")
        XCTAssertTrue(FileManager.default.fileExists(atPath: root + "/snap/t0.npy"))
        try control.send(.export(ExportRequest(path: root + "/abs")), requestID: 10)
        guard case .exportReply? = try control.readMessage()?.message else { return XCTFail("absolute inside") }
    }

    func test_export_toAnUnwritablePath_saysWhyInASentence() throws {
        let directory = try TemporaryDirectory(prefix: "swiftps-export-fail")
        let root = directory.path + "/exports"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        // A regular file where a directory is needed: not writable even for root.
        XCTAssertTrue(FileManager.default.createFile(atPath: root + "/file", contents: Data("x".utf8)))
        let harness = try ServerHarness(shards: 1) { $0.exportDirectory = root }
        let setup = try harness.client(name: "setup")
        _ = try setup.register(zeroTensors([8]))
        let control = try connect(harness, role: .control)
        let (code, text) = try errorCode(control, .export(ExportRequest(path: "file/sub")))
        XCTAssertEqual(code, .checkpointFailed, text)
        XCTAssertTrue(text.hasPrefix("export to \(root)/file/sub failed: "), text)
        XCTAssertFalse(text.contains("NSCocoaErrorDomain"), text)
    }

    func test_register_tensorNameWithASlash_isRefused() throws {
        let harness = try ServerHarness(shards: 1)
        let client = try harness.client()
        XCTAssertThrowsError(
            try client.register([TensorSpec(name: "../../etc/x", shape: [2], initializer: .zeros)])
        ) {
            guard case ClientError.remote(let code, _) = $0 else { return XCTFail("\($0)") }
            XCTAssertEqual(code, .invalidArgument)
        }
    }
}
