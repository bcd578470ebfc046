import Foundation
import PSClient
import PSTestSupport
import PSWire
import XCTest

/// A plain store under an address-space limit (`ulimit -v`, set in a child shell) receives a registration larger
/// than the limit: it answers with an error frame and keeps serving instead of trapping in the allocation.
final class MemoryLimitClusteredTests: XCTestCase {
    func test_registerBeyondUlimit_isResourceExhausted_notACrash() throws {
        // ThreadSanitizer maps terabytes of shadow memory at start-up, which no 1.5 GiB address-space limit allows:
        // a sanitized psserver cannot even start under `ulimit -v`, so this test runs only in plain builds.
        try XCTSkipIf(
            ProcessInfo.processInfo.environment["PS_TSAN"] == "1",
            "a ThreadSanitizer build cannot run under ulimit -v (its shadow memory needs the address space)")
        let binary = try TestPaths.binary(named: "psserver").path
        // 1.5 GiB of address space; the registration asks for 2^29 floats (2 GiB of weights alone).
        let server = try ChildProcess(
            executable: URL(fileURLWithPath: "/bin/bash"),
            arguments: [
                "-c",
                "ulimit -v 1572864 && exec '\(binary)' --host 127.0.0.1 --port 0 --shards 16 --log-level info",
            ],
            environment: ["OPENBLAS_NUM_THREADS": "1"])
        defer { _ = server.terminateAndWait() }
        let line = try server.waitForLine(matching: "event=listening", in: .standardError, timeout: .seconds(60))
        guard let range = line.range(of: "address=127.0.0.1:"),
            let port = UInt16(line[range.upperBound...].prefix { $0.isNumber })
        else { return XCTFail("no port in \(line)") }
        let client = try ParameterClient.connect(
            host: "127.0.0.1", port: port, role: .worker, name: "big", requestTimeout: .seconds(60))
        defer { client.close() }
        XCTAssertThrowsError(
            try client.register([TensorSpec(name: "huge", shape: [1 << 29], initializer: .zeros)])
        ) {
            guard case ClientError.remote(let code, let message) = $0 else { return XCTFail("\($0)") }
            XCTAssertEqual(code, .resourceExhausted)
            XCTAssertTrue(message.contains("the system refused to allocate"), message)
        }
        XCTAssertTrue(server.isRunning, server.standardError)
        let small = try client.register([TensorSpec(name: "small", shape: [1000], initializer: .zeros)])
        XCTAssertEqual(small.totalElements, 1000)
    }
}
