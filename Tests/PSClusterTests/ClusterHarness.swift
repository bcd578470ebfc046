import Foundation
import PSCheckpoint
import PSTestSupport
import XCTest

/// Runs real `psserver` / `psworker` processes on 127.0.0.1 with port 0 and collects their results.
final class LocalCluster {
    let directory: TemporaryDirectory
    var server: ChildProcess?
    var workers: [ChildProcess] = []
    var port: UInt16 = 0

    init() throws {
        directory = try TemporaryDirectory(prefix: "swiftps-cluster")
    }

    var checkpointDirectory: String { directory.path + "/ckpt" }
    var metricsPath: String { directory.path + "/metrics.jsonl" }

    /// Starts the server with the given job flags and waits for its `listening` line.
    func startServer(_ flags: [String], restore: Bool = false) throws {
        var arguments = [
            "--host", "127.0.0.1", "--port", "0", "--checkpoint-dir", checkpointDirectory, "--metrics-out",
            metricsPath + (restore ? ".restored" : ""), "--log-level", "info",
        ]
        arguments += flags
        if restore { arguments += ["--restore", "latest"] }
        let process = try ChildProcess(
            binary: "psserver", arguments: arguments,
            environment: ["OPENBLAS_NUM_THREADS": "1"])
        server = process
        let line = try process.waitForLine(matching: "event=listening", in: .standardError, timeout: .seconds(60))
        guard let range = line.range(of: "address=127.0.0.1:"),
            let port = UInt16(line[range.upperBound...].prefix { $0.isNumber })
        else { throw ClusterError("cannot read the port from \(line)") }
        self.port = port
    }

    /// Starts a worker named `name` with extra flags.
    @discardableResult
    func startWorker(name: String, _ flags: [String] = [], reconnectTimeout: Int = 10) throws -> ChildProcess {
        let process = try ChildProcess(
            binary: "psworker",
            arguments: ["--server", "127.0.0.1:\(port)", "--name", name, "--reconnect-timeout", "\(reconnectTimeout)"]
                + flags,
            environment: ["OPENBLAS_NUM_THREADS": "1"])
        workers.append(process)
        return process
    }

    /// Waits for every worker and the server to exit; fails with their logs if any did not exit 0.
    func waitForJob(timeout: Double = 180, file: StaticString = #filePath, line: UInt = #line) {
        for (index, worker) in workers.enumerated() {
            let code = worker.wait(timeout: .seconds(timeout))
            XCTAssertEqual(
                code, 0, "worker \(index) exit \(String(describing: code)): \(worker.standardError)",
                file: file, line: line)
        }
        let code = server?.wait(timeout: .seconds(60))
        XCTAssertEqual(
            code, 0, "server exit \(String(describing: code)): \(server?.standardError ?? "")",
            file: file, line: line)
    }

    /// The final weights the server wrote, by tensor name.
    func finalTensor(_ name: String) throws -> NPYArray {
        try NPY.read(path: checkpointDirectory + "/final/\(name).npy")
    }

    /// The metrics file's records of one type.
    func records(type: String, path: String? = nil) throws -> [[String: Any]] {
        let text = try String(contentsOfFile: path ?? metricsPath, encoding: .utf8)
        return text.split(separator: "\n").compactMap { line in
            guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                object["type"] as? String == type
            else { return nil }
            return object
        }
    }

    /// Runs the real `psctl` against this cluster's server; returns its exit code and stdout + stderr.
    func psctl(_ arguments: [String]) throws -> (code: Int32?, output: String) {
        let process = try ChildProcess(
            binary: "psctl", arguments: arguments + ["--server", "127.0.0.1:\(port)", "--timeout", "10"])
        let code = process.wait(timeout: .seconds(30))
        return (code, process.standardOutput + process.standardError)
    }

    deinit {
        for worker in workers { _ = worker.terminateAndWait() }
        _ = server?.terminateAndWait()
    }
}

struct ClusterError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// The directory holding the team's shared reference files, or nil (the test is skipped) when absent.
func sharedDirectory() -> String? {
    if let override = ProcessInfo.processInfo.environment["PS_SHARED_DIR"] { return override }
    let candidate = TestPaths.packageRoot.deletingLastPathComponent().appendingPathComponent("shared").path
    return FileManager.default.fileExists(atPath: candidate + "/reference/README.md") ? candidate : nil
}
