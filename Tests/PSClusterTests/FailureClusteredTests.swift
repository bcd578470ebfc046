import Foundation
import PSPosix
import PSTestSupport
import XCTest

/// Multi-process tests of the consistency modes and of failure handling: real psserver, psworker and psctl
/// processes on 127.0.0.1, killed and restarted with signals.
final class FailureClusteredTests: XCTestCase {
    /// Small jobs: softmax on the bundled digits (1347 training rows).
    func job(workers: Int, batch: Int = 32, epochs: Int, _ extra: [String] = []) -> [String] {
        [
            "--shards", "4", "--workers", "\(workers)", "--model", "softmax", "--data", "digits", "--batch",
            "\(batch)", "--epochs", "\(epochs)", "--lr", "0.1", "--worker-timeout", "2",
        ] + extra
    }

    /// Starts workers named `names` one at a time, each after the server logged its join, so that `names[i]` has
    /// rank i (rank 0 evaluates the test set and must not be the one killed).
    @discardableResult
    func startInRankOrder(
        _ cluster: LocalCluster, _ names: [String], flags: [String: [String]] = [:], common: [String] = []
    ) throws -> [String: ChildProcess] {
        var processes: [String: ChildProcess] = [:]
        for (rank, name) in names.enumerated() {
            processes[name] = try cluster.startWorker(name: name, common + (flags[name] ?? []))
            _ = try cluster.server?.waitForLine(
                matching: "event=worker-joined name=\(name) rank=\(rank) ", in: .standardError, timeout: .seconds(60))
        }
        return processes
    }

    func lastAccuracy(_ cluster: LocalCluster) throws -> Double {
        try cluster.records(type: "epoch").last?["test_accuracy"] as? Double ?? 0
    }

    // MARK: 1-2. SSP bound, async, stale-gradient bound

    /// SSP with S = 1 and one straggler: in every step record, no live worker's clock is more than S + 1 ahead of
    /// the slowest live one (a worker at clock c may compute step c once the slowest has clock >= c - S, and its
    /// clock becomes c + 1 when that step is done). With --stale-policy scale every stale push is scaled, and the
    /// count appears in the step records.
    func test_ssp_straggler_staysWithinBound_andScalesStalePushes() throws {
        let staleness = 1
        let cluster = try LocalCluster()
        try cluster.startServer(
            job(
                workers: 3, batch: 16, epochs: 2,
                [
                    "--mode", "ssp", "--staleness", "\(staleness)", "--max-gradient-staleness", "0", "--stale-policy",
                    "scale",
                ]))
        try startInRankOrder(cluster, ["fast0", "fast1", "slow"], flags: ["slow": ["--debug-step-delay-ms", "20"]])
        cluster.waitForJob(timeout: 120)

        let steps = try cluster.records(type: "step")
        XCTAssertEqual(steps.count, 2 * (1347 / 48), "one record per step")
        var widest = 0
        for record in steps {
            guard let clocks = record["live_clocks"] as? [String: Int], let low = clocks.values.min(),
                let high = clocks.values.max()
            else {
                XCTFail("step record without live clocks: \(record)")
                continue
            }
            XCTAssertLessThanOrEqual(high - low, staleness + 1, "SSP bound broken at \(record)")
            widest = max(widest, high - low)
            XCTAssertNotNil(record["clocks"] as? [String: Int])
            XCTAssertNotNil(record["min_clock"] as? Int)
        }
        XCTAssertGreaterThan(widest, 0, "the fast workers never ran ahead of the straggler")
        let scaled = steps.last?["stale_scaled"] as? Int ?? 0
        XCTAssertGreaterThan(scaled, 0, "the straggler's pushes are stale and must be scaled")
        XCTAssertEqual(steps.last?["stale_dropped"] as? Int, 0)
    }

    /// Async with --max-gradient-staleness 0 and policy drop: the straggler's stale pushes are dropped (the worker
    /// pulls fresh weights next step) and the job still finishes. The drop count is in the step records and in
    /// `psctl status` (text and JSON); `psctl status` shows mode, K, each worker, clocks, barrier waits;
    /// `psctl workers` lists the workers; `psctl shutdown` stops the server (kept running after the job).
    func test_async_dropsStalePushes_andPsctlShowsStatus() throws {
        let cluster = try LocalCluster()
        try cluster.startServer(
            job(
                workers: 2, epochs: 3,
                ["--mode", "async", "--max-gradient-staleness", "0", "--stale-policy", "drop", "--keep-running"]))
        // The quick worker is slowed a little too, so that its run overlaps the laggard's even when the laggard's
        // start-up after joining is slow (a loaded machine, a sanitized build): without overlap nothing is stale.
        let workers = try startInRankOrder(
            cluster, ["quick", "laggard"],
            flags: ["quick": ["--debug-step-delay-ms", "5"], "laggard": ["--debug-step-delay-ms", "25"]])
        for (name, worker) in workers {
            XCTAssertEqual(worker.wait(timeout: .seconds(120)), 0, "\(name): \(worker.standardError)")
        }
        _ = try cluster.server?.waitForLine(matching: "event=job-finished", in: .standardError, timeout: .seconds(30))

        let steps = try cluster.records(type: "step")
        let dropped = steps.last?["stale_dropped"] as? Int ?? 0
        XCTAssertGreaterThan(dropped, 0, "the laggard's stale pushes must be dropped")

        let status = try cluster.psctl(["status"])
        XCTAssertEqual(status.code, 0, status.output)
        for field in [
            "mode async", "workers 2", "min clock", "max clock", "barrier waits", "stale pushes: dropped \(dropped) ",
            "NAME", "RANK", "STATE", "CLOCK", "HEARTBEAT AGE", "PUSHES", "quick", "laggard", "left",
        ] {
            XCTAssertTrue(status.output.contains(field), "psctl status lacks '\(field)':\n\(status.output)")
        }

        let json = try cluster.psctl(["status", "--json"])
        XCTAssertEqual(json.code, 0, json.output)
        let object = try JSONSerialization.jsonObject(with: Data(json.output.utf8)) as? [String: Any] ?? [:]
        XCTAssertEqual(object["mode"] as? String, "async")
        XCTAssertEqual(object["stale_dropped"] as? Int, dropped)
        XCTAssertEqual(object["stale_scaled"] as? Int, 0)
        let shardDrops = (object["shards"] as? [[String: Any]] ?? []).map { $0["stale_dropped"] as? Int ?? 0 }
        XCTAssertEqual(shardDrops.reduce(0, +), dropped, "the total is the sum over shards")
        let listed = object["workers"] as? [[String: Any]] ?? []
        XCTAssertEqual(Set(listed.compactMap { $0["name"] as? String }), ["quick", "laggard"])
        for worker in listed {
            for key in ["rank", "clock", "last_seen_s", "pushes", "state"] {
                XCTAssertNotNil(worker[key], "worker entry lacks \(key): \(worker)")
            }
        }
        for key in ["min_clock", "max_clock", "barrier_waits", "expected_workers"] {
            XCTAssertNotNil(object[key], "status lacks \(key)")
        }

        let list = try cluster.psctl(["workers"])
        XCTAssertEqual(list.code, 0, list.output)
        XCTAssertTrue(list.output.contains("quick") && list.output.contains("laggard"), list.output)
        XCTAssertFalse(list.output.contains("SHARD"), "psctl workers lists only workers:\n\(list.output)")

        let shutdown = try cluster.psctl(["shutdown"])
        XCTAssertEqual(shutdown.code, 0, shutdown.output)
        XCTAssertEqual(cluster.server?.wait(timeout: .seconds(30)), 0, cluster.server?.standardError ?? "")
    }

    /// `psctl workers` and `psctl status` print a worker's whole name however long it is (the column widens), so
    /// that the operator can copy it into the next command.
    func test_psctlTables_showLongWorkerNamesWhole() throws {
        let cluster = try LocalCluster()
        try cluster.startServer(job(workers: 2, epochs: 1, ["--keep-running"]))
        let long = "worker-on-rack-17-host-0042.example"
        let workers = try startInRankOrder(cluster, ["w0", long])
        for (name, worker) in workers {
            XCTAssertEqual(worker.wait(timeout: .seconds(120)), 0, "\(name): \(worker.standardError)")
        }
        for command in [["workers"], ["status"]] {
            let result = try cluster.psctl(command)
            XCTAssertEqual(result.code, 0, result.output)
            let rows = result.output.split(separator: "\n")
            let header = try XCTUnwrap(rows.first { $0.hasPrefix("NAME") }, result.output)
            let row = try XCTUnwrap(rows.first { $0.hasPrefix(long + " ") }, "no whole name in:\n\(result.output)")
            // The other columns still line up under their headings.
            XCTAssertEqual(header.range(of: "RANK")?.lowerBound.utf16Offset(in: header), long.count + 2, result.output)
            XCTAssertEqual(row.dropFirst(long.count + 2).prefix(4).trimmingCharacters(in: .whitespaces), "1")
        }
        let shutdown = try cluster.psctl(["shutdown"])
        XCTAssertEqual(shutdown.code, 0, shutdown.output)
    }

    // MARK: 3-4. Worker death and rejoin

    /// A worker killed with SIGKILL in the middle of a BSP job: after --worker-timeout the server declares it dead
    /// (logged, and `psctl status` shows it dead), the barrier goes on without it, the survivors finish, and the
    /// model still reaches 0.90 test accuracy.
    func test_bsp_workerKilled_othersFinish_andDeathIsReported() throws {
        let cluster = try LocalCluster()
        try cluster.startServer(job(workers: 3, epochs: 10, ["--mode", "bsp", "--keep-running"]))
        let workers = try startInRankOrder(
            cluster, ["w0", "w1", "victim"], common: ["--debug-step-delay-ms", "5"])
        let victim = try XCTUnwrap(workers["victim"])
        _ = try victim.waitForLine(matching: "epoch 2/10", in: .standardError, timeout: .seconds(60))
        victim.kill(signal: Signals.kill)
        XCTAssertEqual(victim.wait(timeout: .seconds(10)), 137)

        // Deadline: the 2 s worker timeout plus the rest of the job and a margin.
        for name in ["w0", "w1"] {
            let worker = try XCTUnwrap(workers[name])
            XCTAssertEqual(worker.wait(timeout: .seconds(40)), 0, "\(name): \(worker.standardError)")
        }
        let server = try XCTUnwrap(cluster.server)
        let death = try server.waitForLine(matching: "event=worker-dead", in: .standardError, timeout: .seconds(10))
        XCTAssertTrue(death.contains("name=victim"), death)
        _ = try server.waitForLine(matching: "event=job-finished", in: .standardError, timeout: .seconds(30))
        XCTAssertGreaterThanOrEqual(try lastAccuracy(cluster), 0.90)
        XCTAssertEqual(try cluster.records(type: "epoch").count, 10)

        let status = try cluster.psctl(["workers"])
        XCTAssertEqual(status.code, 0, status.output)
        let victimLine = status.output.split(separator: "\n").first { $0.hasPrefix("victim") } ?? ""
        XCTAssertTrue(victimLine.contains("dead"), status.output)
        XCTAssertTrue(status.output.contains("declared dead"), "the event list names the death:\n\(status.output)")
        XCTAssertEqual(try cluster.psctl(["shutdown"]).code, 0)
        XCTAssertEqual(server.wait(timeout: .seconds(30)), 0, server.standardError)
    }

    /// A worker killed and restarted under the same name gets its old rank back at the current step (not step 0)
    /// and the job finishes with every worker exiting 0.
    func killedWorkerRestarted(mode: [String]) throws {
        let cluster = try LocalCluster()
        try cluster.startServer(job(workers: 2, epochs: 8, mode))
        let workers = try startInRankOrder(cluster, ["w0", "w1"], common: ["--debug-step-delay-ms", "5"])
        let first = try XCTUnwrap(workers["w1"])
        _ = try first.waitForLine(matching: "epoch 2/8", in: .standardError, timeout: .seconds(60))
        first.kill(signal: Signals.kill)
        XCTAssertEqual(first.wait(timeout: .seconds(10)), 137)
        let again = try cluster.startWorker(name: "w1", ["--debug-step-delay-ms", "5"])
        let server = try XCTUnwrap(cluster.server)
        let line = try server.waitForLine(
            matching: "event=worker-joined name=w1 rank=1 rejoined=true", in: .standardError, timeout: .seconds(30))
        let start = line.components(separatedBy: "start_step=").last.flatMap { Int($0.prefix { $0.isNumber }) }
        XCTAssertGreaterThanOrEqual(start ?? 0, 2 * (1347 / 64), "rejoins at the current step: \(line)")
        XCTAssertEqual(again.wait(timeout: .seconds(60)), 0, again.standardError)
        XCTAssertEqual(workers["w0"]?.wait(timeout: .seconds(60)), 0, workers["w0"]?.standardError ?? "")
        XCTAssertEqual(server.wait(timeout: .seconds(30)), 0, server.standardError)
        XCTAssertEqual(try cluster.records(type: "epoch").count, 8)
    }

    /// Issue 15 item 18: every BSP worker SIGKILLed at once and restarted within about a second (before the worker
    /// timeout), while a straggler had not pushed the current step and the others had. Every worker used to rejoin
    /// at the next step and the job waited forever; now they redo the open step and the job ends with the final
    /// weights of an uninterrupted run, bit for bit.
    func test_bsp_allWorkersKilledAndRestartedAtOnce_withAStraggler_finishesExactly() throws {
        let flags = job(workers: 3, epochs: 2, ["--mode", "bsp", "--worker-timeout", "8", "--seed", "5"])
        let reference = try LocalCluster()
        try reference.startServer(flags)
        try startInRankOrder(reference, ["w0", "w1", "w2"])
        reference.waitForJob()

        let cluster = try LocalCluster()
        try cluster.startServer(flags)
        // w2 is the straggler: most of the time w0 and w1 have pushed the open step and wait while w2 computes.
        let workers = try startInRankOrder(
            cluster, ["w0", "w1", "w2"], flags: ["w2": ["--debug-step-delay-ms", "700"]])
        let server = try XCTUnwrap(cluster.server)
        _ = try server.waitForLine(matching: "event=job-started", in: .standardError, timeout: .seconds(30))
        Thread.sleep(forTimeInterval: 2.5)
        for worker in workers.values { worker.kill(signal: Signals.kill) }
        for worker in workers.values { XCTAssertEqual(worker.wait(timeout: .seconds(10)), 137) }
        cluster.workers.removeAll()
        for name in ["w0", "w1", "w2"] { try cluster.startWorker(name: name) }
        cluster.waitForJob(timeout: 90)
        // Whatever order they come back in (the straggler first lets the open step complete with the others'
        // earlier pushes, which are exactly what they would push again), the weights are those of the
        // uninterrupted run: before the fix a restarted worker skipped the open step, or nobody was expected at
        // it and the job waited forever.
        let files = try FileManager.default.contentsOfDirectory(atPath: reference.checkpointDirectory + "/final")
            .filter { $0.hasSuffix(".npy") }
        XCTAssertFalse(files.isEmpty)
        for file in files {
            let name = String(file.dropLast(4))
            XCTAssertEqual(
                try cluster.finalTensor(name).values.map(\.bitPattern),
                try reference.finalTensor(name).values.map(\.bitPattern), "\(name) differs from the uninterrupted run")
        }
    }

    func test_bsp_killedWorkerRestarted_rejoinsWithItsRank() throws {
        try killedWorkerRestarted(mode: ["--mode", "bsp"])
    }

    func test_ssp_killedWorkerRestarted_rejoinsAtItsClock() throws {
        try killedWorkerRestarted(mode: ["--mode", "ssp", "--staleness", "2"])
    }

    // MARK: 5. Server death

    /// The server killed with SIGKILL: every worker gives up after --reconnect-timeout and exits non-zero with a
    /// one-line reason.
    func test_serverKilled_workersExitWithClearMessage() throws {
        let cluster = try LocalCluster()
        try cluster.startServer(job(workers: 2, epochs: 20, ["--mode", "bsp"]))
        var workers: [ChildProcess] = []
        for name in ["a", "b"] {
            workers.append(
                try cluster.startWorker(name: name, ["--debug-step-delay-ms", "10"], reconnectTimeout: 3))
        }
        _ = try workers[0].waitForLine(matching: "training", in: .standardError, timeout: .seconds(60))
        _ = try workers[1].waitForLine(matching: "training", in: .standardError, timeout: .seconds(60))
        cluster.server?.kill(signal: Signals.kill)
        for worker in workers {
            let code = worker.wait(timeout: .seconds(3 + 12))
            XCTAssertNotNil(code, "the worker did not give up: \(worker.standardError)")
            XCTAssertNotEqual(code, 0)
            let last = worker.standardError.split(separator: "\n").last.map(String.init) ?? ""
            XCTAssertTrue(last.hasPrefix("Error: cannot reach the server at 127.0.0.1:"), worker.standardError)
        }
    }

    // MARK: 6. Unequal data

    /// One worker runs out of data early (--debug-max-steps) and leaves; the others are not blocked and finish.
    func unequalData(mode: [String]) throws {
        let cluster = try LocalCluster()
        try cluster.startServer(job(workers: 3, epochs: 2, mode))
        try startInRankOrder(cluster, ["w0", "w1", "short"], flags: ["short": ["--debug-max-steps", "7"]])
        cluster.waitForJob(timeout: 60)
        let steps = try cluster.records(type: "step")
        let total = 2 * (1347 / 96)
        XCTAssertEqual(steps.compactMap { $0["step"] as? Int }.max(), total - 1, "every step ran")
        let late = steps.filter { ($0["step"] as? Int ?? 0) >= 10 }
        XCTAssertTrue(late.allSatisfy { $0["workers"] as? Int == 2 }, "after it left, two workers report")
    }

    func test_bsp_workerWithLessData_leavesWithoutBlockingOthers() throws {
        try unequalData(mode: ["--mode", "bsp"])
    }

    func test_ssp_workerWithLessData_leavesWithoutBlockingOthers() throws {
        try unequalData(mode: ["--mode", "ssp", "--staleness", "1"])
    }

    // MARK: 8. SIGTERM

    /// SIGTERM to psserver: it stops (logging why), exits 0 and no longer accepts connections; its worker gives
    /// up with a clear message.
    func test_sigterm_stopsServer_withExitZero() throws {
        let cluster = try LocalCluster()
        try cluster.startServer(job(workers: 2, epochs: 2))
        let worker = try cluster.startWorker(name: "lonely", [], reconnectTimeout: 3)
        let server = try XCTUnwrap(cluster.server)
        _ = try server.waitForLine(matching: "event=worker-joined name=lonely", in: .standardError)
        server.kill(signal: Signals.terminate)
        XCTAssertEqual(server.wait(timeout: .seconds(20)), 0, server.standardError)
        XCTAssertTrue(server.standardError.contains("reason=SIGTERM"), server.standardError)
        XCTAssertNotEqual(try cluster.psctl(["status"]).code, 0, "the server must no longer accept")
        XCTAssertEqual(worker.wait(timeout: .seconds(20)), 1, worker.standardError)
        XCTAssertTrue(worker.standardError.contains("Error: cannot reach the server"), worker.standardError)
    }
}
