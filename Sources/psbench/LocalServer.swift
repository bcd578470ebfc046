import Foundation
import PSPosix

/// Starts `psserver` (next to psbench) on 127.0.0.1 port 0 with its log in `logPath`, and waits (at most two
/// minutes) for the `listening` line; returns the process and the port it bound.
func startLocalServer(
    binDirectory: URL, arguments: [String], logPath: String, environment: [String: String]
) throws -> (process: Process, port: String) {
    _ = FileManager.default.createFile(atPath: logPath, contents: nil)
    let server = Process()
    server.executableURL = binDirectory.appendingPathComponent("psserver")
    server.arguments = ["--host", "127.0.0.1", "--port", "0"] + arguments
    server.standardError = FileHandle(forWritingAtPath: logPath)
    server.environment = environment
    try server.run()
    let deadline = Date(timeIntervalSinceNow: 120)
    while Date() < deadline, server.isRunning {
        Thread.sleep(forTimeInterval: 0.05)
        let text = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
        if let range = text.range(of: "address=127.0.0.1:") {
            return (server, String(text[range.upperBound...].prefix { $0.isNumber }))
        }
    }
    if server.isRunning { server.terminate() }
    throw BenchError("psserver did not start (log: \(logPath))")
}

/// Runs one whole job locally: `psserver` with `serverArguments` plus `workers` workers named `<name>0`, `<name>1`,
/// …, all with one OpenBLAS thread, in a scratch directory that is removed afterwards. Waits at most `seconds` for
/// the job to end (then stops every process and throws) and returns the records of its metrics file.
func runLocalJob(name: String, workers: Int, serverArguments: [String], seconds: Double = 1800) throws
    -> [[String: Any]]
{
    try runLocalJobWithWorkerLogs(name: name, workers: workers, serverArguments: serverArguments, seconds: seconds)
        .records
}

/// `runLocalJob`, also returning every worker's log (its stderr), in rank order, and the job's CPU time sampled
/// while it ran (`JobCPUSampler`, every 50 ms).
func runLocalJobWithWorkerLogs(name: String, workers: Int, serverArguments: [String], seconds: Double = 1800) throws
    -> (records: [[String: Any]], workerLogs: [String], cpu: JobCPUSampler)
{
    let binDirectory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    let directory = NSTemporaryDirectory() + "psbench-\(name)-\(Host.processID())-\(workers)"
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let metrics = directory + "/metrics.jsonl"
    var environment = ProcessInfo.processInfo.environment
    environment["OPENBLAS_NUM_THREADS"] = "1"
    let (server, port) = try startLocalServer(
        binDirectory: binDirectory, arguments: serverArguments + ["--metrics-out", metrics],
        logPath: directory + "/server.log", environment: environment)
    var processes = [server]
    defer { for process in processes where process.isRunning { process.terminate() } }
    for rank in 0..<workers {
        let worker = Process()
        worker.executableURL = binDirectory.appendingPathComponent("psworker")
        worker.arguments = ["--server", "127.0.0.1:\(port)", "--name", "\(name)\(rank)", "--quiet"]
        let workerLog = directory + "/worker\(rank).log"
        _ = FileManager.default.createFile(atPath: workerLog, contents: nil)
        worker.standardError = FileHandle(forWritingAtPath: workerLog)
        worker.environment = environment
        try worker.run()
        processes.append(worker)
    }
    let cpu = JobCPUSampler(
        metricsPath: metrics, server: server.processIdentifier, workers: processes.dropFirst().map(\.processIdentifier))
    let deadline = MonotonicClock.deadline(afterSeconds: seconds)
    while processes.contains(where: \.isRunning) {
        guard MonotonicClock.nanoseconds() < deadline else {
            throw BenchError("the \(name) job did not end within \(Int(seconds)) s")
        }
        Thread.sleep(forTimeInterval: 0.05)
        if processes.allSatisfy(\.isRunning) { cpu.sample() }
    }
    let text = try String(contentsOfFile: metrics, encoding: .utf8)
    let records = try text.split(separator: "\n").compactMap {
        try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
    }
    let logs = (0..<workers).map {
        (try? String(contentsOfFile: directory + "/worker\($0).log", encoding: .utf8)) ?? ""
    }
    return (records, logs, cpu)
}
