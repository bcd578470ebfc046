import Foundation
import PSClient
import PSLog
import PSMath
import PSPosix
import PSServer
import PSTransport
import PSWire
import XCTest

/// Starts an in-process store server on 127.0.0.1 port 0 and stops it when done.
final class ServerHarness {
    let server: ParameterServer
    var port: UInt16 { server.port }

    init(
        shards: Int, optimizer: OptimizerConfig = OptimizerConfig(kind: .sgd, learningRate: 1),
        configure: (inout ServerConfig) -> Void = { _ in }
    ) throws {
        Signals.ignoreSIGPIPE()
        var config = ServerConfig()
        config.host = "127.0.0.1"
        config.port = 0
        config.shardCount = shards
        config.optimizer = optimizer
        config.mode = .async
        configure(&config)
        server = try ParameterServer(config: config, log: Logger(component: "test-server", minimumLevel: .warning))
        server.start()
    }

    func client(name: String = "test", token: String? = nil) throws -> ParameterClient {
        try ParameterClient.connect(
            host: "127.0.0.1", port: port, role: .worker, name: name, token: token, requestTimeout: .seconds(30))
    }

    /// A raw framed connection (no client library) for malformed-input tests.
    func rawConnection() throws -> FramedConnection {
        try FramedConnection.connect(host: "127.0.0.1", port: port, timeout: .seconds(5))
    }

    deinit {
        server.stop(exitCode: 0, reason: "test finished")
    }
}

/// A tensor list of the given sizes, zero-initialised, named t0, t1, ...
func zeroTensors(_ sizes: [Int]) -> [TensorSpec] {
    sizes.enumerated().map { TensorSpec(name: "t\($0.offset)", shape: [$0.element], initializer: .zeros) }
}
