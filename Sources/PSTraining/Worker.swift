import Foundation
import PSClient
import PSData
import PSLog
import PSMath
import PSModel
import PSPosix
import PSWire

/// How a `psworker` is configured; the job itself comes from the server.
public struct WorkerOptions: Sendable {
    public var host = "127.0.0.1"
    public var port: UInt16 = 7000
    /// Identifies the worker; a restarted worker with the same name rejoins its old rank.
    public var name: String
    /// Where this worker finds the data on its own disk (overrides the job's data path).
    public var dataOverride: String? = nil
    public var testOverride: String? = nil
    public var token: String? = nil
    /// OpenBLAS threads (default 1: several processes usually share a machine).
    public var threads = 1
    /// How long to keep trying to reach the server before giving up.
    public var reconnectTimeoutSeconds: Double = 30
    /// Testing aid: sleep this long in every step to make this worker a straggler.
    public var debugStepDelayMillis = 0
    /// Testing aid: leave after this many steps (simulates a worker with less data).
    public var debugMaxSteps: Int? = nil
    /// Show a progress bar (terminal) or one line per epoch.
    public var progress: ProgressStyle = .lines

    public init(name: String) {
        self.name = name
    }
}

/// How the worker reports progress.
public enum ProgressStyle: Sendable {
    case bar, lines, quiet
}

/// A worker error that ends the process; the description is the one-line reason printed.
public struct WorkerError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// The worker agent: joins, loads its partition, pulls once, then loops gradient -> exchange (push, clock and the
/// next step's weights in one round trip) until the job ends.
public final class Worker {
    let options: WorkerOptions
    let log: Logger

    public init(options: WorkerOptions, log: Logger = Logger(component: "psworker")) {
        self.options = options
        self.log = log
    }

    /// Runs the job to its end. Throws a `WorkerError` with a one-line reason on failure.
    public func run() throws(WorkerError) {
        BLAS.setThreadCount(options.threads)
        var connected = try connect()
        guard let job = connected.config.job else {
            throw WorkerError(
                "the server at \(options.host):\(options.port) has no training job (start psserver with --model)")
        }
        let source: DataSource
        let train: Dataset
        do {
            source = try DataSource(
                parsing: options.dataOverride ?? job.data,
                labelColumn: job.labelColumn == "last" ? .last : .first)
            train = try source.loadTrain()
        } catch {
            leave(connected, reason: .error)
            throw WorkerError("cannot load the training data: \(error)")
        }
        guard train.rowCount == job.trainRows, train.featureCount == job.featureCount else {
            leave(connected, reason: .error)
            throw WorkerError(
                "refused: this worker's data (\(source)) has \(train.rowCount) rows x \(train.featureCount) features, "
                    + "but the job expects \(job.trainRows) rows x \(job.featureCount) features")
        }
        let modelKind: ModelKind
        do {
            modelKind = try ModelKind(parsing: job.model)
        } catch {
            throw WorkerError("the job's model '\(job.model)' is not understood: \(error)")
        }
        let spec = ModelSpec(
            kind: modelKind, inputCount: job.featureCount, outputCount: modelKind == .linear ? 1 : job.classCount,
            seed: job.seed)
        let counts = spec.parameters.map { $0.shape.reduce(1, *) }
        let expected = spec.parameters.map { TensorShape(name: $0.name, shape: $0.shape) }
        guard connected.config.tensors == expected else {
            throw WorkerError(
                "the server's tensors \(connected.config.tensors.map(\.name)) do not match the model \(job.model)")
        }
        let layout = ShardLayout(tensorElementCounts: counts, shardCount: connected.config.shardCount)
        let order = DataOrder(
            rowCount: train.rowCount, workerCount: job.workers, batchPerWorker: job.batchPerWorker, seed: job.seed)
        let computer = ModelComputer(spec: spec, maxBatch: max(job.batchPerWorker, 256))
        var rank = connected.rank ?? 0
        // Every worker evaluates at the end of an epoch (the coordinator keeps the first report of each epoch),
        // so epoch records continue when rank 0 dies.
        let test = loadTest(source: source, job: job)

        var parameters = [Float](repeating: 0, count: layout.totalElements)
        var gradient = [Float](repeating: 0, count: layout.totalElements)
        var features = [Float](repeating: 0, count: job.batchPerWorker * job.featureCount)
        var labels = [Float](repeating: 0, count: job.batchPerWorker)
        var versions = [UInt64](repeating: 0, count: layout.shardCount)
        let heartbeat = HeartbeatSender(intervalMillis: connected.config.heartbeatIntervalMillis)
        heartbeat.start(client: connected)
        defer { heartbeat.stop() }

        var step = Int(connected.config.startStep)
        let totalSteps = options.debugMaxSteps.map { min($0, job.totalSteps) } ?? job.totalSteps
        let started = Date()
        var samplesDone = 0
        var pullNanos: UInt64 = 0
        // Whether `parameters` hold the weights for `step` (the last exchange brought them).
        var havePulled = false
        // BSP and SSP steps are one exchange each. Async keeps push, clock and pull: the async stale-gradient
        // cluster test needs the fast worker to still be running when the slow one pushes (README, issue 12).
        let usesExchange = job.mode != "async"
        log.info("training", ["rank": rank, "start_step": step, "total_steps": totalSteps, "data": "\(source)"])
        while step < totalSteps {
            do {
                heartbeat.clock = UInt64(step)
                if !havePulled {
                    let pullStart = MonotonicClock.nanoseconds()
                    try pullAll(connected, layout: layout, clock: UInt64(step), into: &parameters, versions: &versions)
                    pullNanos += MonotonicClock.nanoseconds() - pullStart
                    havePulled = true
                }
                let rows = order.rows(step: step, rank: rank)
                features.withUnsafeMutableBufferPointer { f in
                    labels.withUnsafeMutableBufferPointer { l in train.gather(rows: rows, into: f, labels: l) }
                }
                let loss = parameters.withUnsafeBufferPointer { p in
                    features.withUnsafeBufferPointer { f in
                        labels.withUnsafeBufferPointer { l in
                            gradient.withUnsafeMutableBufferPointer { g in
                                computer.lossAndGradient(
                                    parameters: p, features: f, labels: l, rows: job.batchPerWorker, gradient: g)
                            }
                        }
                    }
                }
                if options.debugStepDelayMillis > 0 {
                    Thread.sleep(forTimeInterval: Double(options.debugStepDelayMillis) / 1000)
                }
                havePulled = false
                let exchangeStart = MonotonicClock.nanoseconds()
                var state = JobState.running
                if usesExchange {
                    // One round trip: this step's gradient and clock go out, the next step's weights come back.
                    do {
                        state = try exchange(
                            connected, rank: rank, clock: UInt64(step), loss: loss, samples: job.batchPerWorker,
                            gradient: gradient, into: &parameters, versions: &versions)
                        havePulled = true
                    } catch .remote(.timeout, let message) {
                        // The server took the gradient and the clock; only the weights were not ready: pulled next.
                        log.info("waiting", ["reason": message])
                    }
                } else {
                    try pushAll(connected, layout: layout, clock: UInt64(step), gradient: gradient, versions: versions)
                    state = try sendClock(
                        connected, rank: rank, clock: UInt64(step + 1), loss: loss, samples: job.batchPerWorker)
                }
                pullNanos += MonotonicClock.nanoseconds() - exchangeStart
                step += 1
                samplesDone += job.batchPerWorker
                if state == .finished { break }
                let epochEnded = step % job.stepsPerEpoch == 0 || step == totalSteps
                if epochEnded {
                    let epoch = (step - 1) / job.stepsPerEpoch
                    if let test {
                        if !havePulled {
                            try pullAll(
                                connected, layout: layout, clock: UInt64(step), into: &parameters, versions: &versions)
                            havePulled = true
                        }
                        let result = evaluate(computer, parameters: parameters, on: test)
                        _ = try connected.request(
                            .metrics(
                                EpochMetrics(
                                    epoch: UInt32(epoch), testLoss: result.loss, testAccuracy: result.accuracy,
                                    samples: UInt64(step * job.batchPerWorker * job.workers)))
                        ).wait()
                        report(
                            epoch: epoch, of: job.epochs, step: step, total: totalSteps, loss: loss,
                            accuracy: result.accuracy, started: started, samples: samplesDone)
                    } else {
                        report(
                            epoch: epoch, of: job.epochs, step: step, total: totalSteps, loss: loss,
                            accuracy: nil, started: started, samples: samplesDone)
                    }
                } else if options.progress == .bar {
                    drawBar(step: step, total: totalSteps, loss: loss)
                }
            } catch .remote(.timeout, let message) {
                log.info("waiting", ["reason": message])
                continue
            } catch .remote(let code, let message) where code != .invalidState && code != .shuttingDown {
                // The request itself was refused (a bad gradient, a shape mismatch): retrying cannot help.
                throw WorkerError("the server refused step \(step): \(message)")
            } catch let error {
                // invalidState: the coordinator no longer counts this worker (declared dead during a long
                // pause, say); rejoining under the same name gives it its rank back at the current step.
                if case .remote(.shuttingDown, _) = error {
                    log.warning("server-stopping", [:])
                }
                // The connection is gone: reconnect (bounded by --reconnect-timeout) and resume where the
                // coordinator says (the current step after a rejoin, the checkpoint's step after a restore).
                log.warning("connection-lost", ["error": error, "step": step])
                heartbeat.stop()
                connected.close()
                havePulled = false
                connected = try connect()
                heartbeat.start(client: connected)
                rank = connected.rank ?? rank
                step = Int(connected.config.startStep)
                log.info("resumed", ["rank": rank, "step": step])
            }
        }
        if options.progress == .bar { FileHandle.standardError.write(Data("\n".utf8)) }
        heartbeat.stop()
        leave(connected, reason: .finished)
        let seconds = Date().timeIntervalSince(started)
        log.info(
            "finished",
            [
                "steps": step, "seconds": String(format: "%.2f", seconds),
                "samples_per_s": String(format: "%.0f", Double(samplesDone) / max(seconds, 1e-9)),
                // Time in pulls and exchanges (server-side waits for the barrier or the SSP bound, plus transfers).
                "pull_wait_fraction": String(format: "%.3f", Double(pullNanos) / 1e9 / max(seconds, 1e-9)),
            ])
    }

    // MARK: Connection

    /// Connects and joins, retrying until --reconnect-timeout passes.
    private func connect() throws(WorkerError) -> ParameterClient {
        let deadline = Date(timeIntervalSinceNow: options.reconnectTimeoutSeconds)
        var lastError = ""
        var attempt = 0
        while true {
            do {
                let client = try ParameterClient.connect(
                    host: options.host, port: options.port, role: .worker, name: options.name, token: options.token,
                    connectTimeout: .seconds(5))
                return client
            } catch .rejected(let code, let reason) {
                if code == .jobFull || code == .unauthorized || code == .invalidState {
                    throw WorkerError("refused by the server: \(reason)")
                }
                lastError = reason
            } catch {
                lastError = "\(error)"
            }
            attempt += 1
            if Date() >= deadline {
                throw WorkerError(
                    "cannot reach the server at \(options.host):\(options.port) for "
                        + "\(Int(options.reconnectTimeoutSeconds)) s: \(lastError)")
            }
            if attempt == 1 {
                log.warning("connect-retry", ["server": "\(options.host):\(options.port)", "error": lastError])
            }
            Thread.sleep(forTimeInterval: min(0.2 * Double(attempt), 1.0))
        }
    }

    private func leave(_ client: ParameterClient, reason: LeaveReason) {
        _ = try? client.request(.leave(Leave(rank: UInt32(max(client.rank ?? 0, 0)), reason: reason))).wait(
            timeout: .seconds(5))
        client.close()
    }

    private func loadTest(source: DataSource, job: JobDescription) -> Dataset? {
        do {
            if let path = options.testOverride ?? job.test {
                return try DataSource(parsing: path, labelColumn: job.labelColumn == "last" ? .last : .first)
                    .loadTrain()
            }
            return try source.loadTest()
        } catch {
            log.warning("no-test-set", ["error": error])
            return nil
        }
    }

    // MARK: Pipelined shard traffic

    /// Pulls every shard (all requests in flight before waiting on any) straight into the flat parameter vector.
    func pullAll(
        _ client: ParameterClient, layout: ShardLayout, clock: UInt64, into parameters: inout [Float],
        versions: inout [UInt64]
    ) throws(ClientError) {
        let count = layout.shardCount
        var handles: [RequestHandle] = []
        handles.reserveCapacity(count)
        try parameters.withUnsafeMutableBufferPointer { (flat) throws(ClientError) in
            for shard in 0..<count {
                let range = layout.range(ofShard: shard)
                handles.append(
                    try client.pull(
                        shard: shard, clock: clock, into: UnsafeMutableBufferPointer(rebasing: flat[range])))
            }
            for (shard, handle) in handles.enumerated() {
                if case .pulled(_, let version) = try handle.wait() { versions[shard] = version }
            }
        }
    }

    /// Pushes every shard's slice of the gradient, then waits for all acknowledgements.
    func pushAll(
        _ client: ParameterClient, layout: ShardLayout, clock: UInt64, gradient: [Float], versions: [UInt64]
    ) throws(ClientError) {
        var handles: [RequestHandle] = []
        handles.reserveCapacity(layout.shardCount)
        try gradient.withUnsafeBufferPointer { (flat) throws(ClientError) in
            for shard in 0..<layout.shardCount {
                let range = layout.range(ofShard: shard)
                handles.append(
                    try client.push(
                        shard: shard, clock: clock, baseVersion: versions[shard],
                        gradient: UnsafeBufferPointer(rebasing: flat[range])))
            }
        }
        for handle in handles { _ = try handle.wait() }
    }

    private func sendClock(
        _ client: ParameterClient, rank: Int, clock: UInt64, loss: Double, samples: Int
    ) throws(ClientError) -> JobState {
        let reply = try client.request(
            .clock(ClockReport(rank: UInt32(rank), clock: clock, loss: loss, samples: UInt64(samples)))
        ).wait()
        if case .message(.clockAck(let ack)) = reply { return ack.jobState }
        return .running
    }

    /// One step's network exchange in one round trip: the gradient of step `clock` (every shard's slice), the
    /// step's loss and samples, and the request for the weights of step `clock + 1`, which land straight in
    /// `parameters`; returns the job's state as the clock report saw it.
    func exchange(
        _ client: ParameterClient, rank: Int, clock: UInt64, loss: Double, samples: Int, gradient: [Float],
        into parameters: inout [Float], versions: inout [UInt64]
    ) throws(ClientError) -> JobState {
        let baseVersions = versions
        let reply = try gradient.withUnsafeBufferPointer { (g) throws(ClientError) in
            try parameters.withUnsafeMutableBufferPointer { (p) throws(ClientError) in
                try client.exchange(
                    rank: rank, clock: clock, loss: loss, samples: UInt64(samples), baseVersions: baseVersions,
                    gradient: g, into: p
                ).wait()
            }
        }
        guard case .exchanged(let prefix) = reply else {
            throw .protocolViolation("expected an exchange reply, got \(reply)")
        }
        versions = prefix.versions
        return prefix.jobState
    }

    private func evaluate(_ computer: ModelComputer, parameters: [Float], on test: Dataset) -> (
        loss: Double, accuracy: Double
    ) {
        parameters.withUnsafeBufferPointer { p in
            test.features.withUnsafeBufferPointer { f in
                test.labels.withUnsafeBufferPointer { l in
                    computer.evaluate(parameters: p, features: f, labels: l, rows: test.rowCount)
                }
            }
        }
    }

    // MARK: Progress

    private func report(
        epoch: Int, of epochs: Int, step: Int, total: Int, loss: Double, accuracy: Double?, started: Date,
        samples: Int
    ) {
        let rate = Double(samples) / max(Date().timeIntervalSince(started), 1e-9)
        var line = String(format: "epoch %d/%d  step %d/%d  loss %.4f", epoch + 1, epochs, step, total, loss)
        if let accuracy { line += String(format: "  test accuracy %.4f", accuracy) }
        line += String(format: "  %.0f samples/s", rate)
        switch options.progress {
        case .quiet: return
        case .bar: FileHandle.standardError.write(Data(("\r\u{1B}[2K" + line + "\n").utf8))
        case .lines: FileHandle.standardError.write(Data((line + "\n").utf8))
        }
    }

    private func drawBar(step: Int, total: Int, loss: Double) {
        let width = 30
        let filled = total > 0 ? width * step / total : width
        let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
        let text = String(
            format: "\r[%@] %3d%%  step %d/%d  loss %.4f", bar, 100 * step / max(total, 1), step, total, loss)
        FileHandle.standardError.write(Data(text.utf8))
    }
}

/// Sends a heartbeat every interval on its own thread while the worker computes.
final class HeartbeatSender: @unchecked Sendable {
    // @unchecked Sendable: all mutable state is guarded by `condition`.
    private let condition = NSCondition()
    private var client: ParameterClient? = nil
    private var running = false
    private var generation = 0
    private var currentClock: UInt64 = 0
    let interval: Double

    init(intervalMillis: Int) {
        interval = Double(max(intervalMillis, 50)) / 1000
    }

    var clock: UInt64 {
        get { condition.lock(); defer { condition.unlock() }; return currentClock }
        set { condition.lock(); currentClock = newValue; condition.unlock() }
    }

    func start(client: ParameterClient) {
        condition.lock()
        self.client = client
        running = true
        generation += 1
        let myGeneration = generation
        condition.unlock()
        let thread = Thread { [self] in loop(generation: myGeneration) }
        thread.name = "psworker-heartbeat"
        thread.start()
    }

    func stop() {
        condition.lock()
        running = false
        client = nil
        condition.broadcast()
        condition.unlock()
    }

    private func loop(generation myGeneration: Int) {
        while true {
            condition.lock()
            _ = condition.wait(until: Date(timeIntervalSinceNow: interval))
            guard running, generation == myGeneration, let client else {
                condition.unlock()
                return
            }
            let clock = currentClock
            condition.unlock()
            // Fire and forget: the reader thread drops the acknowledgement.
            _ = try? client.request(.heartbeat(Heartbeat(rank: UInt32(max(client.rank ?? 0, 0)), clock: clock)))
        }
    }
}
