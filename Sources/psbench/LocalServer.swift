import Foundation

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
