import Foundation
import PSCoordinator
import PSLog
import PSMath
import PSModel
import PSPosix
import PSServer
import PSTraining
import PSWire
import XCTest

/// Runs a planned row-sparse job on an in-process server (3 shards, `optimizer`, the planned job's table) with one
/// worker thread per job worker, each stopping after `maxSteps` when given; `configure` adjusts the server first.
/// Returns the table's weights and the dense weights after the job.
func runSparseJob(
    _ planned: (job: JobDescription, tensors: [TensorSpec]), model: any RowSparseModel, optimizer: OptimizerConfig,
    mode: ConsistencyMode = .bsp, maxSteps: Int? = nil, configure: (inout ServerConfig) -> Void = { _ in }
) throws -> (table: [Float], dense: [Float]) {
    Signals.ignoreSIGPIPE()
    var config = ServerConfig()
    config.host = "127.0.0.1"
    config.port = 0
    config.shardCount = 3
    config.mode = mode
    config.optimizer = optimizer
    config.job = planned.job
    config.jobTensors = planned.tensors
    config.sparseTables = [
        RowSparseTableSpec(
            name: model.table.name, rows: model.table.rows, width: model.table.width,
            initScale: model.tableInitScale, seed: planned.job.seed)
    ]
    config.keepRunning = true
    configure(&config)
    let server = try ParameterServer(config: config, log: Logger(component: "test-server", minimumLevel: .error))
    server.start()
    defer { server.stop(reason: "test finished") }
    let failures = LockedValue<[String]>([])
    let group = DispatchGroup()
    for index in 0..<planned.job.workers {
        group.enter()
        var options = WorkerOptions(name: "w\(index)")
        options.host = "127.0.0.1"
        options.port = server.port
        options.progress = .quiet
        options.reconnectTimeoutSeconds = 5
        options.debugMaxSteps = maxSteps
        let workerOptions = options
        let thread = Thread {
            do {
                try Worker(options: workerOptions, log: Logger(component: "test-worker", minimumLevel: .error)).run()
            } catch {
                failures.withLock { $0.append("\(error)") }
            }
            group.leave()
        }
        thread.start()
    }
    XCTAssertEqual(group.wait(timeout: .now() + 120), .success, "workers did not finish")
    XCTAssertEqual(failures.withLock { $0 }, [])
    let snapshot = try XCTUnwrap(server.store.snapshot())
    return (server.sparseTables[0].denseWeights(), snapshot.weights)
}
