import Foundation
import PSTestSupport
import XCTest

/// Scale-out: `psserver --join` registers with a coordinator started with `--servers M`.
final class ScaleOutClusteredTests: XCTestCase {
    private func startJoinedServer(
        _ cluster: LocalCluster, shards: Int, token: String, extra: [String] = []
    ) throws -> ChildProcess {
        try ChildProcess(
            binary: "psserver",
            arguments: [
                "--host", "127.0.0.1", "--port", "0", "--join", "127.0.0.1:\(cluster.port)", "--shards", "\(shards)",
                "--token", token, "--log-level", "info",
            ] + extra)
    }

    func test_join_coordinatorWaitsForEveryServer_thenStartsTheJob() throws {
        let cluster = try LocalCluster()
        try cluster.startServer([
            "--servers", "2", "--shards", "2", "--workers", "1", "--model", "softmax", "--data", "digits", "--batch",
            "64", "--epochs", "1", "--token", "s3cret",
        ])
        try cluster.startWorker(name: "w0", ["--quiet", "--token", "s3cret"])
        guard let coordinator = cluster.server else { return XCTFail("no coordinator") }
        _ = try coordinator.waitForLine(matching: "event=worker-joined", in: .standardError, timeout: .seconds(60))
        XCTAssertFalse(coordinator.standardError.contains("event=job-started"), "one of two servers: no start")

        let joined = try startJoinedServer(cluster, shards: 1, token: "s3cret")
        defer { _ = joined.terminateAndWait() }
        let line = try joined.waitForLine(matching: "event=joined", in: .standardError, timeout: .seconds(60))
        XCTAssertTrue(line.contains("index=1"), line)
        XCTAssertTrue(line.contains("shards=2..<3"), line)
        XCTAssertTrue(line.contains("total_shards=3"), line)
        let started = try coordinator.waitForLine(
            matching: "event=job-started", in: .standardError, timeout: .seconds(60))
        XCTAssertTrue(started.contains("servers=2"), started)
        let log = coordinator.standardError
        guard let joinedAt = log.range(of: "event=server-joined"), let startedAt = log.range(of: "event=job-started")
        else { return XCTFail(log) }
        XCTAssertLessThan(joinedAt.lowerBound, startedAt.lowerBound, "the job starts once the server registered")
        cluster.waitForJob()
    }

    func test_join_wrongToken_exitsOneNamingTheRefusal() throws {
        let cluster = try LocalCluster()
        try cluster.startServer([
            "--servers", "2", "--workers", "1", "--model", "softmax", "--data", "digits", "--token", "right",
        ])
        let joined = try startJoinedServer(cluster, shards: 1, token: "wrong")
        XCTAssertEqual(joined.wait(timeout: .seconds(60)), 1, joined.standardError)
        XCTAssertTrue(
            joined.standardError.contains("refused this server: wrong token"), joined.standardError)
    }

    func test_join_beyondServers_isRefused() throws {
        let cluster = try LocalCluster()
        try cluster.startServer([
            "--servers", "2", "--workers", "1", "--model", "softmax", "--data", "digits", "--token", "t",
        ])
        let first = try startJoinedServer(cluster, shards: 1, token: "t")
        defer { _ = first.terminateAndWait() }
        _ = try first.waitForLine(matching: "event=joined", in: .standardError, timeout: .seconds(60))
        // psctl authenticates by challenge-response too: no token and a wrong one are refused with the reason.
        let tokenless = try cluster.psctl(["status"])
        XCTAssertEqual(tokenless.code, 1, tokenless.output)
        XCTAssertTrue(tokenless.output.contains("requires a token"), tokenless.output)
        let wrong = try cluster.psctl(["status", "--token", "not-t"])
        XCTAssertEqual(wrong.code, 1, wrong.output)
        XCTAssertTrue(wrong.output.contains("wrong token"), wrong.output)
        let status = try cluster.psctl(["status", "--token", "t"])
        XCTAssertEqual(status.code, 0, status.output)
        XCTAssertTrue(status.output.contains("SERVER  ADDRESS"), status.output)
        XCTAssertTrue(status.output.contains("(coordinator)"), status.output)
        XCTAssertTrue(status.output.contains("127.0.0.1:"), status.output)
        let listening = try first.waitForLine(matching: "event=listening", in: .standardError, timeout: .seconds(10))
        let joinedPort = try XCTUnwrap(ChildProcess.port(inLine: listening), listening)
        let joinedStatus = try ChildProcess(
            binary: "psctl",
            arguments: ["status", "--json", "--token", "t", "--server", "127.0.0.1:\(joinedPort)", "--timeout", "10"])
        XCTAssertEqual(joinedStatus.wait(timeout: .seconds(30)), 0, joinedStatus.standardError)
        XCTAssertTrue(
            joinedStatus.standardOutput.contains(#""first_shard":4,"index":1,"self":true,"shards":1"#),
            joinedStatus.standardOutput)
        let extra = try startJoinedServer(cluster, shards: 1, token: "t")
        XCTAssertEqual(extra.wait(timeout: .seconds(60)), 1, extra.standardError)
        XCTAssertTrue(extra.standardError.contains("all 2 servers are registered"), extra.standardError)
    }

    func test_join_noCoordinator_exitsOneAfterTheWaitTimeout() throws {
        let joined = try ChildProcess(
            binary: "psserver",
            arguments: ["--host", "127.0.0.1", "--port", "0", "--join", "127.0.0.1:1", "--wait-timeout", "1"])
        XCTAssertEqual(joined.wait(timeout: .seconds(30)), 1, joined.standardError)
        XCTAssertTrue(
            joined.standardError.contains("cannot register with the coordinator 127.0.0.1:1"), joined.standardError)
    }

    func test_flags_joinWithModel_andAdvertiseWithoutJoin_areUsageErrors() throws {
        let withModel = try ChildProcess(
            binary: "psserver", arguments: ["--join", "127.0.0.1:1", "--model", "softmax", "--port", "0"])
        XCTAssertEqual(withModel.wait(timeout: .seconds(30)), 64)
        XCTAssertTrue(withModel.standardError.contains("--join takes the job from the coordinator"))
        let advertise = try ChildProcess(
            binary: "psserver", arguments: ["--advertise", "10.0.0.2:7001", "--port", "0"])
        XCTAssertEqual(advertise.wait(timeout: .seconds(30)), 64)
        XCTAssertTrue(advertise.standardError.contains("--advertise is for a joined server"))
    }

    /// The element-wise update does not depend on where shard boundaries fall: the same BSP job on 1, 4 and 5
    /// shards ends with bitwise the same weights (the prerequisite for equality across servers, issue 11).
    func test_bsp_sameJobOnOneFourAndFiveShards_endsBitwiseEqual() throws {
        for optimizer in ["sgd", "adam"] { try assertSameWeightsForEveryShardCount(optimizer: optimizer) }
    }

    private func assertSameWeightsForEveryShardCount(optimizer: String) throws {
        var finals: [[String: [UInt32]]] = []
        for shards in [1, 4, 5] {
            let cluster = try LocalCluster()
            try cluster.startServer([
                "--shards", "\(shards)", "--workers", "2", "--model", "mlp:16", "--data", "digits", "--batch", "32",
                "--epochs", "2", "--seed", "3", "--optimizer", optimizer, "--lr", "0.01",
            ])
            for rank in 0..<2 { try cluster.startWorker(name: "w\(rank)", ["--quiet"]) }
            cluster.waitForJob()
            var tensors: [String: [UInt32]] = [:]
            for name in ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"] {
                tensors[name] = try cluster.finalTensor(name).values.map(\.bitPattern)
            }
            finals.append(tensors)
        }
        for (index, shards) in [4, 5].enumerated() {
            for (name, values) in finals[0] {
                let other = finals[index + 1][name] ?? []
                let differing = zip(values, other).filter { $0 != $1 }.count
                XCTAssertEqual(other.count, values.count, name)
                XCTAssertEqual(
                    differing, 0, "\(optimizer) \(name): \(differing) elements differ between --shards 1 and \(shards)")
            }
        }
    }
}
