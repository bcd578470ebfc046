import Foundation
import PSClient
import PSCoordinator
import PSData
import PSLog
import PSMath
import PSModel
import PSPosix
import PSServer
import PSTraining
import PSWire
import XCTest

/// The model protocol's contract: a model the test target defines trains through the worker library against an
/// in-process server on 127.0.0.1, under BSP equal to one process with batch K*b, under async to completion; and
/// a worker whose tensors differ from the job's is refused with the tensor named.
final class WorkerLibraryTests: XCTestCase {
    static let data = "synthetic:192,6,3"

    /// A server for a job planned from `request` (port 0, kept running after the job so the test can read it).
    private func startServer(_ request: JobRequest, mode: ConsistencyMode) throws -> ParameterServer {
        Signals.ignoreSIGPIPE()
        let planned = try JobPlanner.plan(request)
        var config = ServerConfig()
        config.host = "127.0.0.1"
        config.port = 0
        config.shardCount = 3
        config.mode = mode
        config.optimizer = OptimizerConfig(kind: .sgd, learningRate: 0.5)
        config.job = planned.job
        config.jobTensors = planned.tensors
        config.keepRunning = true
        let server = try ParameterServer(config: config, log: Logger(component: "test-server", minimumLevel: .error))
        server.start()
        return server
    }

    private func request(model: String, workers: Int, batch: Int, epochs: Int, mode: String) -> JobRequest {
        var request = JobRequest()
        request.model = model
        request.data = Self.data
        request.workers = workers
        request.batchPerWorker = batch
        request.epochs = epochs
        request.mode = mode
        return request
    }

    private func options(_ name: String, port: UInt16) -> WorkerOptions {
        var options = WorkerOptions(name: name)
        options.host = "127.0.0.1"
        options.port = port
        options.progress = .quiet
        options.reconnectTimeoutSeconds = 5
        return options
    }

    /// Runs one library worker per name on its own thread and returns their errors (nil: finished).
    private func runWorkers(
        _ names: [String], port: UInt16, model: @escaping @Sendable (ModelContext) -> any TrainableModel
    ) -> [String?] {
        let results = LockedValue<[String: String?]>([:])
        let group = DispatchGroup()
        for name in names {
            group.enter()
            let options = options(name, port: port)
            let thread = Thread {
                let worker = Worker(
                    options: options, log: Logger(component: "test-worker", minimumLevel: .error),
                    model: { context in model(context) })
                var outcome: String? = nil
                do {
                    try worker.run()
                } catch {
                    outcome = "\(error)"
                }
                results.withLock { $0[name] = outcome }
                group.leave()
            }
            thread.start()
        }
        XCTAssertEqual(group.wait(timeout: .now() + 120), .success, "workers did not finish")
        return results.withLock { all in names.map { all[$0] ?? "did not finish" } }
    }

    private static func tanhNetwork(_ context: ModelContext) -> any TrainableModel {
        TanhNetwork(inputs: context.featureCount, hidden: 5, classes: context.classCount)
    }

    func test_userModel_bspWithTwoWorkers_equalsOneProcessWithTheGlobalBatch() throws {
        let (workers, batch, epochs) = (2, 8, 2)
        let server = try startServer(
            request(model: "external", workers: workers, batch: batch, epochs: epochs, mode: "bsp"), mode: .bsp)
        defer { server.stop(reason: "test finished") }
        let outcomes = runWorkers(["a", "b"], port: server.port, model: Self.tanhNetwork)
        XCTAssertEqual(outcomes, [nil, nil])
        let snapshot = try XCTUnwrap(server.store.snapshot())
        XCTAssertEqual(
            snapshot.tensors.map(\.name), ["hidden.weight", "hidden.bias", "out.weight", "out.bias"],
            "the first worker's tensors define the job's model")

        // The same model in one process: batch K*b over the job's global data order, plain SGD.
        let train = try DataSource(parsing: Self.data).loadTrain()
        let model = TanhNetwork(inputs: train.featureCount, hidden: 5, classes: train.classCount)
        let layout = TensorLayout(model.parameters)
        var weights = model.parameters.flatMap { $0.initializer.values(shape: $0.shape) }
        var gradient = [Float](repeating: 0, count: layout.totalCount)
        let order = DataOrder(rowCount: train.rowCount, workerCount: workers, batchPerWorker: batch, seed: 0)
        var features = [Float](repeating: 0, count: workers * batch * train.featureCount)
        var labels = [Float](repeating: 0, count: workers * batch)
        for step in 0..<(order.stepsPerEpoch * epochs) {
            features.withUnsafeMutableBufferPointer { f in
                labels.withUnsafeMutableBufferPointer { l in
                    train.gather(rows: order.globalRows(step: step), into: f, labels: l)
                }
            }
            _ = weights.withUnsafeBufferPointer { p in
                features.withUnsafeBufferPointer { f in
                    labels.withUnsafeBufferPointer { l in
                        gradient.withUnsafeMutableBufferPointer { g in
                            model.lossAndGradient(
                                parameters: ParameterValues(flat: p, layout: layout),
                                batch: Batch(
                                    features: f, labels: l, rows: workers * batch, featureCount: train.featureCount),
                                gradient: GradientValues(flat: g, layout: layout))
                        }
                    }
                }
            }
            for i in weights.indices { weights[i] -= 0.5 * gradient[i] }
        }
        var worst: Float = 0
        for (trained, expected) in zip(snapshot.weights, weights) { worst = max(worst, abs(trained - expected)) }
        XCTAssertEqual(snapshot.weights.count, weights.count)
        XCTAssertLessThan(worst, 1e-5, "largest difference from the one-process run")
        XCTAssertGreaterThan(weights.map { abs($0) }.reduce(0, +), 0)
    }

    /// The README's model, through one worker in SSP: the job completes and the test accuracy beats chance.
    func test_readmeModel_trains() throws {
        let server = try startServer(
            request(model: "external", workers: 1, batch: 16, epochs: 3, mode: "ssp"), mode: .ssp)
        defer { server.stop(reason: "test finished") }
        let outcomes = runWorkers(["readme"], port: server.port) { context in
            QuadraticSoftmax(inputs: context.featureCount, classes: context.classCount)
        }
        XCTAssertEqual(outcomes, [nil])
        let snapshot = try XCTUnwrap(server.store.snapshot())
        XCTAssertEqual(snapshot.tensors.map(\.shape), [[12, 3], [3]])
        XCTAssertTrue(snapshot.weights.contains { $0 != 0 })
    }

    func test_userModel_asyncWithTwoWorkers_completes() throws {
        let server = try startServer(
            request(model: "external", workers: 2, batch: 8, epochs: 2, mode: "async"), mode: .async)
        defer { server.stop(reason: "test finished") }
        let outcomes = runWorkers(["a", "b"], port: server.port, model: Self.tanhNetwork)
        XCTAssertEqual(outcomes, [nil, nil])
        let snapshot = try XCTUnwrap(server.store.snapshot())
        XCTAssertTrue(snapshot.weights.allSatisfy(\.isFinite))
        XCTAssertEqual(snapshot.weights.count, TanhNetwork(inputs: 6, hidden: 5, classes: 3).parameterCount)
    }

    func test_external_laterWorkerWithOtherTensors_isRefusedNamingTheTensor() throws {
        let server = try startServer(
            request(model: "external", workers: 2, batch: 8, epochs: 1, mode: "bsp"), mode: .bsp)
        defer { server.stop(reason: "test finished") }
        // The job's first registration: a hidden layer of 5.
        let first = try ParameterClient.connect(host: "127.0.0.1", port: server.port, role: .control, name: "first")
        defer { first.close() }
        let tensors = TanhNetwork(inputs: 6, hidden: 5, classes: 3).parameters.map {
            TensorSpec(name: $0.name, shape: $0.shape, initializer: InitSpec($0.initializer))
        }
        _ = try first.register(tensors)
        let outcomes = runWorkers(["other"], port: server.port) { context in
            TanhNetwork(inputs: context.featureCount, hidden: 4, classes: context.classCount)
        }
        let message = try XCTUnwrap(outcomes.first ?? nil, "the worker must be refused")
        XCTAssertTrue(message.contains("tensor 'hidden.weight' has shape [6, 4]"), message)
        XCTAssertTrue(message.contains("[6, 5]"), message)
        // The refused worker never took a rank: the job's two workers still join and finish it.
        XCTAssertEqual(runWorkers(["a", "b"], port: server.port, model: Self.tanhNetwork), [nil, nil])
    }

    func test_builtInJob_workerWithAnotherModel_isRefusedNamingTheTensor() throws {
        let server = try startServer(
            request(model: "softmax", workers: 1, batch: 8, epochs: 1, mode: "bsp"), mode: .bsp)
        defer { server.stop(reason: "test finished") }
        let outcomes = runWorkers(["other"], port: server.port, model: Self.tanhNetwork)
        let message = try XCTUnwrap(outcomes.first ?? nil, "the worker must be refused")
        XCTAssertTrue(message.contains("does not match the job's model softmax"), message)
        XCTAssertTrue(message.contains("tensor 'hidden.weight'"), message)
        // It never took the job's one rank: a worker with the built-in model still trains the job.
        XCTAssertEqual(
            runWorkers(["softmax"], port: server.port) { context in
                (try? ModelKind.softmax.makeModel(context: context)) ?? TanhNetwork(inputs: 1, hidden: 1, classes: 1)
            }, [nil])
    }

    func test_identicalRegistration_inAJob_isAccepted_andAReorderedOneRefused() throws {
        let store = ShardStore(
            shardCount: 2, optimizer: OptimizerConfig(kind: .sgd, learningRate: 0.1), workerSlots: 2,
            requiresIdenticalTensors: true)
        let a = TensorSpec(name: "a", shape: [3], initializer: .zeros)
        let b = TensorSpec(name: "b", shape: [2, 2], initializer: .zeros)
        try store.register([a, b])
        XCTAssertNoThrow(try store.register([a, b]))
        XCTAssertThrowsError(try store.register([b, a])) { error in
            XCTAssertTrue("\(error)".contains("tensor 'b' is at position 0"), "\(error)")
        }
        XCTAssertThrowsError(try store.register([a])) { error in
            XCTAssertTrue("\(error)".contains("tensor 'b' of the job's model (shape [2, 2]) is missing"), "\(error)")
        }
    }
}
