import Foundation
import PSClient
import PSPosix
import PSServer
import PSWire
import XCTest

final class LargeTensorTests: XCTestCase {
    /// Several clients push, pull and push-pull a 4 MiB shard at once; every reply lands intact.
    func test_concurrentClients_largeShard_allPhasesStayInSync() throws {
        let harness = try ServerHarness(shards: 1) { $0.maxFrameBytes = (4 << 20) + 4096 }
        let count = 1 << 20
        let setup = try harness.client(name: "setup")
        _ = try setup.register(zeroTensors([count]))
        let errors = LockedValue<[String]>([])
        let group = DispatchGroup()
        let port = harness.port
        for index in 0..<4 {
            group.enter()
            Thread {
                defer { group.leave() }
                do {
                    let client = try ParameterClient.connect(
                        host: "127.0.0.1", port: port, role: .worker, name: "big\(index)",
                        maxPayloadBytes: (4 << 20) + 4096)
                    defer { client.close() }
                    let gradient = [Float](repeating: 0, count: count)
                    var weights = [Float](repeating: 1, count: count)
                    for phase in 0..<3 {
                        for _ in 0..<3 {
                            try gradient.withUnsafeBufferPointer { g in
                                try weights.withUnsafeMutableBufferPointer { w in
                                    switch phase {
                                    case 0: _ = try client.push(shard: 0, clock: 0, baseVersion: 0, gradient: g).wait()
                                    case 1: _ = try client.pull(shard: 0, clock: 0, into: w).wait()
                                    default:
                                        _ = try client.pushPull(
                                            shard: 0, clock: 0, baseVersion: 0, gradient: g, into: w
                                        )
                                        .wait()
                                    }
                                }
                            }
                        }
                    }
                    XCTAssertEqual(weights.first, 0)
                } catch {
                    errors.withLock { $0.append("client \(index): \(error)") }
                }
            }.start()
        }
        XCTAssertEqual(group.wait(timeout: .now() + 120), .success)
        XCTAssertEqual(errors.withLock { $0 }, [])
    }
}
