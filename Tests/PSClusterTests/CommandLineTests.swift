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

    func test_psserver_missingData_isAClearError() throws {
        let result = try runBinary("psserver", ["--port", "0", "--model", "softmax", "--data", "/nonexistent/x.csv"])
        XCTAssertNotEqual(result.code, 0)
        XCTAssertTrue(result.err.contains("/nonexistent/x.csv"), result.err)
    }
}
