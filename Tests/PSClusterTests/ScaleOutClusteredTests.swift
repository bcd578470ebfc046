import Foundation
import PSCheckpoint
import PSPosix
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
        // The worker's hello waits for the placement (its welcome carries the shard map): nothing starts.
        Thread.sleep(forTimeInterval: 2)
        XCTAssertFalse(coordinator.standardError.contains("event=job-started"), "one of two servers: no start")
        XCTAssertFalse(coordinator.standardError.contains("event=worker-joined"), "no welcome before the placement")

        let joined = try startJoinedServer(cluster, shards: 1, token: "s3cret")
        defer { _ = joined.terminateAndWait() }
        let line = try joined.waitForLine(matching: "event=joined", in: .standardError, timeout: .seconds(60))
        XCTAssertTrue(line.contains("index=1"), line)
        XCTAssertTrue(line.contains("shards=2..<3"), line)
        XCTAssertTrue(line.contains("total_shards=3"), line)
        let started = try coordinator.waitForLine(
            matching: "event=job-started", in: .standardError, timeout: .seconds(60))
        XCTAssertTrue(started.contains("servers=2"), started)
        XCTAssertTrue(coordinator.standardError.contains("event=server-joined"), coordinator.standardError)
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

    // MARK: The data path over several servers

    /// Runs one job with the coordinator's `shards[0]` shards and a joined server for every further entry, two
    /// workers, and returns the final weights' bytes by file name (and the cluster, for more checks).
    private func runJob(
        shards: [Int], flags: [String], workerFlags: [String] = [], serverTimeout: Int = 30
    ) throws -> (files: [String: Data], cluster: LocalCluster, joined: [ChildProcess]) {
        let cluster = try LocalCluster()
        try cluster.startServer(
            ["--servers", "\(shards.count)", "--shards", "\(shards[0])", "--workers", "2", "--data", "digits"]
                + ["--server-timeout", "\(serverTimeout)"] + flags)
        var joined: [ChildProcess] = []
        for count in shards.dropFirst() {
            let process = try ChildProcess(
                binary: "psserver",
                arguments: [
                    "--host", "127.0.0.1", "--port", "0", "--join", "127.0.0.1:\(cluster.port)", "--shards", "\(count)",
                    "--server-timeout", "\(serverTimeout)", "--log-level", "info",
                ], environment: ["OPENBLAS_NUM_THREADS": "1"])
            joined.append(process)
        }
        for rank in 0..<2 { try cluster.startWorker(name: "w\(rank)", ["--quiet"] + workerFlags) }
        return ([:], cluster, joined)
    }

    private func finish(
        _ run: (files: [String: Data], cluster: LocalCluster, joined: [ChildProcess]), file: StaticString = #filePath,
        line: UInt = #line
    ) throws -> [String: Data] {
        run.cluster.waitForJob(file: file, line: line)
        for process in run.joined {
            XCTAssertEqual(process.wait(timeout: .seconds(60)), 0, process.standardError, file: file, line: line)
            XCTAssertTrue(process.standardError.contains("event=job-finished"), process.standardError)
        }
        var files: [String: Data] = [:]
        let directory = run.cluster.checkpointDirectory + "/final"
        for name in try FileManager.default.contentsOfDirectory(atPath: directory) where name.hasSuffix(".npy") {
            files[name] = try Data(contentsOf: URL(fileURLWithPath: directory + "/" + name))
        }
        XCTAssertFalse(files.isEmpty, "no final weights in \(directory)", file: file, line: line)
        return files
    }

    /// Issue 11's exactness: the same BSP job on 1, 2 and 3 servers, with any split of shards, writes byte-for-byte
    /// the same final `.npy` files (softmax with SGD, an MLP with Adam, whose optimizer state is split too).
    func test_bsp_twoAndThreeServers_endBitwiseEqualToOneServer() throws {
        let jobs: [[String]] = [
            ["--model", "softmax", "--batch", "32", "--epochs", "2", "--seed", "5"],
            [
                "--model", "mlp:16", "--batch", "32", "--epochs", "2", "--seed", "3", "--optimizer", "adam", "--lr",
                "0.01",
            ],
        ]
        for flags in jobs {
            let single = try finish(runJob(shards: [2], flags: flags))
            for split in [[1, 1], [2, 1], [1, 2, 2]] {
                let spread = try finish(runJob(shards: split, flags: flags))
                XCTAssertEqual(Set(spread.keys), Set(single.keys), "\(flags) on \(split)")
                for (name, bytes) in single {
                    XCTAssertEqual(spread[name], bytes, "\(flags): \(name) differs between 1 server and \(split)")
                }
            }
        }
    }

    /// DDP-style buckets: with 7 shards on the coordinator and 1 on a joined server, mlp:16's last layer (170 of
    /// 1,210 floats) covers the joined server's whole part (1,058..<1,210), so each worker sends it that part as
    /// soon as the last layer's backward step is done, before the first layer's; the job still ends bitwise equal
    /// to one server, in BSP and with compressed gradients.
    func test_bsp_trailingServerSentDuringBackward_endsBitwiseEqualToOneServer() throws {
        let flags = ["--model", "mlp:16", "--batch", "32", "--epochs", "1", "--seed", "4", "--lr", "0.05"]
        for extra in [[], ["--compression", "fp16"]] {
            let single = try finish(runJob(shards: [2], flags: flags + extra))
            let run = try runJob(shards: [7, 1], flags: flags + extra)
            let spread = try finish(run)
            XCTAssertEqual(spread, single, "\(extra): 1 server and 7 + 1 shards on 2 servers differ")
            for worker in run.cluster.workers {
                let line = try XCTUnwrap(
                    worker.standardError.split(separator: "\n").first { $0.contains("event=finished") },
                    worker.standardError)
                func value(_ key: String) -> Int? {
                    line.components(separatedBy: " \(key)=").dropFirst().first.flatMap {
                        Int($0.prefix { $0.isNumber })
                    }
                }
                // One early send per step: the joined server's part, every step.
                XCTAssertNotNil(value("steps"), String(line))
                XCTAssertEqual(value("early_exchanges"), value("steps"), "\(extra): \(line)")
            }
        }
    }

    /// Compression over several servers: each server decodes its own part, so an fp16 job (element-wise) ends
    /// bitwise equal on one and two servers, and a top-k job (per shard) is bitwise reproducible on two.
    func test_bsp_compressed_onTwoServers_fp16EqualsOneServer_topKReproducible() throws {
        let fp16 = ["--model", "mlp:16", "--batch", "32", "--epochs", "1", "--seed", "3", "--compression", "fp16"]
        let single = try finish(runJob(shards: [2], flags: fp16 + ["--compress-pulls"]))
        let spread = try finish(runJob(shards: [1, 1], flags: fp16 + ["--compress-pulls"]))
        XCTAssertFalse(single.isEmpty)
        XCTAssertEqual(spread, single, "fp16 with compressed pulls on 1 server and on 2")
        let topK = ["--model", "mlp:16", "--batch", "32", "--epochs", "1", "--seed", "3", "--compression", "topk:0.1"]
        let first = try finish(runJob(shards: [1, 1], flags: topK))
        let second = try finish(runJob(shards: [1, 1], flags: topK))
        XCTAssertFalse(first.isEmpty)
        XCTAssertEqual(first, second, "topk:0.1 on 2 servers, run to run")
    }

    /// SSP and async run over two servers to the end (the joined server applies pushes on arrival under the
    /// stale-gradient rule it took from the coordinator) and status lists both servers with their counters.
    func test_sspAndAsync_onTwoServers_complete() throws {
        for mode in [["--mode", "ssp", "--staleness", "1"], ["--mode", "async", "--max-gradient-staleness", "0"]] {
            let run = try runJob(
                shards: [1, 2],
                flags: ["--model", "softmax", "--batch", "32", "--epochs", "2", "--keep-running"] + mode)
            guard let coordinator = run.cluster.server else { return XCTFail("no coordinator") }
            for worker in run.cluster.workers {
                XCTAssertEqual(worker.wait(timeout: .seconds(120)), 0, worker.standardError)
            }
            _ = try coordinator.waitForLine(matching: "event=job-finished", in: .standardError, timeout: .seconds(60))
            let status = try run.cluster.psctl(["status", "--json"])
            XCTAssertEqual(status.code, 0, status.output)
            let document = try JSONSerialization.jsonObject(with: Data(status.output.utf8)) as? [String: Any]
            let servers = try XCTUnwrap(document?["servers"] as? [[String: Any]], status.output)
            XCTAssertEqual(servers.count, 2, status.output)
            let pushes = servers.compactMap { $0["pushes"] as? Int }
            XCTAssertEqual(pushes.count, 2, status.output)
            XCTAssertTrue(pushes.allSatisfy { $0 > 0 }, "every server took pushes: \(status.output)")
            // Softmax on digits: 64 x 10 weights and 10 biases, split over the two servers.
            XCTAssertEqual(servers.compactMap { $0["bytes"] as? Int }.reduce(0, +), 4 * 650, status.output)
            // psctl export gathers whole tensors from both servers, equal to the final weights.
            let export = try ChildProcess(
                binary: "psctl", arguments: ["export", "export", "--server", "127.0.0.1:\(run.cluster.port)"])
            XCTAssertEqual(export.wait(timeout: .seconds(60)), 0, export.standardError)
            for name in ["fc1.weight", "fc1.bias"] {
                let exported = try NPY.read(path: run.cluster.checkpointDirectory + "/exports/export/\(name).npy")
                XCTAssertEqual(exported.values, try run.cluster.finalTensor(name).values, "\(mode) \(name)")
            }
            _ = run.cluster.server?.terminateAndWait()
            for process in run.joined { _ = process.wait(timeout: .seconds(30)) }
        }
    }

    /// A joined server killed mid-job and not restarted: the coordinator pauses, then ends the job within
    /// `--server-timeout` (plus a bound) with exit code 1 and a reason naming the server; the last checkpoint
    /// stays restorable. With a checkpoint at every step the kill lands while one is being gathered or written
    /// (a part that never comes): `latest` still names a whole checkpoint.
    func test_joinedServerKilled_endsTheJobNamingIt() throws {
        let run = try runJob(
            shards: [1, 1],
            flags: ["--model", "softmax", "--batch", "8", "--epochs", "50", "--checkpoint-every-steps", "1"],
            workerFlags: ["--debug-step-delay-ms", "20"], serverTimeout: 4)
        guard let coordinator = run.cluster.server else { return XCTFail("no coordinator") }
        _ = try coordinator.waitForLine(matching: "event=checkpoint-written", in: .standardError, timeout: .seconds(60))
        run.joined[0].kill(signal: SIGKILL)
        let killedAt = Date()
        XCTAssertEqual(coordinator.wait(timeout: .seconds(60)), 1, coordinator.standardError)
        let seconds = Date().timeIntervalSince(killedAt)
        XCTAssertLessThan(seconds, 4 + 10, "the job ends within --server-timeout plus a bound")
        XCTAssertTrue(coordinator.standardError.contains("event=server-silent"), coordinator.standardError)
        XCTAssertTrue(coordinator.standardError.contains("joined server 1 (127.0.0.1:"), coordinator.standardError)
        for worker in run.cluster.workers { _ = worker.terminateAndWait() }
        // The last checkpoint is whole: a one-server job restores it.
        let latest =
            try String(contentsOfFile: run.cluster.checkpointDirectory + "/latest", encoding: .utf8)
            .split(separator: "\n").first.map(String.init) ?? ""
        let restored = try ChildProcess(
            binary: "psserver",
            arguments: [
                "--host", "127.0.0.1", "--port", "0", "--checkpoint-dir", run.cluster.checkpointDirectory, "--restore",
                "latest", "--model", "softmax", "--data", "digits", "--batch", "8", "--epochs", "50", "--workers", "2",
            ])
        defer { _ = restored.terminateAndWait() }
        let line = try restored.waitForLine(matching: "event=restored", in: .standardError, timeout: .seconds(60))
        XCTAssertTrue(line.contains(latest), "\(line) vs \(latest)")
    }

    /// A worker killed and restarted under its name while two servers serve: it rejoins (both servers take its
    /// gradients again from the coordinator's step) and the job completes on every server.
    func test_workerKilledAndRejoining_withTwoServers() throws {
        let run = try runJob(
            shards: [1, 1], flags: ["--model", "softmax", "--batch", "8", "--epochs", "8", "--worker-timeout", "3"],
            workerFlags: ["--debug-step-delay-ms", "10"])
        guard let coordinator = run.cluster.server else { return XCTFail("no coordinator") }
        _ = try coordinator.waitForLine(matching: "event=job-started", in: .standardError, timeout: .seconds(60))
        Thread.sleep(forTimeInterval: 1)
        run.cluster.workers[1].kill(signal: SIGKILL)
        _ = run.cluster.workers[1].wait(timeout: .seconds(10))
        run.cluster.workers.removeLast()
        try run.cluster.startWorker(name: "w1", ["--quiet", "--debug-step-delay-ms", "10"])
        _ = try finish(run)
        XCTAssertTrue(coordinator.standardError.contains("rejoined=true"), coordinator.standardError)
    }

    /// The job the restart tests run: checkpoints every 20 steps, long enough to kill a process mid-run.
    private static let restartJob = [
        "--model", "mlp:16", "--batch", "8", "--epochs", "3", "--seed", "3", "--optimizer", "adam", "--lr", "0.01",
        "--checkpoint-every-steps", "20",
    ]

    /// A loopback port free a moment ago (a restarted process must come back on the same address).
    private static func freePort() throws -> UInt16 {
        let probe = try Socket.listen(host: "127.0.0.1", port: 0)
        defer { probe.close() }
        return try probe.localPort()
    }

    /// Issue 11's server failure: a joined server killed with SIGKILL mid-job and restarted with the same `--join`
    /// and address rolls every server and worker back to the last checkpoint, and the job ends with final weights
    /// byte-for-byte those of the same job never interrupted.
    func test_joinedServerKilledAndRestarted_rollsBack_finalWeightsBitwiseEqual() throws {
        let flags = Self.restartJob
        let uninterrupted = try finish(runJob(shards: [1, 2], flags: flags))

        let cluster = try LocalCluster()
        try cluster.startServer(
            ["--servers", "2", "--shards", "1", "--workers", "2", "--data", "digits", "--server-timeout", "30"] + flags)
        let port = try Self.freePort()
        let joinArguments = [
            "--host", "127.0.0.1", "--port", "\(port)", "--join", "127.0.0.1:\(cluster.port)", "--shards", "2",
            "--server-timeout", "30", "--log-level", "info",
        ]
        let first = try ChildProcess(binary: "psserver", arguments: joinArguments)
        for rank in 0..<2 {
            try cluster.startWorker(name: "w\(rank)", ["--quiet", "--debug-step-delay-ms", "5"], reconnectTimeout: 30)
        }
        guard let coordinator = cluster.server else { return XCTFail("no coordinator") }
        _ = try coordinator.waitForLine(matching: "event=checkpoint-written", in: .standardError, timeout: .seconds(60))
        Thread.sleep(forTimeInterval: 0.3)
        first.kill(signal: SIGKILL)
        _ = first.wait(timeout: .seconds(10))
        let restarted = try ChildProcess(binary: "psserver", arguments: joinArguments)
        let run = (files: [String: Data](), cluster: cluster, joined: [restarted])
        let files = try finish(run)
        XCTAssertTrue(coordinator.standardError.contains("event=rollback-done"), coordinator.standardError)
        XCTAssertEqual(Set(files.keys), Set(uninterrupted.keys))
        for (name, bytes) in uninterrupted {
            XCTAssertEqual(files[name], bytes, "\(name) differs from the uninterrupted run after the rollback")
        }
    }

    /// The coordinator's own death with two servers: restarted with `--restore latest` on its address, the joined
    /// server registers again (its link is told the coordinator restarted) and takes its part of the checkpoint,
    /// the workers reconnect, and the final weights equal the uninterrupted run's.
    func test_coordinatorKilledAndRestored_joinedServerRegistersAgain_finalWeightsBitwiseEqual() throws {
        let flags = Self.restartJob
        let uninterrupted = try finish(runJob(shards: [1, 2], flags: flags))
        let cluster = try LocalCluster()
        let ports = [try Self.freePort(), try Self.freePort()]
        cluster.port = ports[0]
        let coordinatorArguments =
            [
                "--host", "127.0.0.1", "--port", "\(ports[0])", "--checkpoint-dir", cluster.checkpointDirectory,
                "--servers", "2", "--shards", "1", "--workers", "2", "--data", "digits", "--log-level", "info",
            ] + flags
        let first = try ChildProcess(binary: "psserver", arguments: coordinatorArguments)
        _ = try first.waitForLine(matching: "event=listening", in: .standardError, timeout: .seconds(60))
        let joined = try ChildProcess(
            binary: "psserver",
            arguments: [
                "--host", "127.0.0.1", "--port", "\(ports[1])", "--join", "127.0.0.1:\(ports[0])", "--shards", "2",
                "--log-level", "info",
            ])
        for rank in 0..<2 {
            try cluster.startWorker(name: "w\(rank)", ["--quiet", "--debug-step-delay-ms", "5"], reconnectTimeout: 30)
        }
        _ = try first.waitForLine(matching: "event=checkpoint-written", in: .standardError, timeout: .seconds(60))
        Thread.sleep(forTimeInterval: 0.3)
        first.kill(signal: SIGKILL)
        _ = first.wait(timeout: .seconds(10))
        cluster.server = try ChildProcess(
            binary: "psserver", arguments: coordinatorArguments + ["--restore", "latest"])
        let files = try finish((files: [:], cluster: cluster, joined: [joined]))
        XCTAssertTrue(joined.standardError.contains("event=link-reregister"), joined.standardError)
        XCTAssertEqual(Set(files.keys), Set(uninterrupted.keys))
        for (name, bytes) in uninterrupted {
            XCTAssertEqual(files[name], bytes, "\(name) differs from the uninterrupted run after the restore")
        }
    }

    /// A worker whose gradient reaches the coordinator (which then releases the step with it) but not a joined
    /// server: what a worker host that crashes with its sends unsent leaves behind (`--debug-die-mid-step` sends
    /// only the coordinator's part, then exits). The joined server reports the step stuck, the coordinator rolls
    /// the job back to its last checkpoint, and with the worker restarted the job ends bitwise as if nothing had
    /// happened.
    func test_workerDiesBetweenItsSends_stuckStepRollsBack_finalWeightsBitwiseEqual() throws {
        let flags = Self.restartJob + ["--worker-timeout", "4"]
        let uninterrupted = try finish(runJob(shards: [1, 2], flags: flags))
        let run = try runJob(shards: [1, 2], flags: flags, workerFlags: ["--debug-step-delay-ms", "5"])
        guard let coordinator = run.cluster.server else { return XCTFail("no coordinator") }
        // The worker that dies mid-step is started under the name of the one that has rank 1.
        _ = try coordinator.waitForLine(matching: "event=checkpoint-written", in: .standardError, timeout: .seconds(60))
        let rank1 = try XCTUnwrap(
            coordinator.standardError.split(separator: "\n").first {
                $0.contains("event=worker-joined") && $0.contains("rank=1")
            })
        let name = rank1.contains("name=w0") ? "w0" : "w1"
        let index = name == "w0" ? 0 : 1
        run.cluster.workers[index].kill(signal: SIGKILL)
        _ = run.cluster.workers[index].wait(timeout: .seconds(10))
        let dying = try ChildProcess(
            binary: "psworker",
            arguments: [
                "--server", "127.0.0.1:\(run.cluster.port)", "--name", name, "--quiet", "--debug-die-mid-step", "45",
            ])
        XCTAssertEqual(dying.wait(timeout: .seconds(60)), 3, dying.standardError)
        run.cluster.workers[index] = try ChildProcess(
            binary: "psworker",
            arguments: [
                "--server", "127.0.0.1:\(run.cluster.port)", "--name", name, "--quiet", "--reconnect-timeout", "30",
            ])
        let files = try finish(run)
        XCTAssertTrue(coordinator.standardError.contains("event=step-stuck"), coordinator.standardError)
        XCTAssertTrue(coordinator.standardError.contains("event=rollback-done"), coordinator.standardError)
        for (name, bytes) in uninterrupted {
            XCTAssertEqual(files[name], bytes, "\(name) differs from the uninterrupted run after the rollback")
        }
    }
}
