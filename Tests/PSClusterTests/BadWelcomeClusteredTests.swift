import Foundation
import PSPosix
import PSTestSupport
import PSTransport
import PSWire
import XCTest

/// Runs the built `psworker` against a fake server on 127.0.0.1:0 that answers the handshake with a nonsensical
/// welcome, and checks that the worker ends with exit 1 and a one-line reason naming the field (not a trap).
final class BadWelcomeClusteredTests: XCTestCase {
    /// Accepts one connection, reads its hello and answers with `config` as the welcome (rank `rank`).
    func serveOneWelcome(_ listener: Socket, config: WelcomeConfig, rank: Int32) throws {
        let (socket, peer) = try listener.accept()
        let connection = FramedConnection(socket: socket, peer: peer)
        defer { connection.close() }
        guard let (header, message) = try connection.readMessage(), case .hello = message else {
            return XCTFail("expected hello")
        }
        let json = String(decoding: try JSONEncoder().encode(config), as: UTF8.self)
        try connection.send(
            .welcome(Welcome(assignedID: 1, rank: rank, config: json)), requestID: header.requestID)
        // Hold the connection until the worker hangs up, as a server would.
        _ = try? connection.readMessage()
    }

    func runWorker(against config: WelcomeConfig, rank: Int32 = 0) throws -> (code: Int32?, err: String) {
        Signals.ignoreSIGPIPE()
        let listener = try Socket.listen(host: "127.0.0.1", port: 0)
        defer { listener.close() }
        // accept() honours SO_RCVTIMEO: a worker that never connects fails the test instead of hanging it.
        try listener.setReceiveTimeout(.seconds(30))
        let port = try listener.localPort()
        let worker = try ChildProcess(
            binary: "psworker",
            arguments: ["--server", "127.0.0.1:\(port)", "--reconnect-timeout", "5", "--name", "bad-welcome"])
        try serveOneWelcome(listener, config: config, rank: rank)
        let code = worker.wait(timeout: .seconds(30))
        return (code, worker.standardError)
    }

    func assertWorkerRefuses(
        _ config: WelcomeConfig, rank: Int32 = 0, naming field: String, file: StaticString = #filePath,
        line: UInt = #line
    ) throws {
        let result = try runWorker(against: config, rank: rank)
        XCTAssertEqual(result.code, 1, result.err, file: file, line: line)
        let errorLines = result.err.split(separator: "\n").filter { $0.hasPrefix("Error: ") }
        XCTAssertEqual(errorLines.count, 1, result.err, file: file, line: line)
        XCTAssertTrue(
            errorLines.first?.hasPrefix("Error: invalid welcome from the server: \(field) ") ?? false, result.err,
            file: file, line: line)
    }

    func test_psworker_badWelcome_exitsOneNamingTheField() throws {
        try assertWorkerRefuses(WelcomeValidationFixtures.welcome { $0.shardCount = 0 }, naming: "shardCount")
        try assertWorkerRefuses(WelcomeValidationFixtures.welcome { $0.job?.workers = 0 }, naming: "job.workers")
        try assertWorkerRefuses(
            WelcomeValidationFixtures.welcome { $0.job?.batchPerWorker = 0 }, naming: "job.batchPerWorker")
        try assertWorkerRefuses(
            WelcomeValidationFixtures.welcome { $0.job?.stepsPerEpoch = 0 }, naming: "job.stepsPerEpoch")
        try assertWorkerRefuses(WelcomeValidationFixtures.welcome(), rank: 7, naming: "rank")
    }
}

/// A consistent welcome for the bundled digits data (1347 rows of 64 features, 10 classes), to be spoiled.
enum WelcomeValidationFixtures {
    static func welcome(_ change: (inout WelcomeConfig) -> Void = { _ in }) -> WelcomeConfig {
        let job = JobDescription(
            model: "softmax", data: "digits", test: nil, labelColumn: "first", batchPerWorker: 10, epochs: 1,
            seed: 0, mode: "bsp", staleness: 0, workers: 2, trainRows: 1347, featureCount: 64, classCount: 10,
            stepsPerEpoch: 67, totalSteps: 67)
        var config = WelcomeConfig(
            job: job, startStep: 0, shardCount: 2, shardMap: ["", ""],
            tensors: [TensorShape(name: "fc1.weight", shape: [64, 10]), TensorShape(name: "fc1.bias", shape: [10])],
            heartbeatIntervalMillis: 1000, rejectsNonFinite: true)
        change(&config)
        return config
    }
}
