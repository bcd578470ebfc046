import Foundation
import PSTestSupport
import XCTest

/// Runs the built executables and checks their help, usage errors and exit codes.
final class CommandLineTests: XCTestCase {
    func runBinary(_ name: String, _ arguments: [String], environment: [String: String] = [:]) throws -> (
        code: Int32?, out: String, err: String
    ) {
        let process = try ChildProcess(binary: name, arguments: arguments, environment: environment)
        let code = process.wait(timeout: .seconds(30))
        return (code, process.standardOutput, process.standardError)
    }

    func test_everyCommand_hasHelp_listingItsOptions() throws {
        let expectations: [(String, [String], [String])] = [
            (
                "psserver", ["--help"],
                ["--shards <n>", "--port <port>", "--mode <bsp|ssp|async>", "--token", "PS_TOKEN"]
            ),
            (
                "psworker", ["--help"],
                ["--server <host:port>", "PS_SERVER", "--reconnect-timeout", "--debug-step-delay-ms"]
            ),
            ("psctl", ["--help"], ["status", "checkpoint", "shutdown", "demo"]),
            ("psctl", ["checkpoint", "--help"], ["--wait", "--server <host:port>"]),
            ("psctl", ["shutdown", "--help"], ["--no-checkpoint", "--restore latest"]),
            ("psctl", ["run", "--help"], ["--workers <n>", "--timeout <seconds>", "<psserver-flags>", "torchrun"]),
            ("psbench", ["--help"], ["wire", "server", "train"]),
        ]
        for (binary, arguments, needles) in expectations {
            let result = try runBinary(binary, arguments)
            XCTAssertEqual(result.code, 0, "\(binary) \(arguments)")
            XCTAssertTrue(result.out.hasPrefix("OVERVIEW: "), result.out)
            for needle in needles {
                XCTAssertTrue(result.out.contains(needle), "\(binary) \(arguments) help lacks \(needle)")
            }
            XCTAssertEqual(result.err, "")
        }
    }

    func test_unknownOption_isAUsageError_exit64() throws {
        let result = try runBinary("psserver", ["--shardz", "4"])
        XCTAssertEqual(result.code, 64)
        XCTAssertTrue(result.err.hasPrefix("Error: "), result.err)
        XCTAssertTrue(result.err.contains("--shardz"), result.err)
        XCTAssertTrue(result.err.contains("Usage: psserver"), result.err)
        XCTAssertEqual(result.out, "")
    }

    func test_badValues_nameTheFlag() throws {
        let cases: [(String, [String], String)] = [
            ("psserver", ["--port", "99999"], "--port"),
            ("psserver", ["--mode", "eventual"], "--mode"),
            ("psserver", ["--optimizer", "lbfgs"], "--optimizer"),
            ("psserver", ["--model", "mlp:0", "--port", "0"], "--model"),
            ("psserver", ["--lr", "-1", "--port", "0"], "--lr"),
            ("psworker", ["--server", "localhost"], "--server"),
        ]
        for (binary, arguments, flag) in cases {
            let result = try runBinary(binary, arguments)
            XCTAssertNotEqual(result.code, 0, "\(binary) \(arguments)")
            XCTAssertTrue(result.err.contains(flag), "\(binary) \(arguments): \(result.err)")
        }
    }

    func test_psctl_withoutServer_failsWithOneLineReason() throws {
        let result = try runBinary("psctl", ["--server", "127.0.0.1:1", "status", "--timeout", "2"])
        XCTAssertEqual(result.code, 1)
        XCTAssertTrue(result.err.hasPrefix("Error: cannot talk to 127.0.0.1:1"), result.err)
        XCTAssertEqual(result.err.split(separator: "\n").count, 1, result.err)
    }

    func test_psworker_withoutServer_givesUpAfterReconnectTimeout() throws {
        let start = Date()
        let result = try runBinary("psworker", ["--server", "127.0.0.1:1", "--reconnect-timeout", "1"])
        XCTAssertEqual(result.code, 1)
        XCTAssertTrue(result.err.contains("Error: cannot reach the server at 127.0.0.1:1"), result.err)
        XCTAssertLessThan(Date().timeIntervalSince(start), 20)
    }

    func test_valueErrorsAndMisplacedFlags_exit64WithUsage_namingTheFlag() throws {
        let cases: [(String, [String], String)] = [
            ("psserver", ["--port", "0", "--model", "softmax", "--data", "synthetic:0,5,3"], "--data"),
            ("psserver", ["--port", "0", "--model", "softmax", "--mode", "bsp", "--staleness", "3"], "--staleness"),
            ("psserver", ["--port", "0", "--batch", "32"], "--batch"),
            ("psserver", ["--port", "0", "--workers", "3"], "--workers"),
            ("psserver", ["--port", "0", "--model", "softmax", "--compression", "topk:2"], "--compression"),
            ("psserver", ["--port", "0", "--compression", "fp16"], "--compression"),
            (
                "psserver", ["--port", "0", "--model", "softmax", "--compression", "topk:0.1", "--compress-pulls"],
                "--compress-pulls"
            ),
            ("psworker", ["--server", "127.0.0.1:1", "--log-level", "chatty"], "--log-level"),
            ("psctl", [], "Missing subcommand"),
        ]
        for (binary, arguments, needle) in cases {
            let result = try runBinary(binary, arguments)
            XCTAssertEqual(result.code, 64, "\(binary) \(arguments): \(result.err)")
            XCTAssertTrue(result.err.hasPrefix("Error: "), result.err)
            XCTAssertTrue(result.err.contains(needle), "\(binary) \(arguments): \(result.err)")
            XCTAssertTrue(result.err.contains("Usage: \(binary)"), result.err)
        }
    }

    func test_psserver_unwritableCheckpointDir_failsAtStartUp() throws {
        let directory = try TemporaryDirectory(prefix: "swiftps-unwritable")
        // A path under a regular file cannot be created, even by root (permission bits would not stop root).
        let file = directory.path + "/file"
        XCTAssertTrue(FileManager.default.createFile(atPath: file, contents: Data("x".utf8)))
        let flags = ["--host", "127.0.0.1", "--port", "0", "--model", "softmax", "--checkpoint-dir", file + "/ckpt"]
        let result = try runBinary("psserver", flags)
        XCTAssertEqual(result.code, 1, result.err)
        XCTAssertTrue(result.err.contains("--checkpoint-dir \(file)/ckpt is not writable"), result.err)
        XCTAssertFalse(result.err.contains("event=listening"), result.err)
    }

    func test_psserver_badLabels_nameTheFileAndLine_withTheRightHint() throws {
        let directory = try TemporaryDirectory(prefix: "swiftps-labels")
        let rows = (0..<8).map { "\($0 % 3),0.\($0),0.5" }
        let cases: [(String, String, [String])] = [
            (
                "fraction.csv", (rows + ["3.5,0.1,0.2"]).joined(separator: "\n"),
                ["line 9: label 3.5 is not a class index"]
            ),
            (
                "negative.csv", (["label,a,b"] + rows + ["-1,0.1,0.2"]).joined(separator: "\n"),
                ["line 10: label -1 is negative", "write 0 for -1"]
            ),
            (
                "lastcolumn.csv", (0..<8).map { "0.\($0),0.5,\($0 % 3)" }.joined(separator: "\n"),
                ["line 2: label 0.1 is not a class index", "--label-column last"]
            ),
        ]
        for (name, text, needles) in cases {
            let path = directory.path + "/" + name
            try text.write(toFile: path, atomically: true, encoding: .utf8)
            let result = try runBinary("psserver", ["--port", "0", "--model", "softmax", "--data", path])
            XCTAssertEqual(result.code, 1, "\(name): \(result.err)")
            XCTAssertTrue(result.err.hasPrefix("Error: \(path): "), result.err)
            for needle in needles {
                XCTAssertTrue(result.err.contains(needle), "\(name) lacks \(needle): \(result.err)")
            }
            XCTAssertFalse(result.err.contains("--model linear") && name == "negative.csv", result.err)
        }
    }

    func test_psserver_badTestSet_missingOrWrongLabelColumn_isRefusedAtStartUp() throws {
        let directory = try TemporaryDirectory(prefix: "swiftps-testset")
        let train = directory.path + "/train.csv"
        let test = directory.path + "/test.csv"
        try (0..<12).map { "\($0 % 3),0.\($0),0.5" }.joined(separator: "\n").write(
            toFile: train, atomically: true, encoding: .utf8)
        // The test set keeps its label last: read with --label-column first, its "labels" are 0.x.
        try (0..<6).map { "0.\($0),0.5,\($0 % 3)" }.joined(separator: "\n").write(
            toFile: test, atomically: true, encoding: .utf8)
        let job = ["--port", "0", "--model", "softmax", "--data", train, "--batch", "2"]
        let missing = try runBinary("psserver", job + ["--test", directory.path + "/nope.csv"])
        XCTAssertEqual(missing.code, 1, missing.err)
        XCTAssertTrue(missing.err.contains("nope.csv: no such file"), missing.err)
        XCTAssertFalse(missing.err.contains("event=listening"), missing.err)
        let column = try runBinary("psserver", job + ["--test", test])
        XCTAssertEqual(column.code, 1, column.err)
        XCTAssertTrue(column.err.contains("\(test): line 2: label 0.1 is not a class index"), column.err)
        XCTAssertTrue(column.err.contains("--label-column last"), column.err)
    }

    func test_psserver_missingData_isAClearError() throws {
        let result = try runBinary("psserver", ["--port", "0", "--model", "softmax", "--data", "/nonexistent/x.csv"])
        XCTAssertNotEqual(result.code, 0)
        XCTAssertTrue(result.err.contains("/nonexistent/x.csv"), result.err)
    }
}

/// Numbers that are out of range, NaN, infinite, or would trap a later conversion are usage errors naming the flag.
final class CommandLineRangeTests: XCTestCase {
    func test_outOfRangeNumbers_exit64WithErrorNamingTheFlag() throws {
        let directory = NSTemporaryDirectory() + "swiftps-range-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let job = ["--port", "0", "--model", "softmax"]
        let cases: [(String, [String], String)] = [
            (
                "psserver", job + ["--checkpoint-every-seconds", "0", "--checkpoint-dir", directory],
                "--checkpoint-every-seconds"
            ),
            (
                "psserver", ["--port", "0", "--checkpoint-every-seconds", "nan", "--checkpoint-dir", directory],
                "--checkpoint-every-seconds"
            ),
            ("psserver", job + ["--worker-timeout", "1e20"], "--worker-timeout"),
            ("psserver", ["--port", "0", "--worker-timeout", "inf"], "--worker-timeout"),
            ("psserver", job + ["--wait-timeout", "nan"], "--wait-timeout"),
            ("psserver", ["--port", "0", "--wait-timeout", "-1"], "--wait-timeout"),
            ("psserver", ["--port", "0", "--shards", "0"], "--shards"),
            ("psserver", ["--port", "0", "--max-frame-bytes", "99999999999"], "--max-frame-bytes"),
            ("psserver", ["--port", "0", "--staleness", "18446744073709551615"], "--staleness"),
            ("psserver", ["--port", "0", "--keep-checkpoints", "-2"], "--keep-checkpoints"),
            ("psserver", job + ["--workers", "0"], "--workers"),
            ("psserver", job + ["--workers", "9223372036854775807", "--batch", "2"], "--workers"),
            ("psserver", job + ["--workers", "4611686018427387904", "--batch", "4"], "--workers"),
            ("psserver", job + ["--batch", "9223372036854775807", "--workers", "2"], "--batch"),
            ("psserver", job + ["--epochs", "0"], "--epochs"),
            ("psserver", job + ["--epochs", "9223372036854775807"], "--epochs"),
            ("psserver", ["--port", "0", "--model", "mlp:4611686018427387904"], "--model"),
            ("psworker", ["--threads", "0"], "--threads"),
            ("psworker", ["--threads", "99999999999"], "--threads"),
            ("psworker", ["--reconnect-timeout", "inf"], "--reconnect-timeout"),
            ("psworker", ["--reconnect-timeout", "1e300"], "--reconnect-timeout"),
            ("psworker", ["--reconnect-timeout", "nan"], "--reconnect-timeout"),
            ("psworker", ["--debug-step-delay-ms", "-1"], "--debug-step-delay-ms"),
            ("psworker", ["--debug-max-steps", "-1"], "--debug-max-steps"),
            ("psctl", ["status", "--timeout", "1e300"], "--timeout"),
            ("psctl", ["status", "--timeout", "inf"], "--timeout"),
            ("psctl", ["status", "--timeout", "nan"], "--timeout"),
            ("psctl", ["demo", "--epochs", "0"], "--epochs"),
            ("psbench", ["modes", "--delay-ms", "-1"], "--delay-ms"),
        ]
        for (binary, arguments, needle) in cases {
            let process = try ChildProcess(binary: binary, arguments: arguments)
            let code = process.wait(timeout: .seconds(30))
            let err = process.standardError
            XCTAssertEqual(code, 64, "\(binary) \(arguments): \(err)")
            XCTAssertTrue(err.hasPrefix("Error: "), "\(binary) \(arguments): \(err)")
            XCTAssertTrue(err.split(separator: "\n").first?.contains(needle) ?? false, "\(binary) \(arguments): \(err)")
            XCTAssertTrue(err.contains("Usage: \(binary)"), "\(binary) \(arguments): \(err)")
        }
    }

    func test_outOfRangeSeconds_exactMessage() throws {
        let process = try ChildProcess(
            binary: "psserver", arguments: ["--port", "0", "--model", "softmax", "--worker-timeout", "1e20"])
        XCTAssertEqual(process.wait(timeout: .seconds(30)), 64)
        XCTAssertEqual(
            process.standardError.split(separator: "\n").first,
            "Error: --worker-timeout must be a positive number of seconds, at most 31536000, got 1e+20")
    }
}

/// An operator's `psctl` call (and so every health probe) leaves no info line on the server.
final class QuietControlTests: XCTestCase {
    func test_psctlStatus_logsNothingAtInfoOnTheServer() throws {
        let server = try ChildProcess(
            binary: "psserver", arguments: ["--host", "127.0.0.1", "--port", "0", "--log-level", "info"])
        defer { _ = server.terminateAndWait() }
        let line = try server.waitForLine(matching: "event=listening", in: .standardError, timeout: .seconds(60))
        guard let port = ChildProcess.port(inLine: line.components(separatedBy: " shards=")[0]) else {
            return XCTFail(line)
        }
        let before = server.standardError
        for _ in 0..<3 {
            let psctl = try ChildProcess(binary: "psctl", arguments: ["status", "--server", "127.0.0.1:\(port)"])
            XCTAssertEqual(psctl.wait(timeout: .seconds(30)), 0, psctl.standardError)
        }
        Thread.sleep(forTimeInterval: 0.2)
        let added = server.standardError.dropFirst(before.count)
        XCTAssertFalse(added.contains("level=info"), String(added))
    }
}

/// `psctl demo` with a server that cannot start fails at once with the server's error, not after 120 s.
final class DemoFailureTests: XCTestCase {
    func test_demo_badData_failsAsSoonAsTheServerExits_showingItsError() throws {
        let start = Date()
        let demo = try ChildProcess(binary: "psctl", arguments: ["demo", "--data", "/nonexistent/train.csv"])
        let code = demo.wait(timeout: .seconds(60))
        XCTAssertEqual(code, 1, demo.standardError)
        XCTAssertTrue(demo.standardError.contains("psserver exited before it listened"), demo.standardError)
        XCTAssertTrue(demo.standardError.contains("/nonexistent/train.csv"), demo.standardError)
        XCTAssertLessThan(Date().timeIntervalSince(start), 30)
    }
}
