import Foundation
import PSCheckpoint
import PSPosix
import PSTransport
import PSWire

/// Operator requests (`psctl`): status, checkpoint, export and shutdown. File writes run on the checkpoint
/// writer's thread; this connection only waits for them, with a deadline.
struct ControlService {
    let server: ParameterServer

    func status(session: Session, requestID: UInt64) throws(TransportError) {
        try session.reply(.statusReply(StatusReply(json: server.status().json())), to: requestID)
    }

    /// Checkpoint, export and shutdown are for the control role (psctl) only: a worker or a server connection
    /// gets `unauthorized` and stays open. Returns whether the request may go on.
    func requireControlRole(
        _ request: String, session: Session, requestID: UInt64
    ) throws(TransportError) -> Bool {
        guard session.role != .control else { return true }
        let role = session.role.map { "\($0)" } ?? "none"
        try session.replyError(
            .unauthorized,
            "\(request) needs the control role (psctl); this connection said hello as \(role)", to: requestID)
        server.log.warning("request-refused", ["id": session.id, "request": request, "role": role])
        return false
    }

    func checkpoint(wait: Bool, session: Session, requestID: UInt64) throws(TransportError) {
        guard try requireControlRole("checkpoint", session: session, requestID: requestID) else { return }
        guard let checkpoints = server.checkpoints else {
            try session.replyError(
                .checkpointFailed, "the server was started without --checkpoint-dir", to: requestID)
            return
        }
        switch takeCheckpoint(checkpoints, wait: wait, seconds: server.config.waitTimeoutSeconds) {
        case .success(let written):
            try session.reply(
                .checkpointReply(CheckpointReply(step: written.step, durable: written.durable, path: written.path)),
                to: requestID)
        case .failure(let error):
            try session.replyError(.checkpointFailed, error.description, to: requestID)
        }
    }

    /// In BSP while the job runs, asks for a checkpoint at the next step boundary and waits for it to be taken;
    /// otherwise takes one now under all shard locks. With `wait`, also waits until it is durable.
    func takeCheckpoint(
        _ checkpoints: CheckpointManager, wait: Bool, seconds: Double
    ) -> Result<CheckpointManager.Written, CheckpointError> {
        let root = checkpoints.root
        let ticket: Int
        let step: UInt64
        if let coordinator = server.coordinator, server.config.mode == .bsp, coordinator.isRunning {
            let before = checkpoints.requestedWrites
            checkpoints.noteExplicitRequest()
            coordinator.requestCheckpoint()
            guard let taken = checkpoints.waitForCheckpoint(after: before, seconds: seconds) else {
                return .failure(
                    CheckpointError(file: root, message: "no step boundary was reached within the wait timeout"))
            }
            (ticket, step) = taken
        } else {
            let at = server.coordinator?.checkpointStep ?? 0
            guard let snapshot = server.wholeSnapshot(step: at) else {
                return .failure(
                    CheckpointError(
                        file: root,
                        message: server.store.current == nil
                            ? "nothing is registered yet" : "a joined server's part did not arrive in time"))
            }
            step = server.coordinator?.checkpointStep ?? (snapshot.shardVersions.max() ?? 0)
            ticket = checkpoints.take(snapshot: snapshot, step: step, context: server.checkpointContext()).ticket
            server.coordinator?.checkpointTaken(step: step)
        }
        let path = root + "/" + CheckpointWriter.directoryName(step: step)
        if wait, let error = checkpoints.waitFor(ticket: ticket, seconds: max(seconds, 1)) {
            return .failure(CheckpointError(file: path, message: error))
        }
        return .success(CheckpointManager.Written(step: step, path: path, durable: wait))
    }

    /// How long an export in a running BSP job may look for a snapshot taken at a step boundary.
    static let exportBoundarySeconds = 10.0

    /// Writes the weights as `.npy` files on a thread of its own and waits for it (bounded): a slow disk holds up
    /// this operator's request, never a lock or another connection.
    func export(path requested: String, session: Session, requestID: UInt64) throws(TransportError) {
        guard try requireControlRole("export", session: session, requestID: requestID) else { return }
        guard let root = server.config.resolvedExportDirectory else {
            try session.replyError(
                .invalidState, "export needs --export-dir or --checkpoint-dir on the server", to: requestID)
            return
        }
        let path: String
        switch ExportPath.resolve(requested, under: root) {
        case .success(let resolved):
            path = resolved
        case .failure(let refusal):
            try session.replyError(.invalidArgument, refusal.description, to: requestID)
            return
        }
        guard server.store.current != nil else {
            try session.replyError(.notRegistered, "nothing to export: no tensor is registered", to: requestID)
            return
        }
        // In a scale-out job the weights are gathered from every server; in BSP, at one step boundary.
        let taken = ModelSnapshot.atOneStep(
            requiresOneStep: server.config.mode == .bsp, seconds: Self.exportBoundarySeconds
        ) {
            server.wholeSnapshot(step: server.coordinator?.checkpointStep ?? 0)
        }
        let snapshot: ModelSnapshot
        switch taken {
        case .success(let consistent):
            snapshot = consistent
        case .failure(.missingPart):
            try session.replyError(
                .checkpointFailed, "export: a joined server's part did not arrive within --server-timeout",
                to: requestID)
            return
        case .failure(.noBoundary(let versions)):
            try session.replyError(
                .checkpointFailed,
                "export: no snapshot in \(Int(Self.exportBoundarySeconds)) s found every shard at the same step "
                    + "(last shard versions \(versions)); psctl checkpoint waits for a step boundary exactly",
                to: requestID)
            return
        }
        let sparse = server.sparseTables.map { $0.copy() }
        let outcome = BackgroundTask.run(name: "psserver-export", seconds: 600) { () -> String? in
            do {
                try CheckpointManager.exportWeights(snapshot: snapshot, to: path, sparse: sparse)
                return nil
            } catch let error as FileError {
                return "\(error)"
            } catch {
                return ExportPath.sentence(error)
            }
        }
        switch outcome {
        case .some(nil):
            server.log.info("exported", ["path": path])
            let step = snapshot.shardVersions.max() ?? 0
            try session.reply(.exportReply(ExportReply(step: step, path: path)), to: requestID)
        case .some(.some(let error)):
            try session.replyError(.checkpointFailed, "export to \(path) failed: \(error)", to: requestID)
        case .none:
            try session.replyError(
                .checkpointFailed, "export to \(path) did not finish within 600 s; it goes on in the background",
                to: requestID)
        }
    }

    /// Acknowledges, then stops the server (returns false: the connection closes) on another thread (this
    /// connection's thread is one it closes). A server running a job first takes a checkpoint at the next step
    /// boundary, as on SIGTERM, unless the request says `checkpoint: false` (`psctl shutdown --no-checkpoint`).
    func shutdown(_ request: ShutdownRequest, session: Session, requestID: UInt64) throws(TransportError) -> Bool {
        guard try requireControlRole("shutdown", session: session, requestID: requestID) else { return true }
        try session.reply(.shutdownAck, to: requestID)
        let server = self.server
        let thread = Thread {
            if request.checkpoint {
                server.stopForSignal("shutdown requested")
            } else {
                server.stop(exitCode: 0, reason: "shutdown requested (no checkpoint)")
            }
        }
        thread.name = "psserver-shutdown"
        thread.start()
        return false
    }
}

/// Where an `export` request may write: only under the operator's export directory.
enum ExportPath {
    /// A Foundation file error as a sentence naming the path and the system's reason, instead of
    /// "Error Domain=NSCocoaErrorDomain Code=512 …".
    static func sentence(_ error: any Error) -> String {
        let ns = error as NSError
        let path = (ns.userInfo[NSFilePathErrorKey] as? String).map { "'\($0)': " } ?? ""
        if let underlying = ns.userInfo[NSUnderlyingErrorKey] as? NSError, underlying.domain == NSPOSIXErrorDomain {
            return path + "\(Errno(rawValue: Int32(underlying.code)))"
        }
        return path + "cannot write there (Foundation error \(ns.code))"
    }

    /// Why a requested export path is refused; names the path and the export directory.
    struct Refusal: Error, CustomStringConvertible {
        let description: String
    }

    /// The directory to write for `requested`: a relative path is taken under `root`; an absolute one must lie
    /// under `root`; a `..` component, an empty path or a path that names `root` itself is refused.
    static func resolve(_ requested: String, under root: String) -> Result<String, Refusal> {
        let components = requested.split(separator: "/", omittingEmptySubsequences: true)
        guard !components.isEmpty, !components.contains("..") else {
            return .failure(
                Refusal(
                    description:
                        "export path '\(requested)' is refused: it must name a directory under the export directory "
                        + "\(root), without '..'"))
        }
        let rootComponents = root.split(separator: "/", omittingEmptySubsequences: true).filter { $0 != "." }
        let relative: [Substring]
        if requested.hasPrefix("/") {
            let given = components.filter { $0 != "." }
            guard root.hasPrefix("/"), given.count > rootComponents.count,
                Array(given.prefix(rootComponents.count)) == rootComponents
            else {
                return .failure(
                    Refusal(
                        description:
                            "export path '\(requested)' is outside the export directory \(root); give a path relative "
                            + "to it (the server's --export-dir)"))
            }
            relative = Array(given.dropFirst(rootComponents.count))
        } else {
            relative = components.filter { $0 != "." }
        }
        guard !relative.isEmpty else {
            return .failure(Refusal(description: "export path '\(requested)' names no directory under \(root)"))
        }
        return .success(root + "/" + relative.joined(separator: "/"))
    }
}

/// Why no snapshot of one step could be taken.
enum SnapshotAtOneStepError: Error, Equatable {
    /// The snapshot itself failed (a joined server's part did not arrive).
    case missingPart
    /// Every snapshot until the deadline mixed steps; the last one's shard versions.
    case noBoundary([UInt64])
}

extension ModelSnapshot {
    /// Takes snapshots with `take` until one has every shard at the same version, for at most `seconds`.
    ///
    /// In BSP, a released step is applied shard by shard (and server by server), so a snapshot taken while that
    /// goes on holds some shards after the step and some before it: its shard versions differ. Between steps,
    /// while the workers compute, every shard holds the same version, and a snapshot taken then is the model of
    /// one step. Without `requiresOneStep` (SSP, async) the first snapshot is returned as it is.
    static func atOneStep(
        requiresOneStep: Bool, seconds: Double, take: () -> ModelSnapshot?
    ) -> Result<ModelSnapshot, SnapshotAtOneStepError> {
        let deadline = MonotonicClock.deadline(afterSeconds: seconds)
        while true {
            guard let snapshot = take() else { return .failure(.missingPart) }
            if !requiresOneStep || Set(snapshot.shardVersions).count <= 1 { return .success(snapshot) }
            if MonotonicClock.nanoseconds() >= deadline { return .failure(.noBoundary(snapshot.shardVersions)) }
            Thread.sleep(forTimeInterval: 0.001)
        }
    }
}
