import Foundation
import PSCheckpoint
import PSClient
import PSPosix
import PSTestSupport
import PSWire
import XCTest

/// Checkpoints end to end with real `psserver`, `psworker` and `psctl` processes on 127.0.0.1: crash and exact
/// resume, a crash in the middle of a write, refused corrupt checkpoints, numpy interoperability, restore into a
/// different shard count, and `psctl checkpoint` / `psctl export` against a running job.
final class CheckpointClusteredTests: XCTestCase {
    /// The BSP job of the resume tests: Adam, so optimizer moments and the step count (bias correction) matter.
    /// 42 steps per epoch on digits (1347 rows, global batch 32).
    static func jobFlags(epochs: Int, everySteps: Int = 20) -> [String] {
        [
            "--shards", "4", "--workers", "2", "--model", "mlp:32", "--data", "digits", "--batch", "16", "--epochs",
            "\(epochs)", "--seed", "3", "--optimizer", "adam", "--lr", "0.01", "--mode", "bsp", "--worker-timeout",
            "3", "--checkpoint-every-steps", "\(everySteps)",
        ]
    }

    static let tensorNames = ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]

    // MARK: 1. Crash and exact resume

    /// The server is SIGKILLed mid-run after a checkpoint and restarted with `--restore latest`; the workers
    /// reconnect under their names, rewind to the checkpoint's step, and the final weights, the per-step losses
    /// and the epoch evaluations are bitwise those of an uninterrupted run.
    func test_killedServer_restoredFromLatest_finishesBitwiseLikeUninterruptedRun() throws {
        try assertRestoredRunIsBitwiseUninterrupted(extraFlags: [])
    }

    /// The same with bf16 gradients and compressed pulls: the workers keep no compression state, and round the
    /// float32 weights they pull after the restore as an exchange reply would have, so the resume stays exact.
    func test_killedServer_restoredFromLatest_bf16CompressedPulls_finishesBitwiseLikeUninterruptedRun() throws {
        try assertRestoredRunIsBitwiseUninterrupted(extraFlags: ["--compression", "bf16", "--compress-pulls"])
    }

    private func assertRestoredRunIsBitwiseUninterrupted(extraFlags: [String]) throws {
        let flags = Self.jobFlags(epochs: 4) + extraFlags
        let reference = try LocalCluster()
        try reference.startServer(flags)
        try reference.startWorker(name: "w0", ["--quiet"])
        try reference.startWorker(name: "w1", ["--quiet"])
        reference.waitForJob()

        let cluster = try LocalCluster()
        try cluster.startServer(flags)
        let port = cluster.port
        // The step delay (no effect on the math) keeps the job running long enough to be killed mid-way.
        let workerFlags = ["--reconnect-timeout", "60", "--debug-step-delay-ms", "8", "--log-level", "info"]
        let w0 = try cluster.startWorker(name: "w0", workerFlags)
        try cluster.startWorker(name: "w1", workerFlags)
        var checkpointStep: UInt64 = 0
        XCTAssertTrue(
            waitUntil(timeout: .seconds(60), poll: .milliseconds(2)) {
                checkpointStep = latestStep(cluster.checkpointDirectory) ?? 0
                return checkpointStep >= 40
            }, "no checkpoint at step >= 40 appeared")
        cluster.server?.kill(signal: Signals.kill)
        XCTAssertEqual(cluster.server?.wait(timeout: .seconds(10)), 137)
        let checkpointStepAtKill = latestStep(cluster.checkpointDirectory) ?? 0
        XCTAssertLessThan(checkpointStepAtKill, 168, "the job must not have finished before the kill")
        let reachedBeforeKill = try cluster.records(type: "step").compactMap { $0["step"] as? Int }.max() ?? 0

        try cluster.startServer(flags + ["--port", "\(port)"], restore: true)
        let restoredLine = try XCTUnwrap(
            cluster.server?.waitForLine(matching: "event=restored", in: .standardError, timeout: .seconds(10)))
        XCTAssertTrue(restoredLine.contains("step=\(checkpointStepAtKill)"), restoredLine)
        cluster.waitForJob()
        let firstRank = try XCTUnwrap(
            w0.standardError.firstRange(of: /event=training rank=(\d)/).map { w0.standardError[$0] })
        let rank = firstRank.suffix(1)
        XCTAssertTrue(
            w0.standardError.contains("event=resumed rank=\(rank) step=\(checkpointStepAtKill)"),
            "w0 keeps its rank \(rank) and rewinds to the checkpoint: \(w0.standardError)")

        for name in Self.tensorNames {
            let expected = try reference.finalTensor(name)
            let actual = try cluster.finalTensor(name)
            XCTAssertEqual(actual.shape, expected.shape, name)
            XCTAssertEqual(actual.values.map(\.bitPattern), expected.values.map(\.bitPattern), "\(name) differs")
        }
        let referenceLosses = try lossesByStep(reference.records(type: "step"))
        let restoredLosses = try lossesByStep(cluster.records(type: "step", path: cluster.metricsPath + ".restored"))
        XCTAssertEqual(referenceLosses.count, 168)
        XCTAssertEqual(
            restoredLosses.keys.min(), Int(checkpointStepAtKill), "the restored run starts at the checkpoint")
        XCTAssertEqual(restoredLosses.count, 168 - Int(checkpointStepAtKill), "one record per step after the restore")
        // The last step record before the kill is for the step just before the checkpoint or later.
        XCTAssertGreaterThanOrEqual(reachedBeforeKill + 1, Int(checkpointStepAtKill))
        for (step, loss) in restoredLosses {
            XCTAssertEqual(loss, referenceLosses[step], "loss of step \(step)")
        }
        let referenceEpochs = try reference.records(type: "epoch").compactMap { $0["test_loss"] as? Double }
        let restoredEpochs = try cluster.records(type: "epoch", path: cluster.metricsPath + ".restored")
            .compactMap { $0["test_loss"] as? Double }
        XCTAssertEqual(referenceEpochs.count, 4)
        XCTAssertEqual(Array(referenceEpochs.suffix(restoredEpochs.count)), restoredEpochs)
        XCTAssertFalse(restoredEpochs.isEmpty, "rank 0 still evaluates after the restore")
    }

    /// Issue 15 item 19: the server is SIGKILLed mid-run and restored into `--shards 3` (the job ran with 4)
    /// while its workers keep running. They used to reconnect with their old layout and be refused; now they take
    /// the layout from the new welcome, and since a run's arithmetic does not depend on the shard count, the
    /// final weights are bitwise those of an uninterrupted 4-shard run.
    func test_killedServer_restoredIntoAnotherShardCount_runningWorkersTakeTheNewLayout() throws {
        let flags = Self.jobFlags(epochs: 2)
        let reference = try LocalCluster()
        try reference.startServer(flags)
        try reference.startWorker(name: "w0", ["--quiet"])
        try reference.startWorker(name: "w1", ["--quiet"])
        reference.waitForJob()

        let cluster = try LocalCluster()
        try cluster.startServer(flags)
        let port = cluster.port
        let workerFlags = ["--reconnect-timeout", "60", "--debug-step-delay-ms", "8", "--log-level", "info"]
        let w0 = try cluster.startWorker(name: "w0", workerFlags)
        try cluster.startWorker(name: "w1", workerFlags)
        XCTAssertTrue(
            waitUntil(timeout: .seconds(60), poll: .milliseconds(2)) {
                (latestStep(cluster.checkpointDirectory) ?? 0) >= 20
            },
            "no checkpoint at step >= 20 appeared")
        cluster.server?.kill(signal: Signals.kill)
        XCTAssertEqual(cluster.server?.wait(timeout: .seconds(10)), 137)
        XCTAssertLessThan(latestStep(cluster.checkpointDirectory) ?? 0, 84, "the job must not have finished")

        var resharded = flags
        let shardsIndex = try XCTUnwrap(resharded.firstIndex(of: "--shards"))
        resharded[shardsIndex + 1] = "3"
        try cluster.startServer(resharded + ["--port", "\(port)"], restore: true)
        cluster.waitForJob()
        XCTAssertTrue(w0.standardError.contains("event=reshard from=4 to=3"), w0.standardError)
        for name in Self.tensorNames {
            let expected = try reference.finalTensor(name)
            let actual = try cluster.finalTensor(name)
            XCTAssertEqual(actual.values.map(\.bitPattern), expected.values.map(\.bitPattern), "\(name) differs")
        }
    }

    // MARK: 2. Crash during the write

    /// A server killed between the files of a checkpoint leaves the previous one intact and `latest` pointing at
    /// it; the restored job waits for both workers before it continues, and finishes.
    func test_crashDuringWrite_keepsPreviousCheckpoint_andRestoreFromLatestWorks() throws {
        let cluster = try LocalCluster()
        try cluster.startServer(Self.jobFlags(epochs: 1))
        try cluster.startWorker(name: "w0", ["--quiet"])
        try cluster.startWorker(name: "w1", ["--quiet"])
        cluster.waitForJob()
        XCTAssertEqual(latestStep(cluster.checkpointDirectory), 42)
        let before = try CheckpointReader.load(directory: cluster.checkpointDirectory + "/step-0000000042")

        // Epoch 2 from the checkpoint; the first checkpoint (step 47) kills the server after 3 of its 13 files.
        cluster.workers = []
        try startServer(
            cluster, Self.jobFlags(epochs: 2, everySteps: 5) + ["--restore", "latest"],
            environment: [CheckpointWriter.crashAfterFilesVariable: "3"])
        try cluster.startWorker(name: "w0", ["--quiet", "--reconnect-timeout", "1"])
        try cluster.startWorker(name: "w1", ["--quiet", "--reconnect-timeout", "1"])
        XCTAssertEqual(cluster.server?.wait(timeout: .seconds(60)), 137, cluster.server?.standardError ?? "")
        for worker in cluster.workers { _ = worker.terminateAndWait() }

        let root = cluster.checkpointDirectory
        XCTAssertEqual(latestStep(root), 42, "latest still names the previous checkpoint")
        let entries = try FileManager.default.contentsOfDirectory(atPath: root)
        XCTAssertFalse(entries.contains("step-0000000047"), "\(entries)")
        let partial = try XCTUnwrap(entries.first { $0.hasPrefix(".tmp-step-0000000047") }, "\(entries)")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: root + "/" + partial).count, 3)
        let after = try CheckpointReader.load(directory: try CheckpointReader.resolve(root: root, spec: "latest"))
        XCTAssertEqual(after, before, "the previous checkpoint is unchanged")

        cluster.workers = []
        try cluster.startServer(Self.jobFlags(epochs: 2), restore: true)
        let line = try XCTUnwrap(
            cluster.server?.waitForLine(matching: "event=restored", in: .standardError, timeout: .seconds(10)))
        XCTAssertTrue(line.contains("step=42"), line)
        // One worker back is not enough: the restored job waits for every worker of the checkpoint.
        try cluster.startWorker(name: "w1", ["--quiet"])
        XCTAssertTrue(
            try waitUntil(timeout: .seconds(30)) {
                let status = try serverStatus(port: cluster.port)
                let workers = status["workers"] as? [[String: Any]] ?? []
                return workers.contains { $0["name"] as? String == "w1" && $0["state"] as? String == "live" }
            })
        let status = try serverStatus(port: cluster.port)
        XCTAssertEqual(status["job_started"] as? Bool, false, "\(status)")
        XCTAssertEqual(status["completed_steps"] as? Int, 42)
        try cluster.startWorker(name: "w0", ["--quiet"])
        cluster.waitForJob()
        XCTAssertEqual(latestStep(root), 84)
        let steps = try lossesByStep(cluster.records(type: "step", path: cluster.metricsPath + ".restored"))
        XCTAssertEqual(steps.keys.sorted(), Array(42..<84))
    }

    // MARK: 3. Corruption

    /// A flipped byte, a truncated file, a missing file and a wrong shape in the manifest are each refused by
    /// `psserver --restore` with a non-zero exit and a message naming the file.
    func test_corruptCheckpoints_areRefusedNamingTheFile() throws {
        let cluster = try LocalCluster()
        let flags = [
            "--shards", "2", "--workers", "1", "--model", "softmax", "--data", "digits", "--batch", "64",
            "--epochs", "1", "--optimizer", "momentum", "--lr", "0.1",
        ]
        try cluster.startServer(flags)
        try cluster.startWorker(name: "w0", ["--quiet"])
        cluster.waitForJob()
        let good = try CheckpointReader.resolve(root: cluster.checkpointDirectory, spec: "latest")
        let files = FileManager.default

        func corrupted(_ label: String, _ damage: (String) throws -> Void) throws -> String {
            let copy = cluster.directory.path + "/corrupt-\(label)"
            try files.copyItem(atPath: good, toPath: copy)
            try damage(copy)
            return copy
        }
        let weight = "fc1.weight.npy"
        let cases: [(label: String, file: String, expected: String, damage: (String) throws -> Void)] = [
            (
                "flip", weight, "CRC32C mismatch",
                { dir in
                    var bytes = try Data(contentsOf: URL(fileURLWithPath: dir + "/" + weight))
                    bytes[bytes.count - 7] ^= 0x10
                    try bytes.write(to: URL(fileURLWithPath: dir + "/" + weight))
                }
            ),
            (
                "truncate", "fc1.bias.momentum.npy", "CRC32C mismatch",
                { dir in
                    let path = dir + "/fc1.bias.momentum.npy"
                    let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
                    try bytes.prefix(bytes.count - 12).write(to: URL(fileURLWithPath: path))
                }
            ),
            ("missing", "fc1.bias.npy", "missing", { dir in try files.removeItem(atPath: dir + "/fc1.bias.npy") }),
            (
                "shape", weight, "shape mismatch",
                { dir in
                    let path = dir + "/manifest.json"
                    var manifest = try XCTUnwrap(
                        JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path)))
                            as? [String: Any])
                    var tensors = try XCTUnwrap(manifest["tensors"] as? [[String: Any]])
                    let index = try XCTUnwrap(tensors.firstIndex { $0["name"] as? String == "fc1.weight" })
                    tensors[index]["shape"] = [64, 11]
                    manifest["tensors"] = tensors
                    try JSONSerialization.data(withJSONObject: manifest).write(to: URL(fileURLWithPath: path))
                }
            ),
        ]
        for item in cases {
            let directory = try corrupted(item.label, item.damage)
            let process = try ChildProcess(
                binary: "psserver",
                arguments: [
                    "--host", "127.0.0.1", "--port", "0", "--checkpoint-dir", cluster.checkpointDirectory,
                    "--restore", directory,
                ] + flags)
            let code = process.wait(timeout: .seconds(30))
            XCTAssertNotNil(code, "\(item.label): psserver did not exit")
            XCTAssertNotEqual(code, 0, "\(item.label): a corrupt checkpoint must be refused")
            let stderr = process.standardError
            XCTAssertTrue(stderr.contains(directory + "/" + item.file), "\(item.label): \(stderr)")
            XCTAssertTrue(stderr.contains(item.expected), "\(item.label): \(stderr)")
            XCTAssertFalse(stderr.contains("event=listening"), "\(item.label): \(stderr)")
        }
    }

    // MARK: 4 and 5. numpy, and restore into another shard count

    /// numpy reads every `.npy` of a checkpoint (weights and optimizer state) with the manifest's shapes and the
    /// weights the server serves; a server restored with `--shards 3` from a `--shards 4` checkpoint serves the
    /// same tensors.
    func test_numpyReadsCheckpoint_andRestoreResplitsIntoOtherShardCount() throws {
        let cluster = try LocalCluster()
        try cluster.startServer(Self.jobFlags(epochs: 1) + ["--keep-running"])
        try cluster.startWorker(name: "w0", ["--quiet"])
        try cluster.startWorker(name: "w1", ["--quiet"])
        _ = try cluster.server?.waitForLine(matching: "event=job-finished", in: .standardError, timeout: .seconds(120))
        let directory = try CheckpointReader.resolve(root: cluster.checkpointDirectory, spec: "latest")
        let loaded = try CheckpointReader.load(directory: directory)
        XCTAssertEqual(loaded.manifest.step, 42)
        XCTAssertEqual(loaded.manifest.optimizer.step, 42, "Adam's step count is the number of applied steps")
        XCTAssertEqual(loaded.manifest.shardVersions, [42, 42, 42, 42])
        XCTAssertEqual(loaded.manifest.workerRanks.keys.sorted(), ["w0", "w1"])
        XCTAssertEqual(loaded.manifest.workerRanks.values.sorted(), [0, 1])
        XCTAssertEqual(loaded.optimizerStates.count, 8, "adam_m and adam_v for each of 4 tensors")
        let served = try pullWeights(port: cluster.port)
        for name in Self.tensorNames {
            XCTAssertEqual(loaded.tensors[name]?.values.map(\.bitPattern), served[name]?.map(\.bitPattern), name)
        }

        if pythonHasNumpy() {
            // numpy writes each array's raw float32 bytes; they must equal the served weights bit for bit.
            let out = cluster.directory.path + "/numpy"
            try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
            let script = """
                import json, numpy, sys
                d, out = sys.argv[1], sys.argv[2]
                m = json.load(open(d + '/manifest.json'))
                for e in m['tensors'] + m['optimizer']['states']:
                    a = numpy.load(d + '/' + e['file'])
                    assert a.dtype == numpy.float32 and list(a.shape) == e['shape'], (e['file'], a.dtype, a.shape)
                    a.astype('<f4').tofile(out + '/' + e['file'] + '.raw')
                print('read', len(m['tensors']) + len(m['optimizer']['states']))
                """
            let output = try runPython(["-c", script, directory, out])
            XCTAssertTrue(output.contains("read 12"), output)
            for name in Self.tensorNames {
                let raw = try Data(contentsOf: URL(fileURLWithPath: out + "/\(name).npy.raw"))
                let values = raw.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
                XCTAssertEqual(values.map(\.bitPattern), served[name]?.map(\.bitPattern), "numpy's \(name)")
            }
            for state in loaded.manifest.optimizer.states {
                let raw = try Data(contentsOf: URL(fileURLWithPath: out + "/\(state.file).raw"))
                let values = raw.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
                XCTAssertEqual(values, loaded.optimizerStates[state.key]?.values, state.file)
            }
        }
        _ = cluster.server?.terminateAndWait()

        // The same checkpoint into 3 shards: the layout differs, the tensors do not.
        let resharded = try LocalCluster()
        let process = try ChildProcess(
            binary: "psserver",
            arguments: [
                "--host", "127.0.0.1", "--port", "0", "--checkpoint-dir", resharded.checkpointDirectory, "--restore",
                directory,
            ] + Self.jobFlags(epochs: 1) + ["--shards", "3"],
            environment: ["OPENBLAS_NUM_THREADS": "1"])
        resharded.server = process
        let line = try process.waitForLine(matching: "event=listening", in: .standardError, timeout: .seconds(30))
        let port = try XCTUnwrap(ChildProcess.port(inLine: line.components(separatedBy: " shards=")[0]))
        let client = try ParameterClient.connect(host: "127.0.0.1", port: port, role: .control, name: "ckpt-test")
        XCTAssertEqual(client.config.shardCount, 3)
        client.close()
        let restored = try pullWeights(port: port)
        for name in Self.tensorNames {
            XCTAssertEqual(restored[name]?.map(\.bitPattern), served[name]?.map(\.bitPattern), "re-split \(name)")
        }
    }

    // MARK: 6. psctl checkpoint --wait and psctl export against a running job

    func test_psctlCheckpointWait_andExport_whileTraining() throws {
        let cluster = try LocalCluster()
        // Six epochs (252 steps) of at least 10 ms each: the job outlasts the checkpoint and the export even when
        // a step is fast (one exchange) and psctl is slow (a loaded machine, a sanitized build).
        try cluster.startServer(Self.jobFlags(epochs: 6, everySteps: 1000))
        try cluster.startWorker(name: "w0", ["--quiet", "--debug-step-delay-ms", "10"])
        try cluster.startWorker(name: "w1", ["--quiet", "--debug-step-delay-ms", "10"])
        XCTAssertTrue(
            try waitUntil(timeout: .seconds(60)) {
                (try serverStatus(port: cluster.port)["completed_steps"] as? Int ?? 0) >= 5
            })

        let psctl = try ChildProcess(
            binary: "psctl", arguments: ["checkpoint", "--wait", "--server", "127.0.0.1:\(cluster.port)"])
        XCTAssertEqual(psctl.wait(timeout: .seconds(60)), 0, psctl.standardError)
        let printed = psctl.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines)
        let parts = printed.split(separator: " ").map(String.init)
        XCTAssertEqual(parts.count, 5, printed)
        XCTAssertEqual(parts.first, "checkpoint", printed)
        XCTAssertEqual(parts.last, "(durable)", printed)
        let path = parts.count > 1 ? parts[1] : ""
        let step = parts.count > 3 ? UInt64(parts[3]) : nil
        XCTAssertTrue(path.hasPrefix(cluster.checkpointDirectory + "/step-"), printed)
        let loaded = try CheckpointReader.load(directory: path)
        XCTAssertEqual(loaded.manifest.step, step)
        XCTAssertEqual(loaded.manifest.optimizer.step, step, "the weights hold exactly the recorded steps")
        XCTAssertGreaterThanOrEqual(step ?? 0, 5)
        XCTAssertLessThan(step ?? 252, 252, "taken while the job was running")

        // A relative path lands under the server's export directory (<checkpoint-dir>/exports by default).
        let exportDirectory = cluster.checkpointDirectory + "/exports/export"
        let export = try ChildProcess(
            binary: "psctl", arguments: ["export", "export", "--server", "127.0.0.1:\(cluster.port)"])
        XCTAssertEqual(export.wait(timeout: .seconds(60)), 0, export.standardError)
        XCTAssertTrue(export.standardOutput.contains("exported weights to \(exportDirectory)"), export.standardOutput)
        let shapes = ["fc1.weight": [64, 32], "fc1.bias": [32], "fc2.weight": [32, 10], "fc2.bias": [10]]
        for (name, shape) in shapes {
            let array = try NPY.read(path: exportDirectory + "/\(name).npy")
            XCTAssertEqual(array.shape, shape, name)
            XCTAssertTrue(array.values.allSatisfy(\.isFinite), name)
        }
        cluster.waitForJob()
        let final = try cluster.finalTensor("fc1.weight")
        XCTAssertNotEqual(
            try NPY.read(path: exportDirectory + "/fc1.weight.npy").values, final.values,
            "training went on after the export")
    }
}

// MARK: Helpers

/// The step `latest` names in checkpoint root `root`, or nil.
private func latestStep(_ root: String) -> UInt64? {
    guard let data = FileManager.default.contents(atPath: root + "/latest"),
        let text = String(data: data, encoding: .utf8)
    else { return nil }
    // The first line names the directory; the second carries the manifest's CRC-32C.
    let name = text.split(separator: "\n").first.map(String.init) ?? ""
    return CheckpointWriter.step(ofDirectoryName: name.trimmingCharacters(in: .whitespaces))
}

/// Step records as step -> loss.
private func lossesByStep(_ records: [[String: Any]]) throws -> [Int: Double] {
    var losses: [Int: Double] = [:]
    for record in records {
        let step = try XCTUnwrap(record["step"] as? Int)
        XCTAssertNil(losses[step], "step \(step) recorded twice")
        losses[step] = try XCTUnwrap(record["loss"] as? Double)
    }
    return losses
}

/// Starts `cluster`'s server with extra environment variables (LocalCluster.startServer sets none).
private func startServer(_ cluster: LocalCluster, _ flags: [String], environment: [String: String]) throws {
    let arguments =
        [
            "--host", "127.0.0.1", "--port", "0", "--checkpoint-dir", cluster.checkpointDirectory, "--log-level",
            "info",
        ] + flags
    let process = try ChildProcess(
        binary: "psserver", arguments: arguments, environment: environment.merging(["OPENBLAS_NUM_THREADS": "1"]) { $1 }
    )
    cluster.server = process
    let line = try process.waitForLine(matching: "event=listening", in: .standardError, timeout: .seconds(60))
    cluster.port = try XCTUnwrap(ChildProcess.port(inLine: line.components(separatedBy: " shards=")[0]))
}

/// The server's status document.
func serverStatus(port: UInt16) throws -> [String: Any] {
    let client = try ParameterClient.connect(host: "127.0.0.1", port: port, role: .control, name: "ckpt-test")
    defer { client.close() }
    let reply = try client.request(.status(StatusRequest())).wait(timeout: .seconds(10))
    guard case .message(.statusReply(let status)) = reply,
        let object = try JSONSerialization.jsonObject(with: Data(status.json.utf8)) as? [String: Any]
    else { throw ClusterError("unexpected status reply \(reply)") }
    return object
}

/// Every tensor the server holds, pulled shard by shard with a control connection and cut out of the flat vector.
private func pullWeights(port: UInt16) throws -> [String: [Float]] {
    let client = try ParameterClient.connect(host: "127.0.0.1", port: port, role: .control, name: "ckpt-test")
    defer { client.close() }
    let tensors = client.config.tensors
    let layout = ShardLayout(
        tensorElementCounts: tensors.map { $0.shape.reduce(1, *) }, shardCount: client.config.shardCount)
    var flat = [Float](repeating: .nan, count: layout.totalElements)
    try flat.withUnsafeMutableBufferPointer { all in
        for shard in 0..<layout.shardCount {
            let range = layout.range(ofShard: shard)
            _ = try client.pull(shard: shard, clock: 0, into: UnsafeMutableBufferPointer(rebasing: all[range]))
                .wait(timeout: .seconds(10))
        }
    }
    var result: [String: [Float]] = [:]
    for (index, tensor) in tensors.enumerated() {
        let start = layout.tensorOffsets[index]
        result[tensor.name] = Array(flat[start..<(start + layout.tensorElementCounts[index])])
    }
    return result
}
