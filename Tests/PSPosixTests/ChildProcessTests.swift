import Foundation
import PSPosix
import PSTestSupport
import XCTest

final class ChildProcessTests: XCTestCase {
    private let shell = URL(fileURLWithPath: "/bin/sh")

    func test_waitForLine_findsListeningLine_andTerminateGivesSignalCode() throws {
        let child = try ChildProcess(
            executable: shell,
            arguments: ["-c", "echo starting; echo \"listening on 127.0.0.1:4242\"; exec sleep 30"]
        )
        let line = try child.waitForLine(matching: "listening on .*:[0-9]+", timeout: .seconds(10))
        XCTAssertEqual(line, "listening on 127.0.0.1:4242")
        XCTAssertEqual(ChildProcess.port(inLine: line), 4242)
        XCTAssertEqual(child.terminateAndWait(), 128 + Signals.terminate)
        XCTAssertEqual(child.terminationSignal, Signals.terminate)
    }

    func test_wait_returnsExitCode_andCapturesBothStreams() throws {
        let child = try ChildProcess(
            executable: shell,
            arguments: ["-c", "echo out; echo \"err $PS_TEST_VALUE\" >&2; exit 3"],
            environment: ["PS_TEST_VALUE": "x1"]
        )
        XCTAssertEqual(child.wait(timeout: .seconds(10)), 3)
        XCTAssertEqual(child.standardOutput, "out\n")
        XCTAssertEqual(child.standardError, "err x1\n")
        XCTAssertEqual(try child.waitForLine(matching: "^err", in: .standardError), "err x1")
    }

    func test_waitForLine_childExitsWithoutLine_throwsQuotingOutput() throws {
        let child = try ChildProcess(executable: shell, arguments: ["-c", "echo nothing useful; exit 2"])
        XCTAssertThrowsError(try child.waitForLine(matching: "listening", timeout: .seconds(10))) {
            XCTAssertTrue("\($0)".contains("nothing useful"), "\($0)")
            XCTAssertTrue("\($0)".contains("exit code 2"), "\($0)")
        }
    }

    func test_wait_timesOut_thenKillEndsTheChild() throws {
        let child = try ChildProcess(executable: shell, arguments: ["-c", "exec sleep 30"])
        XCTAssertNil(child.wait(timeout: .milliseconds(50)))
        child.kill(signal: Signals.kill)
        XCTAssertEqual(child.wait(timeout: .seconds(10)), 137)
    }

    func test_deinit_killsARunningChild() throws {
        var child: ChildProcess? = try ChildProcess(executable: shell, arguments: ["-c", "exec sleep 30"])
        let processID = try XCTUnwrap(child?.processID)
        child = nil
        // The child was killed and reaped: signalling its pid now fails with ESRCH.
        XCTAssertThrowsError(try Signals.send(0, toProcess: processID))
    }

    func test_binary_missing_throwsNamingTheSearchedDirectories() {
        XCTAssertThrowsError(try TestPaths.binary(named: "no-such-binary")) {
            XCTAssertTrue("\($0)".contains("no-such-binary"))
        }
        XCTAssertTrue(
            FileManager.default.fileExists(atPath: TestPaths.packageRoot.appendingPathComponent("Package.swift").path))
    }

    func test_binary_builtExecutable_isFoundNextToTheTestBundle() throws {
        let psctl = try TestPaths.binary(named: "psctl")
        XCTAssertEqual(psctl.lastPathComponent, "psctl")
        XCTAssertTrue(FileManager.default.isExecutableFile(atPath: psctl.path))
    }

    func test_testThread_rethrowsTheBodysError() {
        let thread = TestThread { () throws -> Int in throw TestSupportError("boom") }
        XCTAssertThrowsError(try thread.join()) { XCTAssertEqual("\($0)", "boom") }
    }
}
