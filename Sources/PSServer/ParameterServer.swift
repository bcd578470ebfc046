import Foundation
import PSCheckpoint
import PSCoordinator
import PSHTTP
import PSLog
import PSMath
import PSPosix
import PSSecurity
import PSTransport
import PSWire
import Synchronization

/// A running `psserver`: the shard store, the coordinator (when a job is configured), the listener and one
/// `Thread` per connection with blocking I/O.
///
/// The server is also the coordinator's executor: `carryOut` performs the directives the job coordinator
/// returns (apply a BSP step, take a checkpoint, close a replaced connection, finish the job), always after the
/// coordinator's lock was released.
public final class ParameterServer: Sendable {
    public let config: ServerConfig
    /// The shard store. A joined server replaces its placeholder once, with the store the coordinator's model
    /// part describes (its optimizer and K); every other server keeps the one it started with.
    public var store: ShardStore { storeBox.withLock { $0 } }
    private let storeBox: LockedValue<ShardStore>
    /// Runs the per-shard parts of a multi-shard request at once (one helper fewer than the cores, at most one
    /// per shard beyond the requesting thread).
    let shardWorkers: ShardWorkers
    let coordinator: Coordinator?
    let checkpoints: CheckpointManager?
    let log: Logger
    let metrics: MetricsFile?
    /// Counters, histograms and the run's history for `/metrics` and the dashboard.
    public let serverMetrics: ServerMetrics
    /// The `--metrics-port` endpoint, when configured.
    let http: HTTPServer?
    let listener: Socket
    /// TLS for accepted connections (`--tls-cert`/`--tls-key`), nil for plain TCP.
    let tlsServer: TLSContext?
    /// TLS towards the coordinator for `--join` (this server's certificate, verified against `--tls-ca`).
    let tlsClient: TLSContext?
    /// The port actually bound (useful with port 0).
    public let port: UInt16
    let startNanos = MonotonicClock.nanoseconds()
    /// Open connections, by id.
    let connections = LockedValue<[UInt64: FramedConnection]>([:])
    /// Requests being served right now; `stop` waits (on `requestsDrained`) for them to finish.
    let activeRequests = Atomic<Int>(0)
    private let requestsDrained = LockedValue<Bool>(false)
    let nextConnectionID = Atomic<UInt64>(1)
    /// When the placement completed (joined servers are watched from then on).
    let placementNanos = Atomic<UInt64>(0)
    /// SSP on several servers: the live ranks last sent to joined servers.
    private let publishedLiveRanks = LockedValue<[Int]>([])
    /// Scale-out: why the job is rolling back to its last checkpoint, while it is (workers are refused then).
    let rollingBack = LockedValue<String?>(nil)
    /// The connections of joined workers (a rollback closes them and waits for them to end).
    let workerConnectionIDs = LockedValue<Set<UInt64>>([])
    /// The joined servers whose silence was logged (the ticker's, to log each pause once).
    private let silentServersLogged = LockedValue<Set<Int>>([])
    let stopped = Atomic<Bool>(false)
    /// A joined server's place in the coordinator's placement, once it registered (`--join`).
    let joinedPlacement = LockedValue<JoinedPlacement?>(nil)
    /// A joined server's shards' rules and BSP steps, once it installed its model part.
    let joinedShards = LockedValue<JoinedShards?>(nil)
    /// A coordinator of several servers (`--servers` > 1): its end of the joined servers' links.
    let links: ServerLinks?
    /// A coordinator of several servers: the placement, once every server registered and the model was laid out
    /// over it.
    let completedPlacement = LockedValue<ServerPlacement?>(nil)
    /// A coordinator of several servers: the whole model as laid out before the placement (or as its first worker
    /// registered it), which joined servers fetch their parts from.
    let initialModel = LockedValue<ModelSnapshot?>(nil)
    /// The steps done when this server started (a restored checkpoint's step, or 0), or when the job last rolled
    /// back (scale-out): where the joined servers' model parts start.
    let initialCompletedSteps: LockedValue<UInt64>
    /// Set once by `stop`; `waitUntilStopped` sleeps on it.
    private let exitCode = LockedValue<Int32?>(nil)
    /// Why the job failed and the server is stopping (a refused BSP step), for the workers' error frames.
    let failureReason = LockedValue<String?>(nil)
    /// The job's row-sparse tables (`ServerConfig.sparseTables`), in wire order.
    public let sparseTables: [RowSparseTable]

    /// Binds the listening socket, builds the store (registering the job's model or restoring a checkpoint).
    public init(config: ServerConfig, log: Logger = Logger(component: "psserver")) throws {
        try config.validate()
        // Shard arithmetic runs on many threads at once (connections and ShardWorkers), each call on one shard:
        // OpenBLAS must not start threads of its own inside those calls. Its pthread server is not safe against
        // concurrent multi-threaded calls (a sanitized run crashed in cblas_saxpy), and one thread per call also
        // keeps the server's arithmetic independent of OPENBLAS_NUM_THREADS.
        BLAS.setThreadCount(1)
        self.config = config
        self.log = log
        do {
            // A plaintext client is told, in clear, what it missed; then the server closes.
            let refusal = MessageCodec.encodeFrame(
                .error(
                    ErrorMessage(
                        code: .unauthorized,
                        message: "this server requires TLS: connect with --tls-ca (and --tls-cert/--tls-key)")),
                requestID: 0)
            tlsServer = try config.tls.serverContext(plaintextRefusal: refusal)
            tlsClient = config.join != nil && config.tls.enablesServer ? try config.tls.clientContext() : nil
        } catch {
            throw ConfigError("\(error)")
        }
        let metrics = try config.metricsPath.map { try MetricsFile(path: $0, header: Self.runRecord(config)) }
        self.metrics = metrics
        let serverMetrics = ServerMetrics()
        self.serverMetrics = serverMetrics
        let store = ShardStore(
            shardCount: config.shardCount, optimizer: config.optimizer, workerSlots: config.job?.workers ?? 1,
            requiresIdenticalTensors: config.job != nil,
            keepsSnapshotBuffers: config.checkpointDirectory != nil, maxModelBytes: config.maxModelBytes)
        storeBox = LockedValue(store)
        let sparseOptimizer = config.effectiveSparseOptimizer ?? RowOptimizerConfig(kind: .sgd, learningRate: 1)
        let sparseTables = config.sparseTables.map {
            RowSparseTable(spec: $0, shardCount: config.shardCount, optimizer: sparseOptimizer)
        }
        self.sparseTables = sparseTables
        links = config.servers > 1 ? ServerLinks(servers: config.servers) : nil
        if let directory = config.checkpointDirectory {
            // Probed now: an unwritable directory must stop the start, not the end of a job.
            try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            do {
                try FileSystem.probeWritable(directory: directory)
            } catch {
                throw ConfigError("--checkpoint-dir \(directory) is not writable: \(error)")
            }
        }
        let checkpoints = config.checkpointDirectory.map {
            CheckpointManager(
                root: $0, keep: config.keepCheckpoints, slotNames: config.optimizer.stateSlotNames, log: log,
                metrics: serverMetrics, store: store, sparseTables: sparseTables)
        }
        self.checkpoints = checkpoints

        var completedSteps: UInt64 = 0
        var restoredClocks: [String: UInt64] = [:]
        var restoredRanks: [String: Int] = [:]
        if let restore = config.restore {
            guard let checkpoints else { throw ConfigError("--restore needs --checkpoint-dir") }
            let restored = try checkpoints.restore(spec: restore, into: store, expectedTensors: config.jobTensors)
            completedSteps = restored.step
            restoredClocks = restored.workerClocks
            restoredRanks = restored.workerRanks
            log.info("restored", ["checkpoint": restored.path, "step": restored.step])
        } else if !config.jobTensors.isEmpty {
            try store.register(config.jobTensors)
        }
        initialCompletedSteps = LockedValue(completedSteps)
        coordinator = config.job.map {
            Coordinator(config: config, job: $0, completedSteps: completedSteps, restoredClocks: restoredClocks)
        }
        listener = try Socket.listen(host: config.host, port: config.port)
        port = try listener.localPort()
        http = try Self.makeHTTPServer(config: config, listener: listener)
        shardWorkers = ShardWorkers(
            helpers: min(config.shardCount, ProcessInfo.processInfo.activeProcessorCount) - 1)
        if let coordinator { carryOut(coordinator.restored(ranks: restoredRanks)) }
    }

    /// Binds the observability endpoint; its handler is attached by `start` (it needs `self`).
    private static func makeHTTPServer(config: ServerConfig, listener: Socket) throws -> HTTPServer? {
        guard let metricsPort = config.metricsPort else { return nil }
        do {
            return try HTTPServer(
                host: config.metricsHost ?? config.host, port: metricsPort, limits: config.httpLimits)
        } catch {
            listener.close()
            throw ConfigError("--metrics-port: \(error)")
        }
    }

    /// The metrics file's first line: what `psctl plot` titles a run with.
    private static func runRecord(_ config: ServerConfig) -> [String: MetricsValue] {
        var fields: [String: MetricsValue] = [
            "type": .string("run"), "mode": .string(config.job == nil ? "store" : config.mode.rawValue),
            "optimizer": .string(config.optimizer.kind.rawValue),
            "lr": .double(Double("\(config.optimizer.learningRate)") ?? 0),
            "shards": .int(config.shardCount),
        ]
        if let job = config.job {
            fields["model"] = .string(job.model)
            fields["data"] = .string(job.data)
            fields["workers"] = .int(job.workers)
            fields["batch"] = .int(job.batchPerWorker)
            fields["epochs"] = .int(job.epochs)
            if config.mode == .ssp { fields["staleness"] = .int(Int(config.staleness)) }
            if let compression = job.compression { fields["compression"] = .string(compression) }
            if job.compressPulls == true { fields["compress_pulls"] = .bool(true) }
            if let rows = job.hashFeatures { fields["hash_features"] = .int(rows) }
        }
        return fields
    }

    /// A joined server installs the store its model part describes (once).
    func replaceStore(_ store: ShardStore) {
        storeBox.withLock { $0 = store }
    }

    /// The port the observability endpoint is bound to, when there is one.
    public var metricsPort: UInt16? { http?.port }

    // MARK: Lifecycle

    /// Starts the accept loop and the coordinator's ticker on their own threads and returns.
    public func start() {
        log.info("listening", ["address": "\(config.host):\(port)", "shards": config.shardCount])
        // BSP: decide now, not under the first step's shard lock, whether the mean and SGD run in one pass here.
        if config.mode == .bsp { _ = FusedMeanSGD.isExact }
        shardWorkers.start()
        let acceptThread = Thread { [self] in acceptLoop() }
        acceptThread.name = "psserver-accept"
        acceptThread.start()
        if let http {
            let endpoints = ObservabilityEndpoints(server: self)
            http.start { endpoints.handle($0) }
            log.info("metrics-listening", ["address": "\(config.metricsHost ?? config.host):\(http.port)"])
        }
        if config.join != nil {
            let joiner = Thread { [self] in joinCoordinator() }
            joiner.name = "psserver-join"
            joiner.start()
        }
        if coordinator != nil {
            let ticker = Thread { [self] in tickLoop() }
            ticker.name = "psserver-ticker"
            ticker.start()
        }
    }

    /// Blocks until the server stops (shutdown request, signal, or the job finished) and its connection threads have
    /// ended (at most 5 s more); returns the exit code.
    public func waitUntilStopped() -> Int32 {
        // No deadline: this is the main thread waiting for the server's whole life.
        let code = exitCode.wait(until: nil, while: { $0 == nil }) { code, _ in code ?? 0 }
        // `stop` closed every connection; each handler thread ends once its request is done. Wait for them
        // (bounded) before the caller exits: a handler still applying an update while `exit` tears the libraries
        // down crashes in them (a sanitized run died in cblas_saxpy, whose function table OpenBLAS had cleared).
        connections.wait(until: MonotonicClock.deadline(afterSeconds: 5), while: { !$0.isEmpty })
        return code
    }

    /// Stops accepting, lets in-flight requests finish (bounded), closes connections and records `code`.
    public func stop(exitCode code: Int32 = 0, reason: String) {
        guard !stopped.exchange(true, ordering: .acquiringAndReleasing) else { return }
        log.info("stopping", ["reason": reason])
        if let links {
            // Joined servers stop with the coordinator (with its exit code); it waits until each was sent that
            // (bounded), so none is left looking for a coordinator that is gone.
            let finish = links.publish(.finish, exitCode: code, reason: reason)
            links.waitUntilSeen(finish, seconds: 3)
        }
        coordinator?.stop()
        links?.stop()
        joinedShards.withLock { $0 }?.stop()
        listener.shutdown()  // wakes the accept thread, which releases the descriptor
        http?.stop()
        // Give handlers in the middle of a request a moment to finish it before their sockets close.
        for connection in connections.withLock({ Array($0.values) }) { connection.shutdownReceive() }
        requestsDrained.wait(
            until: MonotonicClock.deadline(afterSeconds: 2),
            while: { _ in self.activeRequests.load(ordering: .acquiring) > 0 })
        // Handler threads release their own descriptors when they see end-of-stream.
        for connection in connections.withLock({ Array($0.values) }) { connection.shutdown() }
        checkpoints?.waitForWrites()
        metrics?.flush()
        shardWorkers.stop()
        exitCode.withLockAndBroadcast { if $0 == nil { $0 = code } }
    }

    /// Stops on SIGTERM/SIGINT: a server running a job first takes a checkpoint at the next step boundary (BSP;
    /// at once in SSP/async) and waits until it is durable, all within `--stop-timeout`, so that a restarted
    /// server with `--restore latest` continues the job; then stops with exit code 0.
    public func stopForSignal(_ name: String) {
        if let checkpoints, let coordinator, coordinator.isRunning, !stopped.load(ordering: .acquiring) {
            log.info("stop-checkpoint-started", ["reason": name, "timeout_s": config.stopTimeoutSeconds])
            switch ControlService(server: self).takeCheckpoint(
                checkpoints, wait: true, seconds: config.stopTimeoutSeconds)
            {
            case .success(let written):
                log.info("stop-checkpoint", ["path": written.path, "step": written.step])
            case .failure(let error):
                log.error("stop-checkpoint-failed", ["error": error.description])
            }
        }
        stop(exitCode: 0, reason: name)
    }

    /// Counts a request as in flight for the duration of `body` (`stop` waits for in-flight requests).
    func serving<R>(_ body: () throws(TransportError) -> R) throws(TransportError) -> R {
        activeRequests.wrappingAdd(1, ordering: .acquiringAndReleasing)
        defer {
            // The broadcast takes the lock `stop` checks the count under, so it cannot miss the last request.
            let left = activeRequests.wrappingSubtract(1, ordering: .acquiringAndReleasing).newValue
            if left == 0, stopped.load(ordering: .acquiring) { requestsDrained.withLockAndBroadcast { $0 = true } }
        }
        return try body()
    }

    private func acceptLoop() {
        defer { listener.close() }
        while !stopped.load(ordering: .acquiring) {
            let accepted: (socket: Socket, peer: String)
            do {
                accepted = try listener.accept()
            } catch {
                if stopped.load(ordering: .acquiring) { return }
                log.warning("accept-failed", ["error": error])
                Thread.sleep(forTimeInterval: 0.01)
                continue
            }
            let id = nextConnectionID.wrappingAdd(1, ordering: .relaxed).oldValue
            var socket = accepted.socket
            if let tlsServer {
                // No I/O here: the TLS handshake runs on the connection's thread, within --handshake-timeout.
                do {
                    socket = try tlsServer.secure(socket)
                } catch {
                    log.warning("tls-failed", ["peer": accepted.peer, "error": error])
                    socket.close()
                    continue
                }
            }
            let connection = FramedConnection(
                socket: socket, peer: accepted.peer, maxPayloadBytes: config.maxFrameBytes)
            let limit = config.maxConnections
            let admitted = connections.withLock { open in
                guard open.count < limit else { return false }
                open[id] = connection
                return true
            }
            guard admitted else {
                // A fresh socket's send buffer is empty, so this small frame does not block the accept thread.
                try? connection.setSendTimeout(.seconds(1))
                if tlsServer == nil {  // Over TLS the frame would need a handshake on this thread: just close.
                    try? connection.sendError(
                        .resourceExhausted, "the server is at --max-connections \(limit); try again later",
                        requestID: 0)
                }
                connection.close()
                log.warning("connection-refused", ["peer": accepted.peer, "reason": "max-connections \(limit)"])
                continue
            }
            let thread = Thread { [self] in
                let handler = ConnectionHandler(server: self, connection: connection, id: id)
                handler.run()
                // Broadcast: `waitUntilStopped` waits for the table to empty.
                connections.withLockAndBroadcast { _ = $0.removeValue(forKey: id) }
                connection.close()
            }
            thread.name = "psserver-conn-\(id)"
            thread.stackSize = 1 << 20
            thread.start()
        }
    }

    private func tickLoop() {
        guard let coordinator else { return }
        let interval = min(0.2, config.workerTimeoutSeconds / 4)
        while !stopped.load(ordering: .acquiring) {
            Thread.sleep(forTimeInterval: interval)
            carryOut(coordinator.tick())
            checkJoinedServers()
            publishMembership()
        }
    }

    // MARK: Directives

    /// Carries out the job coordinator's directives in order; a directive that reports back to the coordinator
    /// (an applied step, a taken checkpoint) has the directives that report returns carried out at once.
    func carryOut(_ directives: [JobDirective]) {
        for directive in directives {
            switch directive {
            case .log(let record):
                log.write(record)
            case .recordStep(let record):
                metrics?.write(record.metricsFields, sequence: record.sequence)
                serverMetrics.history.withLock { $0.record(record) }
            case .recordEpoch(let record):
                metrics?.write(record.metricsFields, sequence: record.sequence)
                serverMetrics.history.withLock { $0.record(record) }
            case .apply(let shard, let step, let ranks):
                applyStep(shard: shard, step: step, ranks: ranks)
            case .takeCheckpoint(let step):
                takeCheckpoint(step: step)
            case .closeConnection(let id):
                // The name's previous incarnation is gone (or stuck): its connection must not act for the rank.
                connections.withLock { $0[id] }?.shutdown()
            case .finishJob:
                let thread = Thread { [self] in finishJob() }
                thread.name = "psserver-finish"
                thread.start()
            }
        }
    }

    /// BSP: applies the mean of the held gradients on one shard, then tells the coordinator.
    private func applyStep(shard: Int, step: UInt64, ranks: [Int]) {
        guard let coordinator, let model = store.current, shard < model.shards.count else { return }
        let started = MonotonicClock.nanoseconds()
        let checksFinite = !config.allowNonFinite
        let outcome = model.shards[shard].state.withLock {
            $0.applyMean(step: step, ranks: ranks, checksFinite: checksFinite)
        }
        serverMetrics.observe(serverMetrics.applyTime, since: started)
        // Row-sparse tables apply the same step with the same ranks, before it can complete (their pushes came
        // before each rank's dense gradient).
        if shard == 0 {
            for table in sparseTables where !table.applyStep(step, ranks: ranks) {
                log.error("sparse-step-missing", ["table": table.spec.name, "step": step, "ranks": "\(ranks)"])
            }
        }
        // Scale-out: the coordinator's first shard decides the step's ranks for every server (each applies it
        // once it holds exactly those ranks' gradients), before the step can complete here.
        if shard == 0 { links?.publish(.release, step: step, ranks: ranks) }
        switch outcome {
        case .applied:
            break
        case .missingGradient:
            log.error("bsp-apply-missing-gradient", ["shard": shard, "step": step, "ranks": "\(ranks)"])
        case .refusedNonFinite:
            model.shards[shard].refusedNonFiniteCount.wrappingAdd(1, ordering: .relaxed)
            failStep(shard: shard, step: step)
            return  // the step is never completed, so no worker reads weights after it
        }
        carryOut(coordinator.applied(shard: shard, step: step))
    }

    /// BSP: a step's update was refused because it would have made weights non-finite. The shard keeps its
    /// weights, the step is never released (no worker pulls weights after it, no checkpoint records it), the
    /// workers' waits end with an error naming the step, and the server exits 1 with that reason.
    private func failStep(shard: Int, step: UInt64) {
        let reason =
            "step \(step)'s update would make weights of shard \(shard) NaN or infinite; it was refused and the job "
            + "stopped (psserver --allow-nonfinite accepts such updates)"
        log.error("update-refused", ["shard": shard, "step": step, "reason": reason])
        failureReason.withLock { if $0 == nil { $0 = reason } }
        let thread = Thread { [self] in stop(exitCode: 1, reason: reason) }
        thread.name = "psserver-fail"
        thread.start()
    }

    /// Snapshots the model (the training pause) and queues the checkpoint write; then tells the coordinator,
    /// which releases the BSP step the checkpoint waited at.
    func takeCheckpoint(step: UInt64, final: Bool = false) {
        if let checkpoints, !final, !checkpoints.admitScheduled(step: step) {
            // Skipped: no snapshot taken, so memory holds at most the one being written; the step goes on.
            coordinator?.checkpointTaken(step: step)
            return
        }
        if let links, let checkpoints {
            // The joined servers' parts arrive over their links; the write waits for them on a thread of its own
            // while training goes on (each server snapshots at the same boundary: see `LinkEntry.snapshot`).
            if let own = store.snapshot() {
                let gather = links.startGather(own: own, step: step)
                let context = checkpointContext()
                let thread = Thread { [self] in
                    let deadline = MonotonicClock.deadline(afterSeconds: config.serverTimeoutSeconds)
                    guard let whole = links.finishGather(gather, deadline: deadline) else {
                        log.error(
                            "checkpoint-failed", ["step": step, "reason": "a joined server's part did not arrive"])
                        return
                    }
                    checkpoints.take(snapshot: whole, step: step, context: context, final: final)
                }
                thread.name = "psserver-gather"
                thread.start()
            }
        } else if let checkpoints, let snapshot = store.snapshot() {
            checkpoints.take(snapshot: snapshot, step: step, context: checkpointContext(), final: final)
        }
        coordinator?.checkpointTaken(step: step)
    }

    /// A snapshot of the whole model: the store's, or in a scale-out job the coordinator's own shards merged
    /// with every joined server's part (each taken at `step` in BSP), waiting at most `--server-timeout` for them.
    func wholeSnapshot(step: UInt64) -> ModelSnapshot? {
        guard let own = store.snapshot() else { return nil }
        guard let links else { return own }
        let gather = links.startGather(own: own, step: step)
        return links.finishGather(gather, deadline: MonotonicClock.deadline(afterSeconds: config.serverTimeoutSeconds))
    }

    /// SSP on several servers: tells joined servers when the live workers change (their staleness bound waits
    /// only for live ones). Checked every tick.
    private func publishMembership() {
        guard let links, config.mode == .ssp, let coordinator else { return }
        let live = coordinator.snapshot.membership.liveRanks
        let changed = publishedLiveRanks.withLock { published -> Bool in
            defer { published = live }
            return published != live
        }
        if changed { links.publish(.membership, ranks: live) }
    }

    /// The coordinator's watch over joined servers: one that has not called for `--server-timeout` (it died, or
    /// its network did) ends the job with exit code 1 and a reason naming it; the last checkpoint stays intact.
    private func checkJoinedServers() {
        guard let links, let placement = completedPlacement.withLock({ $0 }), let coordinator,
            !coordinator.snapshot.jobFinished
        else { return }
        let since = placementNanos.load(ordering: .relaxed)
        // A joined server syncs about once a second: a few seconds of silence pause the job (workers wait on it).
        let quiet = Set(links.silentServers(seconds: min(3, config.serverTimeoutSeconds), since: since))
        let newlyQuiet = silentServersLogged.withLock { logged -> [Int] in
            defer { logged = quiet }
            return quiet.subtracting(logged).sorted()
        }
        for index in newlyQuiet {
            log.warning(
                "server-silent",
                [
                    "index": index, "address": index < placement.servers.count ? placement.servers[index].address : "?",
                    "detail": "the job waits for it until --server-timeout \(config.serverTimeoutSeconds) s",
                ])
        }
        let silent = links.silentServers(seconds: config.serverTimeoutSeconds, since: since)
        guard let index = silent.first else { return }
        let address = index < placement.servers.count ? placement.servers[index].address : "?"
        let reason =
            "joined server \(index) (\(address)) has not been heard from for --server-timeout "
            + "\(config.serverTimeoutSeconds) s; the last checkpoint is intact: restart every server with --restore latest"
        log.error("server-lost", ["index": index, "address": address, "reason": reason])
        stop(exitCode: 1, reason: reason)
    }

    /// The job facts a checkpoint manifest records.
    func checkpointContext() -> CheckpointManager.JobContext {
        guard let coordinator else { return CheckpointManager.JobContext() }
        let (clocks, ranks) = coordinator.snapshot.workerClocksAndRanks
        return CheckpointManager.JobContext(
            mode: config.mode.rawValue, job: coordinator.job, optimizer: config.optimizer, workerClocks: clocks,
            workerRanks: ranks)
    }

    /// Ends the finished job (on its own thread): final checkpoint and weights, summary, exit unless told to keep
    /// running.
    private func finishJob() {
        guard let coordinator else { return }
        if let checkpoints, let snapshot = wholeSnapshot(step: coordinator.checkpointStep) {
            let step = coordinator.checkpointStep
            let context = checkpointContext()
            checkpoints.take(snapshot: snapshot, step: step, context: context)
            let final = checkpoints.take(snapshot: snapshot, step: step, context: context, final: true)
            if let error = checkpoints.waitFor(ticket: final.ticket, seconds: 600) {
                log.error("final-checkpoint-failed", ["error": error])
            }
        }
        let job = coordinator.snapshot
        log.info("job-finished", summary(job))
        // A job whose workers all left with an error did not do what it was asked: that is not a success.
        let failed = job.workersFinished == 0
        if failed {
            log.error(
                "job-failed",
                [
                    "reason": job.failureReason ?? "no worker finished its share (every worker left with an error)",
                    "steps": job.stepsDone,
                ])
        }
        if !config.keepRunning || failed {
            stop(exitCode: failed ? 1 : 0, reason: failed ? "job failed" : "job finished")
        }
    }

    /// The end-of-job summary line's fields.
    private func summary(_ job: JobCoordinator) -> KeyValuePairs<String, CustomStringConvertible> {
        let steps = job.stepsDone
        let end = job.finishedAtNanos ?? MonotonicClock.nanoseconds()
        let seconds = Double(end &- min(end, job.elapsedOrigin)) / 1e9
        let description = coordinator?.job
        // The samples the workers reported as processed: a job that went on without a worker (one that could not
        // load its data, say) did less than steps x batch x K.
        let samples = job.samplesProcessed
        return [
            "steps": steps, "epochs": description?.epochs ?? 0,
            // On the final weights when a worker evaluated them (SSP/async), else the last epoch's.
            "test_accuracy": job.reportedTestAccuracy.map { String(format: "%.4f", $0) } ?? "n/a",
            "wall_s": String(format: "%.2f", seconds),
            // The wait for the workers before the job started, which wall_s does not count.
            "waited_s": String(
                format: "%.2f", Double((job.jobStartedAtNanos ?? job.startNanos) &- job.startNanos) / 1e9),
            "samples": samples,
            "samples_per_s": String(format: "%.0f", Double(samples) / max(seconds, 1e-9)),
        ]
    }

    // MARK: Status

    /// The status document `psctl status` prints.
    func status() -> StatusDocument {
        var shards = (store.current?.shards ?? []).map { shard in
            StatusDocument.Shard(
                index: shard.index, version: shard.version, elements: shard.elementCount,
                pushes: shard.pushCount.load(ordering: .relaxed), pulls: shard.pullCount.load(ordering: .relaxed),
                staleDropped: shard.droppedStaleCount.load(ordering: .relaxed),
                staleScaled: shard.scaledStaleCount.load(ordering: .relaxed))
        }
        if shards.isEmpty {
            // Nothing registered yet: the shards --shards made are there, empty (a new user sees what it did).
            let placement = store.currentPlacement
            shards = placement.owned.map {
                StatusDocument.Shard(
                    index: $0, version: 0, elements: 0, pushes: 0, pulls: 0, staleDropped: 0, staleScaled: 0)
            }
        }
        var document = StatusDocument(
            mode: coordinator == nil ? "store" : config.mode.rawValue, optimizer: config.optimizer.kind.rawValue,
            uptimeSeconds: Double(MonotonicClock.nanoseconds() - startNanos) / 1e9,
            connections: connections.withLock { $0.count }, shardCount: config.shardCount, shards: shards,
            tensors: store.current?.tensorShapes ?? [], lastCheckpoint: checkpoints?.lastWritten,
            jobStatus: coordinator?.jobStatus(), checkpointsSkipped: checkpoints?.skippedCheckpoints)
        document.servers = serverList()
        let refused = (store.current?.shards ?? []).reduce(UInt64(0)) {
            $0 + $1.refusedNonFiniteCount.load(ordering: .relaxed)
        }
        document.nonFiniteRefused = refused > 0 ? refused : nil
        if !sparseTables.isEmpty {
            document.tables = sparseTables.map { table in
                StatusDocument.Table(
                    name: table.spec.name, rows: table.spec.rows, width: table.spec.width,
                    optimizer: table.optimizerConfig.kind.rawValue, rowsTouched: table.rowsTouched,
                    updatesApplied: table.version, pushes: table.counters.pushes.load(ordering: .relaxed),
                    pulls: table.counters.pulls.load(ordering: .relaxed))
            }
        }
        return document
    }

    /// Scale-out: the servers registered so far (coordinator) or the placement this server joined; nil with one
    /// server.
    private func serverList() -> [StatusDocument.Server]? {
        if let coordinator, config.servers > 1 {
            let registered = coordinator.snapshot.placement(coordinatorAddress: "").map {
                ServerPlacement.Server(address: $0.address, shards: $0.shards)
            }
            var list = StatusDocument.Server.list(ServerPlacement(servers: registered), selfIndex: 0)
            let own = store.current?.shards ?? []
            let stats = links?.stats ?? [:]
            let ages = links?.heartbeatAges() ?? [:]
            for index in list.indices {
                if index == 0 {
                    list[index].bytes = own.reduce(0) { $0 + 4 * $1.elementCount }
                    list[index].pushes = own.reduce(0) { $0 + $1.pushCount.load(ordering: .relaxed) }
                    list[index].pulls = own.reduce(0) { $0 + $1.pullCount.load(ordering: .relaxed) }
                } else if let reported = stats[index] {
                    list[index].bytes = reported.bytes
                    list[index].pushes = reported.pushes
                    list[index].pulls = reported.pulls
                }
                list[index].heartbeatAgeSeconds = ages[index]
            }
            return list
        }
        if config.join != nil {
            return joinedPlacement.withLock { $0 }.map { StatusDocument.Server.list($0.placement, selfIndex: $0.index) }
                ?? []
        }
        return nil
    }
}
