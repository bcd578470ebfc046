import Foundation
import PSPosix
import PSTestSupport
import XCTest

/// `psctl run`: a local job like torchrun: prefixed output, the job's exit status, every wait bounded, every child
/// stopped on failure, timeout or SIGINT.
final class RunCommandTests: XCTestCase {
    /// Whether anything accepts connections on 127.0.0.1:`port`.
    private func isListening(_ port: UInt16) -> Bool {
        (try? Socket.connect(host: "127.0.0.1", port: port, timeout: .seconds(1)))?.close() != nil
    }

    private func port(in output: String) -> UInt16? {
        guard let range = output.range(of: "event=listening address=127.0.0.1:") else { return nil }
        return UInt16(output[range.upperBound...].prefix { $0.isNumber })
    }

    func test_run_twoWorkers_prefixesOutput_keepsLogs_exits0() throws {
        let directory = try TemporaryDirectory(prefix: "swiftps-run")
        let run = try ChildProcess(
            binary: "psctl",
            arguments: [
                "run", "--workers", "2", "--model", "softmax", "--data", "digits", "--epochs", "1", "--directory",
                directory.path, "--batch", "32",
            ])
        XCTAssertEqual(run.wait(timeout: .seconds(120)), 0, run.standardOutput + run.standardError)
        let output = run.standardOutput
        XCTAssertTrue(output.contains("[server] level=info"), output)
        XCTAssertTrue(output.contains("event=job-finished"), output)
        XCTAssertTrue(output.contains("[worker0] epoch 1/1"), output)
        XCTAssertTrue(output.contains("[worker1] epoch 1/1"), output)
        for file in ["server.log", "worker0.log", "worker1.log", "metrics.jsonl", "ckpt/final"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: directory.path + "/" + file), file)
        }
        if let port = port(in: output) { XCTAssertFalse(isListening(port), "the server is gone") }
    }

    /// psserver's --token reaches the workers (in their environment, not their command lines), and with TLS the
    /// workers get run's --worker-tls-* flags: a mutual-TLS job with a token trains to the end.
    func test_run_tokenAndMutualTLS_reachTheWorkers_exits0() throws {
        let directory = try TemporaryDirectory(prefix: "swiftps-run-tls")
        var arguments = [
            "run", "--workers", "1", "--directory", directory.path, "--model", "softmax", "--data", "digits",
            "--epochs", "1", "--batch", "64", "--token", "s3cret",
        ]
        let pki = try TestCertificates.make()
        if let pki {
            arguments += [
                "--tls-cert", pki.serverCertificatePath, "--tls-key", pki.serverKeyPath, "--tls-ca", pki.caPath,
                "--worker-tls-ca", pki.caPath, "--worker-tls-cert", pki.clientCertificatePath, "--worker-tls-key",
                pki.clientKeyPath,
            ]
        }
        let run = try ChildProcess(binary: "psctl", arguments: arguments)
        XCTAssertEqual(run.wait(timeout: .seconds(120)), 0, run.standardOutput + run.standardError)
        XCTAssertTrue(run.standardOutput.contains("event=job-finished"), run.standardOutput)
        XCTAssertTrue(run.standardOutput.contains("[worker0] epoch 1/1"), run.standardOutput)
        // With TLS the server refuses any peer without TLS and a client certificate: the worker had both.
        if pki == nil { throw XCTSkip("the token part ran; the TLS part needs the openssl command") }
    }

    /// A psserver that serves TLS (or asks for client certificates) without the workers' side given, and worker TLS
    /// flags without a TLS server, are usage errors before anything starts.
    func test_run_tlsFlagsThatCannotWork_exit64() throws {
        let job = ["--model", "softmax", "--data", "digits"]
        for (flags, message) in [
            (["--tls-cert", "s.pem", "--tls-key", "k.pem"], "give --worker-tls-ca"),
            (
                ["--worker-tls-ca", "ca.pem", "--tls-cert", "s.pem", "--tls-key", "k.pem", "--tls-ca", "ca.pem"],
                "give --worker-tls-cert and --worker-tls-key"
            ),
            (["--worker-tls-ca", "ca.pem"], "for a psserver that serves TLS"),
            (["--worker-tls-cert", "c.pem"], "--worker-tls-cert and --worker-tls-key go together"),
        ] {
            let run = try ChildProcess(binary: "psctl", arguments: ["run"] + job + flags)
            XCTAssertEqual(run.wait(timeout: .seconds(30)), 64, "\(flags): \(run.standardError)")
            XCTAssertTrue(run.standardError.contains(message), "\(flags): \(run.standardError)")
        }
    }

    func test_run_serverThatCannotStart_failsAtOnceWithItsError() throws {
        let start = Date()
        let run = try ChildProcess(
            binary: "psctl", arguments: ["run", "--workers", "1", "--model", "softmax", "--data", "/nonexistent.csv"])
        XCTAssertEqual(run.wait(timeout: .seconds(60)), 1, run.standardError)
        XCTAssertTrue(run.standardError.contains("psserver exited before it listened"), run.standardError)
        XCTAssertTrue(run.standardError.contains("/nonexistent.csv"), run.standardError)
        XCTAssertLessThan(Date().timeIntervalSince(start), 30)
    }

    func test_run_usageErrors_exit64() throws {
        for arguments in [["run", "--data", "digits"], ["run", "--model", "softmax", "--port", "7000"]] {
            let run = try ChildProcess(binary: "psctl", arguments: arguments)
            XCTAssertEqual(run.wait(timeout: .seconds(30)), 64, "\(arguments): \(run.standardError)")
            XCTAssertTrue(run.standardError.contains("Usage: psctl run"), run.standardError)
        }
    }

    func test_run_timeout_stopsEveryProcess_andFails() throws {
        let run = try ChildProcess(
            binary: "psctl",
            arguments: [
                "run", "--workers", "2", "--timeout", "4", "--model", "softmax", "--data", "digits", "--epochs", "1000",
            ])
        let code = run.wait(timeout: .seconds(60))
        XCTAssertEqual(code, 1, run.standardError)
        XCTAssertTrue(run.standardError.contains("did not end within --timeout"), run.standardError)
        if let port = port(in: run.standardOutput) { XCTAssertFalse(isListening(port), "the server was stopped") }
    }

    func test_run_SIGINT_stopsEveryProcess_exit130() throws {
        let run = try ChildProcess(
            binary: "psctl",
            arguments: ["run", "--workers", "2", "--model", "softmax", "--data", "digits", "--epochs", "1000"])
        let line = try run.waitForLine(matching: "\\[worker1\\] epoch", in: .standardOutput, timeout: .seconds(60))
        XCTAssertFalse(line.isEmpty)
        let port = try XCTUnwrap(port(in: run.standardOutput))
        XCTAssertTrue(isListening(port))
        // The workers (which install no handler of their own) were spawned with SIGTERM and SIGINT unblocked,
        // although psctl blocks them in its own threads: SIGTERM stops them.
        let children =
            (try? String(contentsOfFile: "/proc/\(run.processID)/task/\(run.processID)/children", encoding: .utf8))?
            .split(separator: " ").compactMap { Int32($0) } ?? []
        var workersSeen = 0
        for child in children {
            guard let status = try? String(contentsOfFile: "/proc/\(child)/status", encoding: .utf8),
                status.contains("Name:\tpsworker"),
                let line = status.split(separator: "\n").first(where: { $0.hasPrefix("SigBlk:") }),
                let mask = UInt64(line.dropFirst("SigBlk:".count).trimmingCharacters(in: .whitespaces), radix: 16)
            else { continue }
            workersSeen += 1
            XCTAssertEqual(mask & (1 << (UInt64(SIGTERM) - 1) | 1 << (UInt64(SIGINT) - 1)), 0, line.description)
        }
        if FileManager.default.fileExists(atPath: "/proc/\(run.processID)/task/\(run.processID)/children") {
            XCTAssertEqual(workersSeen, 2, "children \(children)")
        }
        run.kill(signal: SIGINT)
        XCTAssertEqual(run.wait(timeout: .seconds(30)), 130, run.standardError)
        XCTAssertTrue(run.standardError.contains("stopped every process"), run.standardError)
        XCTAssertFalse(isListening(port), "the server was stopped")
    }
}
