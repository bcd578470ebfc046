import Foundation
import PSTestSupport
import XCTest

/// Proves that a `make tsan` build is really sanitized, so a silently dropped `--sanitize=thread` fails CI.
///
/// `make tsan` sets `PS_TSAN=1`; in any other build the race test skips. The `LockedValue` counter must run
/// clean in every build (under the sanitizer: no report, so the lock is visible to it).
final class ThreadSanitizerTests: XCTestCase {
    private func requireSanitizedBuild() throws {
        try XCTSkipUnless(
            ProcessInfo.processInfo.environment["PS_TSAN"] == "1",
            "not a ThreadSanitizer build: `make tsan` runs this with PS_TSAN=1")
    }

    func test_unguardedCounter_sanitizedBuild_exits66WithDataRaceReport() throws {
        try requireSanitizedBuild()
        let probe = try ChildProcess(binary: "pstsan-probe", arguments: ["race"], expectsSanitizerReport: true)
        let code = probe.wait(timeout: .seconds(60))
        XCTAssertEqual(code, 66, "pstsan-probe race should exit 66 after a report; stderr:\n\(probe.standardError)")
        XCTAssertTrue(
            probe.standardError.contains("ThreadSanitizer: data race"),
            "no data race report from pstsan-probe: is the build sanitized? stderr:\n\(probe.standardError)")
    }

    func test_launchedBinaries_sanitizedBuild_comeFromTheTestBundlesBuildAndAreSanitized() throws {
        try requireSanitizedBuild()
        let bundleDirectory = try XCTUnwrap(CommandLine.arguments.first.map { URL(fileURLWithPath: $0) })
            .deletingLastPathComponent().standardizedFileURL
        for name in ["psserver", "psworker", "psctl", "psbench", "pstsan-probe"] {
            let binary = try TestPaths.binary(named: name)
            XCTAssertEqual(
                binary.deletingLastPathComponent().standardizedFileURL.path, bundleDirectory.path,
                "\(name) would be launched from outside the sanitized build")
            let bytes = try Data(contentsOf: binary, options: .alwaysMapped)
            XCTAssertNotNil(bytes.range(of: Data("__tsan_init".utf8)), "\(name) has no ThreadSanitizer runtime")
        }
    }

    func test_lockedValueCounter_anyBuild_runsCleanAndCountsEveryIncrement() throws {
        let probe = try ChildProcess(binary: "pstsan-probe", arguments: ["locked"])
        XCTAssertEqual(probe.wait(timeout: .seconds(60)), 0, "stderr:\n\(probe.standardError)")
        XCTAssertEqual(probe.standardOutput, "locked: counter 20000\n")
    }
}
