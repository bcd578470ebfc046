import Foundation
import PSClient
import PSData
import PSLog
import PSMath
import PSModel
import PSPosix
import PSSecurity
import PSWire

/// How a `psworker` is configured; the job itself comes from the server.
///
/// ```swift
/// var options = WorkerOptions(name: "worker-\(rank)")
/// options.host = "10.0.0.1"
/// options.port = 7000
/// options.threads = 1              // OpenBLAS threads
/// options.progress = .quiet
/// try Worker(options: options).run()
/// ```
public struct WorkerOptions: Sendable {
    /// The coordinator's address (default 127.0.0.1).
    public var host = "127.0.0.1"
    /// The coordinator's port (default 7000).
    public var port: UInt16 = 7000
    /// Identifies the worker; a restarted worker with the same name rejoins its old rank.
    public var name: String
    /// Where this worker finds the data on its own disk (overrides the job's data path).
    public var dataOverride: String? = nil
    /// The test set for the end-of-epoch evaluation (overrides the job's and the data set's own).
    public var testOverride: String? = nil
    /// The shared secret the server requires, if any.
    public var token: String? = nil
    /// TLS towards the servers (`--tls-ca`, and `--tls-cert`/`--tls-key` for mutual TLS); nil: plain TCP.
    public var tls: TLSContext? = nil
    /// OpenBLAS threads (default 1: several processes usually share a machine).
    public var threads = 1
    /// How long to keep trying to reach the server before giving up.
    public var reconnectTimeoutSeconds: Double = 30
    /// Testing aid: sleep this long in every step to make this worker a straggler.
    public var debugStepDelayMillis = 0
    /// Testing aid: leave after this many steps (simulates a worker with less data).
    public var debugMaxSteps: Int? = nil
    /// Testing aid: at this step, send only the coordinator's part, then exit the process (code 3): what a worker
    /// host that crashes with its sends to joined servers still unsent leaves behind, in a scale-out job.
    public var debugDieMidStep: Int? = nil
    /// Show a progress bar (terminal) or one line per epoch.
    public var progress: ProgressStyle = .lines

    /// Options with every default and the given worker name.
    public init(name: String) {
        self.name = name
    }
}

/// How the worker reports progress.
///
/// ```swift
/// options.progress = isatty(2) == 1 ? .bar : .lines
/// ```
public enum ProgressStyle: Sendable {
    /// A progress bar redrawn in place (for a terminal), with one line per epoch.
    case bar
    /// One line per epoch on stderr.
    case lines
    /// Nothing but errors and the final log line.
    case quiet
}

/// A worker error that ends the process; the description is the one-line reason printed.
///
/// ```swift
/// do {
///     try worker.run()
/// } catch {
///     FileHandle.standardError.write(Data("Error: \(error)\n".utf8))   // error: WorkerError
///     exit(1)
/// }
/// ```
public struct WorkerError: Error, CustomStringConvertible, Sendable {
    /// The one-line reason.
    public let description: String
    /// An error with the given reason.
    public init(_ description: String) { self.description = description }
}

/// Builds the model a worker trains once the job's data is known.
///
/// ```swift
/// let factory: ModelFactory = { context in
///     MyModel(inputs: context.featureCount, classes: context.classCount, seed: context.seed)
/// }
/// try Worker(options: options, model: factory).run()
/// ```
public typealias ModelFactory = (ModelContext) throws -> any TrainableModel

/// The worker agent: joins, loads its partition, pulls once, then loops gradient -> exchange (push, clock and the
/// next step's weights in one round trip) until the job ends.
///
/// It trains any `TrainableModel`: the job's built-in model (`softmax`, `linear`, `mlp:…`, `cnn:…`) by default,
/// or the one a `ModelFactory` builds, for a server started with `--model external` (the first worker's tensors
/// define the job's model; a worker whose tensors differ is refused, and so is one whose model differs from a
/// built-in job's). Everything else is the job's: rank, data order and partition, BSP/SSP/async, heartbeats,
/// rejoin and reconnect, metrics and the end-of-epoch evaluation.
///
/// ```swift
/// var options = WorkerOptions(name: "worker-1")
/// options.port = 7000
/// let worker = Worker(options: options) { context in
///     MyModel(inputs: context.featureCount, classes: context.classCount)
/// }
/// try worker.run()   // returns when the job ends
/// ```
public final class Worker {
    let options: WorkerOptions
    let log: Logger
    let modelFactory: ModelFactory?
    let dataProvider: (any DataProvider)?
    /// The slowest live worker's clock, as the coordinator's last clock or exchange reply said (SSP/async: once it
    /// reaches the last step, every worker's last push is applied and the weights are final).
    private var slowestClock: UInt64 = 0
    /// The job's gradient compression (nil: none), with top-k's residual; made when the job starts.
    private var compressor: GradientCompressor?
    /// How exchange replies carry the weights: float32, or with `--compress-pulls` the compressor's fp16/bf16.
    private var weightEncoding = GradientEncoding.none
    /// Bytes this worker's steps moved so far (gradients as sent, weights as received).
    public private(set) var traffic = WorkerTraffic()

    /// A worker for the job at `options`' server.
    ///
    /// - Parameters:
    ///   - data: loads the training (and test) rows instead of the job's `--data`; they must have the row and
    ///     feature counts the server planned the job with.
    ///   - model: builds the model to train; nil trains the job's built-in model.
    public init(
        options: WorkerOptions, log: Logger = Logger(component: "psworker"), data: (any DataProvider)? = nil,
        model: ModelFactory? = nil
    ) {
        self.options = options
        self.log = log
        self.modelFactory = model
        self.dataProvider = data
    }

    /// Runs the job to its end. Throws a `WorkerError` with a one-line reason on failure.
    public func run() throws(WorkerError) {
        BLAS.setThreadCount(options.threads)
        // A row-sparse model (sparse-lr) has its own loop: Worker+Sparse.swift.
        if modelFactory == nil, try probeJobIsSparse() { return try runSparse() }
        // A look at the job before joining it: a worker whose model cannot train the job never takes a rank.
        let model = try probeModel()
        var connected = try connect()
        let firstWelcome = try checkWelcome(connected)
        guard let job = connected.config.job else {
            throw WorkerError(
                "the server at \(options.host):\(options.port) has no training job (start psserver with --model)")
        }
        let source: any DataProvider
        let train: Dataset
        do {
            source =
                try dataProvider
                ?? DataSource(
                    parsing: options.dataOverride ?? job.data, labelColumn: job.labelColumn == "last" ? .last : .first)
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
        do {
            try train.requireModelShape(featureCount: job.featureCount, classCount: job.classCount)
        } catch {
            leave(connected, reason: .error)
            throw WorkerError("refused: this worker's data does not fit the job: \(error)")
        }
        do {
            try train.labels.withUnsafeBufferPointer { (labels) throws(ModelError) in try model.validate(labels: labels)
            }
        } catch {
            leave(connected, reason: .error)
            throw WorkerError("the model cannot train on the job's data: \(error)")
        }
        do {
            try registerOrCheckTensors(model, job: job, client: connected)
        } catch {
            leave(connected, reason: .error)
            throw error
        }
        let tensorLayout = TensorLayout(model.parameters)
        // A var: a server restored into another --shards count hands a reconnecting worker a new layout.
        var layout = ShardLayout(tensorElementCounts: tensorLayout.counts, shardCount: connected.config.shardCount)
        let order = DataOrder(
            rowCount: train.rowCount, workerCount: job.workers, batchPerWorker: job.batchPerWorker, seed: job.seed)
        var rank = connected.rank ?? 0
        // Every worker evaluates at the end of an epoch (the coordinator keeps the first report of each epoch),
        // so epoch records continue when rank 0 dies.
        let test = loadTest(source: source, job: job)

        var parameters = [Float](repeating: 0, count: layout.totalElements)
        var gradient = [Float](repeating: 0, count: layout.totalElements)
        // The next step's batch is gathered on a producer thread while this one computes and exchanges.
        let prefetcher = BatchPrefetcher(data: train, order: order, rowsPerBatch: job.batchPerWorker)
        defer { prefetcher.stop() }
        var versions = [UInt64](repeating: 0, count: layout.shardCount)
        // Scale-out: one connection per joined server, as the welcome's shard map says.
        var servers = try openServers(connected, layout: layout)
        defer { servers.closeJoined() }
        let heartbeat = HeartbeatSender(intervalMillis: connected.config.heartbeatIntervalMillis)
        heartbeat.start(client: connected)
        defer { heartbeat.stop() }

        var step = Int(connected.config.startStep)
        let totalSteps = options.debugMaxSteps.map { min($0, job.totalSteps) } ?? job.totalSteps
        let started = Date()
        var samplesDone = 0
        // The epoch's training losses on this worker so far: the epoch line shows their mean, not the last batch's.
        var epochLoss = (sum: 0.0, steps: 0)
        var pullNanos: UInt64 = 0
        // Whether `parameters` hold the weights for `step` (the last exchange brought them).
        var havePulled = false
        // BSP and SSP steps are one exchange each. Async keeps push, clock and pull: the async stale-gradient
        // cluster test needs the fast worker to still be running when the slow one pushes (README, issue 12).
        // Compressed gradients travel in exchanges only, so a compressed async job uses them too.
        if let setting = job.compressionSetting, setting != .none {
            compressor = GradientCompressor(setting: setting, elementCount: layout.totalElements)
            if job.compressPulls == true { weightEncoding = setting.encoding }
        }
        let usesExchange = job.mode != "async" || compressor != nil
        log.info("training", ["rank": rank, "start_step": step, "total_steps": totalSteps, "data": "\(source)"])
        while step < totalSteps {
            do {
                heartbeat.clock = UInt64(step)
                if !havePulled {
                    let pullStart = MonotonicClock.nanoseconds()
                    try pullAll(servers, layout: layout, clock: UInt64(step), into: &parameters, versions: &versions)
                    pullNanos += MonotonicClock.nanoseconds() - pullStart
                    havePulled = true
                }
                let batch = prefetcher.batch(step: step, rank: rank)
                let loss: Double
                var state = JobState.running
                if usesExchange {
                    // One round trip: this step's gradient and clock go out, the next step's weights come back; in a
                    // scale-out job each server's part goes out as soon as the backward pass has finished it.
                    let outcome = try computeAndExchange(
                        model, tensorLayout: tensorLayout, batch: batch, servers, layout: layout, rank: rank,
                        clock: UInt64(step), samples: job.batchPerWorker, featureCount: job.featureCount,
                        gradient: &gradient, into: &parameters, versions: &versions)
                    loss = outcome.loss
                    pullNanos += outcome.waitNanos
                    // nil: the servers took the gradient and the clock, but the weights were not ready: pulled next.
                    havePulled = outcome.state != nil
                    state = outcome.state ?? .running
                } else {
                    loss = parameters.withUnsafeBufferPointer { p in
                        batch.features.withUnsafeBufferPointer { f in
                            batch.labels.withUnsafeBufferPointer { l in
                                gradient.withUnsafeMutableBufferPointer { g in
                                    model.lossAndGradient(
                                        parameters: ParameterValues(flat: p, layout: tensorLayout),
                                        batch: Batch(
                                            features: f, labels: l, rows: job.batchPerWorker,
                                            featureCount: job.featureCount),
                                        gradient: GradientValues(flat: g, layout: tensorLayout))
                                }
                            }
                        }
                    }
                    if options.debugStepDelayMillis > 0 {
                        Thread.sleep(forTimeInterval: Double(options.debugStepDelayMillis) / 1000)
                    }
                    havePulled = false
                    let pushStart = MonotonicClock.nanoseconds()
                    try pushAll(servers, layout: layout, clock: UInt64(step), gradient: gradient, versions: versions)
                    state = try sendClock(
                        connected, rank: rank, clock: UInt64(step + 1), loss: loss, samples: job.batchPerWorker)
                    pullNanos += MonotonicClock.nanoseconds() - pushStart
                }
                step += 1
                samplesDone += job.batchPerWorker
                epochLoss = (epochLoss.sum + loss, epochLoss.steps + 1)
                if state == .finished { break }
                let epochEnded = step % job.stepsPerEpoch == 0 || step == totalSteps
                if epochEnded {
                    let epoch = (step - 1) / job.stepsPerEpoch
                    if let test {
                        if !havePulled {
                            try pullAll(
                                servers, layout: layout, clock: UInt64(step), into: &parameters, versions: &versions)
                            havePulled = true
                        }
                        let result = evaluate(model, layout: tensorLayout, parameters: parameters, on: test)
                        if let result {
                            // A model without classes reports accuracy 0.
                            _ = try connected.request(
                                .metrics(
                                    EpochMetrics(
                                        epoch: UInt32(epoch), testLoss: result.loss,
                                        testAccuracy: result.accuracy ?? 0,
                                        samples: UInt64(step * job.batchPerWorker * job.workers)))
                            ).wait()
                        }
                        report(
                            epoch: epoch, of: job.epochs, step: step, total: totalSteps,
                            loss: epochLoss.sum / Double(epochLoss.steps), accuracy: result?.accuracy,
                            started: started, samples: samplesDone, batch: job.batchPerWorker)
                    } else {
                        report(
                            epoch: epoch, of: job.epochs, step: step, total: totalSteps,
                            loss: epochLoss.sum / Double(epochLoss.steps), accuracy: nil, started: started,
                            samples: samplesDone, batch: job.batchPerWorker)
                    }
                    epochLoss = (0, 0)
                } else if options.progress == .bar {
                    drawBar(
                        step: step, total: totalSteps, loss: epochLoss.sum / Double(epochLoss.steps),
                        started: started, samples: samplesDone, batch: job.batchPerWorker)
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
                connected = try reconnect(
                    after: error, at: step, closing: connected, servers: servers, heartbeat: heartbeat,
                    firstWelcome: firstWelcome)
                havePulled = false
                rank = connected.rank ?? rank
                step = Int(connected.config.startStep)
                epochLoss = (0, 0)
                // Whether the server took the last compressed gradient is unknown, and a restore rolls back past
                // what the residual remembers: it starts over empty.
                if let compressor, compressor.dropResidual() {
                    log.info("residual-dropped", ["compression": compressor.setting.description, "step": step])
                }
                if connected.config.shardCount != layout.shardCount {
                    log.info("reshard", ["from": layout.shardCount, "to": connected.config.shardCount])
                    layout = ShardLayout(
                        tensorElementCounts: tensorLayout.counts, shardCount: connected.config.shardCount)
                    versions = [UInt64](repeating: 0, count: layout.shardCount)
                }
                // After the layout: a restored job may spread its shards differently over its servers.
                servers = try openServers(connected, layout: layout)
                log.info("resumed", ["rank": rank, "step": step])
            }
        }
        if options.progress == .bar { FileHandle.standardError.write(Data("\n".utf8)) }
        // SSP/async: epoch records evaluate a moving model. A worker that finishes when every live worker's clock
        // is at the last step (so every last push is applied) evaluates the final weights; the job's summary
        // reports that accuracy.
        if job.mode != "bsp", step >= job.totalSteps, slowestClock >= UInt64(job.totalSteps), let test {
            do {
                try pullAll(
                    servers, layout: layout, clock: UInt64(job.totalSteps), into: &parameters, versions: &versions)
                if let result = evaluate(model, layout: tensorLayout, parameters: parameters, on: test) {
                    _ = try connected.request(
                        .metrics(
                            EpochMetrics(
                                epoch: EpochMetrics.finalWeights, testLoss: result.loss,
                                testAccuracy: result.accuracy ?? 0,
                                samples: UInt64(job.totalSteps * job.batchPerWorker * job.workers)))
                    ).wait()
                    log.info("final-evaluation", ["test_accuracy": String(format: "%.4f", result.accuracy ?? 0)])
                }
            } catch {
                log.warning("final-evaluation-failed", ["error": error])
            }
        }
        heartbeat.stop()
        servers.closeJoined()
        leave(connected, reason: .finished)
        let seconds = Date().timeIntervalSince(started)
        log.info(
            "finished",
            [
                "steps": step, "seconds": String(format: "%.2f", seconds),
                "samples_per_s": String(format: "%.0f", Double(samplesDone) / max(seconds, 1e-9)),
                // Time in pulls and exchanges (server-side waits for the barrier or the SSP bound, plus transfers).
                "pull_wait_fraction": String(format: "%.3f", Double(pullNanos) / 1e9 / max(seconds, 1e-9)),
                "compression": job.compression ?? "none",
                "gradient_bytes": traffic.gradientBytes, "weight_bytes": traffic.weightBytes,
                // Scale-out: server parts sent while the backward pass still ran (DDP-style buckets).
                "early_exchanges": traffic.earlyExchanges,
            ])
    }

    // MARK: Connection

    /// The coordinator and, in a scale-out job, a connection to every joined server its welcome names.
    func openServers(_ coordinator: ParameterClient, layout: ShardLayout) throws(WorkerError) -> ServerSet {
        try ServerSet.open(coordinator: coordinator, layout: layout) { (host, port) throws(WorkerError) in
            try connect(host: host, port: port)
        }
    }

    /// After a lost connection at `step`: stops the heartbeat, closes the joined servers' connections and this one,
    /// connects again under the same name (bounded by --reconnect-timeout), checks the welcome against the first
    /// and restarts the heartbeat. The caller resumes at the new welcome's start step.
    func reconnect(
        after error: ClientError, at step: Int, closing connected: ParameterClient, servers: ServerSet,
        heartbeat: HeartbeatSender, firstWelcome: WelcomeConfig
    ) throws(WorkerError) -> ParameterClient {
        log.warning("connection-lost", ["error": error, "step": step])
        heartbeat.stop()
        servers.closeJoined()
        connected.close()
        let fresh = try connect()
        try checkWelcome(fresh, previous: firstWelcome)
        heartbeat.start(client: fresh)
        return fresh
    }

    /// Connects and joins (the coordinator, unless `host` and `port` name a joined server), retrying until
    /// --reconnect-timeout passes.
    func connect(role: Role = .worker, host: String? = nil, port: UInt16? = nil) throws(WorkerError)
        -> ParameterClient
    {
        let host = host ?? options.host
        let port = port ?? options.port
        let deadline = Date(timeIntervalSinceNow: options.reconnectTimeoutSeconds)
        var lastError = ""
        var attempt = 0
        while true {
            do {
                let client = try ParameterClient.connect(
                    host: host, port: port, role: role, name: options.name, token: options.token,
                    connectTimeout: .seconds(5), tls: options.tls)
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
                    "cannot reach the server at \(host):\(port) for "
                        + "\(Int(options.reconnectTimeoutSeconds)) s: \(lastError)")
            }
            if attempt == 1 {
                log.warning("connect-retry", ["server": "\(host):\(port)", "error": lastError])
            }
            Thread.sleep(forTimeInterval: min(0.2 * Double(attempt), 1.0))
        }
    }

    func leave(_ client: ParameterClient, reason: LeaveReason) {
        _ = try? client.request(.leave(Leave(rank: UInt32(max(client.rank ?? 0, 0)), reason: reason))).wait(
            timeout: .seconds(5))
        client.close()
    }

    /// `--test` of the worker, else the job's test path (unless a data provider brings its own), else the source's.
    private func loadTest(source: any DataProvider, job: JobDescription) -> Dataset? {
        do {
            let test: Dataset?
            if let path = options.testOverride ?? (dataProvider == nil ? job.test : nil) {
                let testSource = try DataSource(parsing: path, labelColumn: job.labelColumn == "last" ? .last : .first)
                test = try testSource.loadTrain()
                if let test, job.classCount > 0 { try testSource.requireClassLabels(test, classCount: job.classCount) }
            } else {
                test = try source.loadTest()
            }
            try test?.requireModelShape(featureCount: job.featureCount, classCount: job.classCount)
            // Evaluated whole every epoch: floats once, rather than converted from bytes each time.
            return test?.storingFloats()
        } catch {
            log.warning("no-test-set", ["error": "\(error)"])
            return nil
        }
    }

    // MARK: Pipelined shard traffic

    /// Pulls every shard (all requests in flight before waiting on any) straight into the flat parameter vector.
    func pullAll(
        _ servers: ServerSet, layout: ShardLayout, clock: UInt64, into parameters: inout [Float],
        versions: inout [UInt64]
    ) throws(ClientError) {
        let count = layout.shardCount
        var handles: [RequestHandle] = []
        handles.reserveCapacity(count)
        try parameters.withUnsafeMutableBufferPointer { (flat) throws(ClientError) in
            for shard in 0..<count {
                let range = layout.range(ofShard: shard)
                handles.append(
                    try servers.client(forShard: shard).pull(
                        shard: shard, clock: clock, into: UnsafeMutableBufferPointer(rebasing: flat[range])))
            }
            for (shard, reply) in try RequestHandle.waitAll(handles).enumerated() {
                if case .pulled(_, let version) = reply { versions[shard] = version }
            }
            // Compressed pulls: weights are the half-format ones however they came, so a pull after a timeout or
            // a reconnect gives the same gradient as an exchange reply would have.
            if weightEncoding != .none { GradientCodec.roundHalf(weightEncoding, flat) }
        }
        traffic.weightBytes += UInt64(4 * parameters.count)
    }

    /// Pushes every shard's slice of the gradient, then waits for all acknowledgements.
    func pushAll(
        _ servers: ServerSet, layout: ShardLayout, clock: UInt64, gradient: [Float], versions: [UInt64]
    ) throws(ClientError) {
        var handles: [RequestHandle] = []
        handles.reserveCapacity(layout.shardCount)
        try gradient.withUnsafeBufferPointer { (flat) throws(ClientError) in
            for shard in 0..<layout.shardCount {
                let range = layout.range(ofShard: shard)
                handles.append(
                    try servers.client(forShard: shard).push(
                        shard: shard, clock: clock, baseVersion: versions[shard],
                        gradient: UnsafeBufferPointer(rebasing: flat[range])))
            }
        }
        _ = try RequestHandle.waitAll(handles)
        traffic.gradientBytes += UInt64(4 * gradient.count)
        traffic.steps += 1
    }

    func sendClock(
        _ client: ParameterClient, rank: Int, clock: UInt64, loss: Double, samples: Int
    ) throws(ClientError) -> JobState {
        let reply = try client.request(
            .clock(ClockReport(rank: UInt32(rank), clock: clock, loss: loss, samples: UInt64(samples)))
        ).wait()
        if case .message(.clockAck(let ack)) = reply {
            slowestClock = ack.minClock
            return ack.jobState
        }
        return .running
    }

    /// One step's network exchange in one round trip: the gradient of step `clock` (every shard's slice), the
    /// step's loss and samples, and the request for the weights of step `clock + 1`, which land straight in
    /// `parameters`; returns the job's state as the clock report saw it.
    ///
    /// In a scale-out job each server gets its own part (in the worker's `sendOrder`), every request is sent
    /// before any reply is awaited, and the job state is the coordinator's.
    ///
    /// With a compressed job each server's part travels compressed (`GradientCompressor`, one entry per shard).
    func exchange(
        _ servers: ServerSet, layout: ShardLayout, rank: Int, clock: UInt64, loss: Double, samples: Int,
        gradient: [Float], into parameters: inout [Float], versions: inout [UInt64]
    ) throws(ClientError) -> JobState {
        var sentBytes = 0
        let baseVersions = versions
        let replies = try gradient.withUnsafeBufferPointer { (g) throws(ClientError) -> [Reply] in
            try parameters.withUnsafeMutableBufferPointer { (p) throws(ClientError) -> [Reply] in
                var handles: [RequestHandle?] = Array(repeating: nil, count: servers.members.count)
                for index in servers.sendOrder(rank: rank) {
                    guard
                        let sent = try sendExchange(
                            to: servers.members[index], layout: layout, rank: rank, clock: clock, loss: loss,
                            samples: samples, baseVersions: baseVersions, gradient: g, parameters: p)
                    else { continue }
                    handles[index] = sent.handle
                    sentBytes += sent.bytes
                }
                return try RequestHandle.waitAll(handles.compactMap { $0 })
            }
        }
        return try settleExchange(replies, servers, sentBytes: sentBytes, versions: &versions)
    }

    /// One step's gradient and exchange, with DDP-style buckets: the model's backward pass reports each finished
    /// trailing part of the gradient (`TrainableModel.lossAndGradient(parameters:batch:gradient:ready:)`), and every
    /// server whose whole part lies in it gets its exchange at once, while the earlier layers' gradients are still
    /// being computed; the others go out when the pass ends. The frames, bytes and replies are those of `exchange`;
    /// only the moment each is sent changes (with one server, whose part starts at 0, nothing goes out early).
    ///
    /// Returns the step's loss, the job state (nil when the weights were not ready in time: pulled next) and the
    /// nanoseconds spent after the backward pass, in the sends still to do and the wait for the replies.
    func computeAndExchange(
        _ model: any TrainableModel, tensorLayout: TensorLayout, batch: BatchPrefetcher.Batch, _ servers: ServerSet,
        layout: ShardLayout, rank: Int, clock: UInt64, samples: Int, featureCount: Int, gradient: inout [Float],
        into parameters: inout [Float], versions: inout [UInt64]
    ) throws(ClientError) -> (loss: Double, state: JobState?, waitNanos: UInt64) {
        let sends = BucketSends(servers: servers, order: servers.sendOrder(rank: rank))
        let step = BucketedStep(
            model: model, tensorLayout: tensorLayout, layout: layout, rank: rank, clock: clock, samples: samples,
            featureCount: featureCount, baseVersions: versions)
        let outcome = try parameters.withUnsafeMutableBufferPointer {
            (p) throws(ClientError) -> BucketedStep.Outcome in
            try gradient.withUnsafeMutableBufferPointer { (g) throws(ClientError) -> BucketedStep.Outcome in
                try run(step, batch: batch, sends: sends, parameters: p, gradient: g)
            }
        }
        let waitNanos = MonotonicClock.nanoseconds() - outcome.waitStart
        guard let replies = outcome.replies else { return (outcome.loss, nil, waitNanos) }
        let state = try settleExchange(replies, servers, sentBytes: sends.bytes, versions: &versions)
        return (outcome.loss, state, waitNanos)
    }

    /// The body of `computeAndExchange`, on the parameters' and the gradient's storage.
    private func run(
        _ step: BucketedStep, batch: BatchPrefetcher.Batch, sends: BucketSends,
        parameters p: UnsafeMutableBufferPointer<Float>, gradient g: UnsafeMutableBufferPointer<Float>
    ) throws(ClientError) -> BucketedStep.Outcome {
        let send = { (start: Int, loss: Double) throws(ClientError) -> Void in
            try sends.send(from: start) { (member) throws(ClientError) -> (handle: RequestHandle, bytes: Int)? in
                try self.sendExchange(
                    to: member, layout: step.layout, rank: step.rank, clock: step.clock, loss: loss,
                    samples: step.samples, baseVersions: step.baseVersions, gradient: UnsafeBufferPointer(g),
                    parameters: p)
            }
        }
        let ready: (Int, Double) -> Void = { start, loss in
            // A failed send stops the early ones; it is thrown once the pass has ended.
            guard start > 0, sends.failure == nil else { return }
            do throws(ClientError) {
                try send(start, loss)
            } catch {
                sends.failure = error
            }
        }
        let loss = batch.features.withUnsafeBufferPointer { f in
            batch.labels.withUnsafeBufferPointer { l in
                step.model.lossAndGradient(
                    parameters: ParameterValues(flat: UnsafeBufferPointer(p), layout: step.tensorLayout),
                    batch: Batch(features: f, labels: l, rows: step.samples, featureCount: step.featureCount),
                    gradient: GradientValues(flat: g, layout: step.tensorLayout), ready: ready)
            }
        }
        if let failure = sends.failure { throw failure }
        if options.debugStepDelayMillis > 0 {
            Thread.sleep(forTimeInterval: Double(options.debugStepDelayMillis) / 1000)
        }
        traffic.earlyExchanges += UInt64(sends.handles.count { $0 != nil })
        let waitStart = MonotonicClock.nanoseconds()
        try send(0, loss)
        do {
            return BucketedStep.Outcome(
                loss: loss, replies: try RequestHandle.waitAll(sends.handles.compactMap { $0 }), waitStart: waitStart)
        } catch .remote(.timeout, let message) {
            // The servers took the gradient and the clock; only the weights were not ready: pulled next.
            log.info("waiting", ["reason": message])
            return BucketedStep.Outcome(loss: loss, replies: nil, waitStart: waitStart)
        }
    }

    /// Sends `member` its part of step `clock`'s exchange (compressed when the job is); nil when the
    /// `debugDieMidStep` flag skips a joined server at this step. The reply lands in `parameters`.
    private func sendExchange(
        to member: ServerSet.Member, layout: ShardLayout, rank: Int, clock: UInt64, loss: Double, samples: Int,
        baseVersions: [UInt64], gradient g: UnsafeBufferPointer<Float>, parameters p: UnsafeMutableBufferPointer<Float>
    ) throws(ClientError) -> (handle: RequestHandle, bytes: Int)? {
        if options.debugDieMidStep == Int(clock), !member.isCoordinator { return nil }
        let destination = UnsafeMutableBufferPointer(rebasing: p[member.elements])
        let result: (handle: RequestHandle, bytes: Int)
        if let compressor {
            let body = compressor.compress(g, shards: member.shards.map { layout.range(ofShard: $0) })
            let handle = try body.withUnsafeBufferPointer { (bytes) throws(ClientError) in
                try member.client.exchange(
                    rank: rank, clock: clock, loss: loss, samples: UInt64(samples),
                    baseVersions: Array(baseVersions[member.shards]), count: member.elements.count,
                    encoding: compressor.encoding, body: UnsafeRawBufferPointer(bytes),
                    replyEncoding: weightEncoding, into: destination)
            }
            result = (handle, body.count)
        } else {
            let handle = try member.client.exchange(
                rank: rank, clock: clock, loss: loss, samples: UInt64(samples),
                baseVersions: Array(baseVersions[member.shards]),
                gradient: UnsafeBufferPointer(rebasing: g[member.elements]), into: destination)
            result = (handle, 4 * member.elements.count)
        }
        if options.debugDieMidStep == Int(clock), member.isCoordinator {
            log.warning("debug-die-mid-step", ["step": clock])
            exit(3)
        }
        return result
    }

    /// Takes a step's exchange replies (in `servers.members` order): the shards' versions, the job state and
    /// slowest clock from the coordinator's reply, and the traffic counters.
    private func settleExchange(
        _ replies: [Reply], _ servers: ServerSet, sentBytes: Int, versions: inout [UInt64]
    ) throws(ClientError) -> JobState {
        traffic.gradientBytes += UInt64(sentBytes)
        traffic.steps += 1
        var state = JobState.running
        for (member, reply) in zip(servers.members, replies) {
            traffic.weightBytes += UInt64((weightEncoding == .none ? 4 : 2) * member.elements.count)
            guard case .exchanged(let prefix) = reply, prefix.versions.count == member.shards.count else {
                throw .protocolViolation("expected an exchange reply for shards \(member.shards), got \(reply)")
            }
            versions.replaceSubrange(member.shards, with: prefix.versions)
            if member.isCoordinator {
                state = prefix.jobState
                slowestClock = prefix.minClock
            }
        }
        return state
    }

    private func evaluate(
        _ model: any TrainableModel, layout: TensorLayout, parameters: [Float], on test: Dataset
    ) -> Evaluation? {
        parameters.withUnsafeBufferPointer { p in
            test.features.withUnsafeBufferPointer { f in
                test.labels.withUnsafeBufferPointer { l in
                    model.evaluate(
                        parameters: ParameterValues(flat: p, layout: layout),
                        batch: Batch(features: f, labels: l, rows: test.rowCount, featureCount: test.featureCount))
                }
            }
        }
    }

    // MARK: Model

    /// The factory's model, or the job's built-in one.
    private func makeModel(job: JobDescription) throws -> any TrainableModel {
        let context = ModelContext(
            model: job.model, featureCount: job.featureCount, classCount: job.classCount,
            batchPerWorker: job.batchPerWorker, seed: job.seed)
        if let modelFactory { return try modelFactory(context) }
        guard job.model != JobPlanner.externalModel else {
            throw ModelError(
                "the job's model is external: run a worker program that brings its own model (see the README, "
                    + "\"Your own model\")")
        }
        return try ModelKind(parsing: job.model).makeModel(context: context)
    }

    /// Connects without joining (as an operator tool would), builds the model for the job and compares its
    /// tensors with the ones the server holds (a built-in model's, or an external job's first worker's).
    private func probeModel() throws(WorkerError) -> any TrainableModel {
        let probe = try connect(role: .control)
        defer { probe.close() }
        do {
            try probe.config.validateJobAndLayout()
        } catch {
            throw WorkerError("\(error)")
        }
        guard let job = probe.config.job else {
            throw WorkerError(
                "the server at \(options.host):\(options.port) has no training job (start psserver with --model)")
        }
        let model: any TrainableModel
        do {
            model = try makeModel(job: job)
        } catch {
            throw WorkerError("the model cannot train on the job's data: \(error)")
        }
        try checkTensors(model, job: job, known: probe.config.tensors)
        return model
    }

    /// Refuses a model whose tensors differ from `known` (the server's), naming the first difference; an external
    /// job with nothing registered yet accepts any model.
    private func checkTensors(_ model: any TrainableModel, job: JobDescription, known: [TensorShape])
        throws(WorkerError)
    {
        let shapes = model.parameters.map { TensorShape(name: $0.name, shape: $0.shape) }
        if job.model == JobPlanner.externalModel {
            guard !known.isEmpty else { return }
            if let difference = TensorShape.firstDifference(expected: known, actual: shapes) {
                throw WorkerError(
                    "refused: this worker's model differs from the job's (set by its first worker): \(difference)")
            }
        } else if let difference = TensorShape.firstDifference(expected: known, actual: shapes) {
            throw WorkerError(
                "refused: this worker's model does not match the job's model \(job.model): \(difference)")
        }
    }

    /// Registers the model's tensors in an external job (the server refuses a list that differs from the first
    /// worker's, which matters when two workers probe an empty job at once); in a built-in job, checks them again
    /// against the tensors the joined connection reports.
    private func registerOrCheckTensors(_ model: any TrainableModel, job: JobDescription, client: ParameterClient)
        throws(WorkerError)
    {
        guard job.model == JobPlanner.externalModel else {
            try checkTensors(model, job: job, known: client.config.tensors)
            return
        }
        let parameters = model.parameters
        do {
            _ = try client.register(
                parameters.map { TensorSpec(name: $0.name, shape: $0.shape, initializer: InitSpec($0.initializer)) })
        } catch .remote(_, let message) {
            throw WorkerError("the server refused this worker's model: \(message)")
        } catch {
            throw WorkerError("cannot register the model's tensors: \(error)")
        }
    }

    // MARK: Progress

    /// The epoch line; `epoch` is the index from 0 (the console numbers from 1), `loss` the epoch's mean.
    func report(
        epoch: Int, of epochs: Int, step: Int, total: Int, loss: Double, accuracy: Double?, started: Date,
        samples: Int, batch: Int
    ) {
        let rate = ProgressText.rate(samples: samples, seconds: Date().timeIntervalSince(started))
        let line = ProgressText.epochLine(
            epoch: epoch + 1, of: epochs, step: step, total: total, meanLoss: loss, accuracy: accuracy, rate: rate,
            secondsLeft: ProgressText.secondsLeft(steps: total - step, batch: batch, rate: rate))
        switch options.progress {
        case .quiet: return
        case .bar: FileHandle.standardError.write(Data(("\r\u{1B}[2K" + line + "\n").utf8))
        case .lines: FileHandle.standardError.write(Data((line + "\n").utf8))
        }
    }

    private func drawBar(step: Int, total: Int, loss: Double, started: Date, samples: Int, batch: Int) {
        let rate = ProgressText.rate(samples: samples, seconds: Date().timeIntervalSince(started))
        let text = ProgressText.bar(
            step: step, total: total, meanLoss: loss, rate: rate,
            secondsLeft: ProgressText.secondsLeft(steps: total - step, batch: batch, rate: rate))
        FileHandle.standardError.write(Data(("\r" + text).utf8))
    }
}

/// Sends a heartbeat every interval on its own thread while the worker computes.
final class HeartbeatSender: Sendable {
    private struct State {
        var client: ParameterClient? = nil
        var running = false
        /// Bumped by every `start`, so a thread left over from an earlier start ends instead of sending.
        var generation = 0
        var clock: UInt64 = 0
    }

    private let state = LockedValue(State())
    let interval: Double

    init(intervalMillis: Int) {
        interval = Double(max(intervalMillis, 50)) / 1000
    }

    /// The clock the next heartbeat reports.
    var clock: UInt64 {
        get { state.withLock { $0.clock } }
        set { state.withLock { $0.clock = newValue } }
    }

    func start(client: ParameterClient) {
        let generation = state.withLockAndBroadcast { state in
            state.client = client
            state.running = true
            state.generation += 1
            return state.generation
        }
        let thread = Thread { [self] in loop(generation: generation) }
        thread.name = "psworker-heartbeat"
        thread.start()
    }

    func stop() {
        state.withLockAndBroadcast { state in
            state.running = false
            state.client = nil
        }
    }

    private func loop(generation: Int) {
        while true {
            // Sleeps one interval; `stop` (or a later `start`) wakes it early to end.
            let next = state.wait(
                until: MonotonicClock.deadline(afterSeconds: interval),
                while: { $0.running && $0.generation == generation }
            ) { state, _ -> (client: ParameterClient, clock: UInt64)? in
                guard state.running, state.generation == generation, let client = state.client else { return nil }
                return (client, state.clock)
            }
            guard let (client, clock) = next else { return }
            // Fire and forget: the reader thread drops the acknowledgement.
            _ = try? client.request(.heartbeat(Heartbeat(rank: UInt32(max(client.rank ?? 0, 0)), clock: clock)))
        }
    }
}

/// What one bucketed step (`Worker.computeAndExchange`) works with, and what it brings back.
private struct BucketedStep {
    struct Outcome {
        let loss: Double
        /// nil when the weights were not ready in time.
        let replies: [Reply]?
        /// When the backward pass had ended (monotonic nanoseconds).
        let waitStart: UInt64
    }

    let model: any TrainableModel
    let tensorLayout: TensorLayout
    let layout: ShardLayout
    let rank: Int
    let clock: UInt64
    let samples: Int
    let featureCount: Int
    let baseVersions: [UInt64]
}

/// The sends of one bucketed step (`Worker.computeAndExchange`): which servers got their part, their request
/// handles (in `servers.members` order), the bytes sent and the first failure. Used on the worker's thread only.
private final class BucketSends {
    let servers: ServerSet
    let order: [Int]
    var sent: [Bool]
    var handles: [RequestHandle?]
    var bytes = 0
    var failure: ClientError? = nil

    init(servers: ServerSet, order: [Int]) {
        self.servers = servers
        self.order = order
        sent = Array(repeating: false, count: servers.members.count)
        handles = Array(repeating: nil, count: servers.members.count)
    }

    /// Sends, with `exchange`, every server not yet sent whose part starts at or after `start`, in send order.
    func send(
        from start: Int, _ exchange: (ServerSet.Member) throws(ClientError) -> (handle: RequestHandle, bytes: Int)?
    ) throws(ClientError) {
        for index in order where !sent[index] && servers.members[index].elements.lowerBound >= start {
            sent[index] = true
            guard let result = try exchange(servers.members[index]) else { continue }
            handles[index] = result.handle
            bytes += result.bytes
        }
    }
}
