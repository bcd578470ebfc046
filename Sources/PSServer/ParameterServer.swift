import Foundation
import PSCheckpoint
import PSCoordinator
import PSLog
import PSMath
import PSPosix
import PSTransport
import PSWire
import Synchronization

/// A running `psserver`: the shard store, the coordinator (when a job is configured), the listener and one
/// `Thread` per connection with blocking I/O.
public final class ParameterServer: Sendable {
    public let config: ServerConfig
    public let store: ShardStore
    let coordinator: Coordinator?
    let checkpoints: CheckpointManager?
    let log: Logger
    let metrics: MetricsFile?
    let listener: Socket
    /// The port actually bound (useful with port 0).
    public let port: UInt16
    let startNanos = MonotonicClock.nanoseconds()
    let connections = Mutex<[UInt64: FramedConnection]>([:])
    let nextConnectionID = Atomic<UInt64>(1)
    let stopped = Atomic<Bool>(false)
    let activeHandlers = Atomic<Int>(0)
    let exitCode = Mutex<Int32?>(nil)
    let finishedSignal = NSCondition()

    /// Binds the listening socket, builds the store (registering the job's model or restoring a checkpoint).
    public init(config: ServerConfig, log: Logger = Logger(component: "psserver")) throws {
        try config.validate()
        self.config = config
        self.log = log
        let metrics = try config.metricsPath.map { try MetricsFile(path: $0) }
        self.metrics = metrics
        let store = ShardStore(
            shardCount: config.shardCount, optimizer: config.optimizer, workerSlots: config.job?.workers ?? 1)
        self.store = store
        let checkpoints = config.checkpointDirectory.map {
            CheckpointManager(
                root: $0, keep: config.keepCheckpoints, slotNames: config.optimizer.stateSlotNames, log: log)
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
        coordinator = config.job.map {
            Coordinator(
                config: config, job: $0, completedSteps: completedSteps, restoredClocks: restoredClocks, log: log,
                metrics: metrics)
        }
        coordinator?.reserveRestoredRanks(restoredRanks)
        listener = try Socket.listen(host: config.host, port: config.port)
        port = try listener.localPort()
    }

    // MARK: Lifecycle

    /// Starts the accept loop and the coordinator's ticker on their own threads and returns.
    public func start() {
        log.info("listening", ["address": "\(config.host):\(port)", "shards": config.shardCount])
        let acceptThread = Thread { [self] in acceptLoop() }
        acceptThread.name = "psserver-accept"
        acceptThread.start()
        if coordinator != nil {
            let ticker = Thread { [self] in tickLoop() }
            ticker.name = "psserver-ticker"
            ticker.start()
        }
    }

    /// Blocks until the server stops (shutdown request, signal, or the job finished); returns the exit code.
    public func waitUntilStopped() -> Int32 {
        finishedSignal.lock()
        defer { finishedSignal.unlock() }
        while true {
            if let code = exitCode.withLock({ $0 }) { return code }
            finishedSignal.wait()
        }
    }

    /// Stops accepting, lets in-flight requests finish (bounded), closes connections and records `code`.
    public func stop(exitCode code: Int32 = 0, reason: String) {
        guard !stopped.exchange(true, ordering: .acquiringAndReleasing) else { return }
        log.info("stopping", ["reason": reason])
        coordinator?.stop()
        listener.shutdown()  // wakes the accept thread, which releases the descriptor
        // Give handlers in the middle of a request a moment to finish it before their sockets close.
        let deadline = MonotonicClock.nanoseconds() + 2_000_000_000
        let open = connections.withLock { Array($0.values) }
        for connection in open { connection.socket.shutdownReceive() }
        while activeHandlers.load(ordering: .acquiring) > 0, MonotonicClock.nanoseconds() < deadline {
            Thread.sleep(forTimeInterval: 0.01)
        }
        // Handler threads release their own descriptors when they see end-of-stream.
        for connection in connections.withLock({ Array($0.values) }) { connection.shutdown() }
        checkpoints?.waitForWrites()
        finishedSignal.lock()
        exitCode.withLock { if $0 == nil { $0 = code } }
        finishedSignal.broadcast()
        finishedSignal.unlock()
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
            let connection = FramedConnection(
                socket: accepted.socket, peer: accepted.peer, maxPayloadBytes: config.maxFrameBytes)
            connections.withLock { $0[id] = connection }
            let thread = Thread { [self] in
                let handler = ConnectionHandler(server: self, connection: connection, id: id)
                handler.run()
                connections.withLock { _ = $0.removeValue(forKey: id) }
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
            finishJobIfDone()
            if let checkpoints, config.mode != .bsp, coordinator.asyncCheckpointDue() {
                checkpoints.take(snapshot: store.snapshot(), coordinator: coordinator, waitDurable: false)
            }
        }
    }

    /// Carries out barrier directives: applies each listed step on its shard, then handles step completion.
    func carryOut(_ directives: [BarrierDirective]) {
        guard let coordinator, let model = store.current else { return }
        for directive in directives {
            switch directive {
            case .apply(let shard, let step, let ranks):
                let ok = model.shards[shard].state.withLock { $0.applyMean(step: step, ranks: ranks) }
                if !ok {
                    log.error("bsp-apply-missing-gradient", ["shard": shard, "step": step, "ranks": "\(ranks)"])
                }
                if let completed = coordinator.applied(shard: shard, step: step) {
                    completeStep(completed)
                }
            case .stepCompleted(let step):
                completeStep(step)
            }
        }
    }

    /// Step `step` is applied on every shard: take a checkpoint if one is due, then release the next step.
    func completeStep(_ step: UInt64) {
        guard let coordinator else { return }
        if let checkpoints, coordinator.checkpointDue(afterStep: step) {
            checkpoints.take(snapshot: store.snapshot(), coordinator: coordinator, waitDurable: false)
        }
        coordinator.release(afterStep: step)
    }

    /// Ends the job once every worker finished: final weights, final checkpoint, summary, exit (unless told to keep running).
    func finishJobIfDone() {
        guard let coordinator, coordinator.checkJobFinished() else { return }
        guard coordinator.markFinalized() else { return }
        let snapshot = store.snapshot()
        if let checkpoints, let snapshot {
            checkpoints.writeFinal(snapshot: snapshot, coordinator: coordinator)
        }
        let summary = coordinator.summary()
        log.info("job-finished", summary)
        if !config.keepRunning {
            let thread = Thread { [self] in stop(exitCode: 0, reason: "job finished") }
            thread.start()
        }
    }

    // MARK: Status

    /// The status document `psctl status` prints (JSON).
    func statusJSON() -> String {
        var shards: [MetricsValue] = []
        if let model = store.current {
            for shard in model.shards {
                shards.append(
                    .object([
                        "index": .int(shard.index), "version": .int(Int(shard.version)),
                        "elements": .int(shard.elementCount), "bytes": .int(shard.elementCount * 4),
                        "pushes": .int(Int(shard.pushCount.load(ordering: .relaxed))),
                        "pulls": .int(Int(shard.pullCount.load(ordering: .relaxed))),
                        "stale_dropped": .int(Int(shard.droppedStaleCount.load(ordering: .relaxed))),
                        "stale_scaled": .int(Int(shard.scaledStaleCount.load(ordering: .relaxed))),
                    ]))
            }
        }
        let shardList = store.current?.shards ?? []
        var fields: [String: MetricsValue] = [
            "stale_dropped": .int(shardList.reduce(0) { $0 + Int($1.droppedStaleCount.load(ordering: .relaxed)) }),
            "stale_scaled": .int(shardList.reduce(0) { $0 + Int($1.scaledStaleCount.load(ordering: .relaxed)) }),
            "uptime_s": .double(Double(MonotonicClock.nanoseconds() - startNanos) / 1e9),
            "connections": .int(connections.withLock { $0.count }),
            "shard_count": .int(config.shardCount),
            "shards": .array(shards),
            "mode": .string(coordinator == nil ? "store" : config.mode.rawValue),
            "optimizer": .string(config.optimizer.kind.rawValue),
            "tensors": .array(
                (store.current?.tensors ?? []).map {
                    .object(["name": .string($0.name), "shape": .array($0.shape.map { .int($0) })])
                }),
        ]
        if let coordinator {
            for (key, value) in coordinator.statusFields() { fields[key] = value }
        }
        if let checkpoints {
            fields["last_checkpoint"] = checkpoints.lastWritten.map { .string($0) } ?? .null
        }
        return MetricsValue.object(fields).json
    }
}
