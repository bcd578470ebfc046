import Foundation
import PSClient
import PSData
import PSLog
import PSModel
import PSPosix
import PSWire

/// The worker loop of a row-sparse model (`--model sparse-lr`, `--model sparse-mlp:E,H`).
///
/// Each step: the rows of this worker's batch (`DataOrder`, as for dense models) are gathered in CSR form; the
/// table rows they touch (sorted, unique feature ids) are pulled with `sparsePull`; the model computes the loss
/// and the gradients of those rows and of the dense parameters; the rows' gradients go out with `sparsePush` *before*
/// the dense gradient (so that when the BSP barrier applies the step, every rank's rows are held), then the dense
/// gradient and the clock travel as for a dense model (`exchange`, or push + clock in async).
///
/// A lost connection is retried as in the dense loop (for `--reconnect-timeout`): the worker rejoins under its
/// name and resumes at the step the coordinator gives it (after a server restore: the checkpoint's step).
extension Worker {
    /// Whether the server's job trains a row-sparse model (a control connection, as `probeModel` makes).
    func probeJobIsSparse() throws(WorkerError) -> Bool {
        let probe = try connect(role: .control)
        defer { probe.close() }
        return probe.config.job.map { SparseModels.isSparse($0.model) } ?? false
    }

    func runSparse() throws(WorkerError) {
        var connected = try connect()
        let firstWelcome = try checkWelcome(connected)
        guard let job = connected.config.job, let model = SparseModels.model(for: job) else {
            leave(connected, reason: .error)
            throw WorkerError("the server's job is not a row-sparse job this worker can train")
        }
        let train: SparseDataset
        var test: SparseDataset?
        do {
            let source = try SparseDataSource(parsing: options.dataOverride ?? job.data)
            if let path = options.testOverride ?? job.test {
                // --test replaces the data's own test split, which is then not loaded at all.
                train = try source.loadTrain(hashFeatures: job.hashFeatures)
                test = try SparseDataSource(parsing: path).loadTrain(hashFeatures: job.hashFeatures)
            } else {
                (train, test) = try source.loadSplits(hashFeatures: job.hashFeatures)
            }
        } catch {
            leave(connected, reason: .error)
            throw WorkerError("cannot load the training data: \(error)")
        }
        guard train.rowCount == job.trainRows, train.featureCount == job.featureCount else {
            leave(connected, reason: .error)
            throw WorkerError(
                "refused: this worker's data (\(train.name)) has \(train.rowCount) rows x \(train.featureCount) "
                    + "features, but the job expects \(job.trainRows) rows x \(job.featureCount) features")
        }
        let expected = model.denseParameters.map { TensorShape(name: $0.name, shape: $0.shape) }
        if let difference = TensorShape.firstDifference(expected: connected.config.tensors, actual: expected) {
            leave(connected, reason: .error)
            throw WorkerError("refused: the server's tensors do not match \(job.model): \(difference)")
        }
        if let test, test.featureCount > train.featureCount {
            leave(connected, reason: .error)
            throw WorkerError("the test split uses \(test.featureCount) features, the job \(train.featureCount)")
        }
        let layout = ShardLayout(
            tensorElementCounts: model.denseParameters.map(\.elementCount), shardCount: connected.config.shardCount)
        let order = DataOrder(
            rowCount: train.rowCount, workerCount: job.workers, batchPerWorker: job.batchPerWorker, seed: job.seed)
        var rank = connected.rank ?? 0
        var servers = try openServers(connected, layout: layout)
        defer { servers.closeJoined() }
        let heartbeat = HeartbeatSender(intervalMillis: connected.config.heartbeatIntervalMillis)
        heartbeat.start(client: connected)
        defer { heartbeat.stop() }

        var dense = [Float](repeating: 0, count: layout.totalElements)
        var versions = [UInt64](repeating: 0, count: layout.shardCount)
        var rowGradient: [Float] = []
        var denseGradient: [Float] = []
        var step = Int(connected.config.startStep)
        let totalSteps = options.debugMaxSteps.map { min($0, job.totalSteps) } ?? job.totalSteps
        let started = Date()
        var samplesDone = 0
        var epochLoss = (sum: 0.0, steps: 0)
        // Bytes of sparse pulls and the steps they served, over every connection (reconnects included).
        var (pulledBytes, pulledSteps) = (0, 0)
        var havePulled = false
        log.info(
            "training",
            ["rank": rank, "start_step": step, "total_steps": totalSteps, "data": train.name, "model": job.model])
        var finished = false
        while step < totalSteps, !finished {
            do throws(ClientError) {
                heartbeat.clock = UInt64(step)
                if !havePulled {
                    try pullAll(servers, layout: layout, clock: UInt64(step), into: &dense, versions: &versions)
                    havePulled = true
                }
                let examples = train.batch(rows: order.rows(step: step, rank: rank))
                let touched = examples.touchedRows
                let rows = try ParameterClient.sparseValues(
                    try connected.sparsePull(table: 0, clock: UInt64(step), ids: touched).wait())
                pulledBytes += 4 * touched.count + 4 * rows.count
                pulledSteps += 1
                let loss = model.lossAndGradient(
                    examples, touched: touched, rows: rows, dense: dense, rowGradient: &rowGradient,
                    denseGradient: &denseGradient)
                if options.debugStepDelayMillis > 0 {
                    Thread.sleep(forTimeInterval: Double(options.debugStepDelayMillis) / 1000)
                }
                // The rows first: the dense push below may complete the BSP step, which applies them too.
                _ = try connected.sparsePush(table: 0, clock: UInt64(step), ids: touched, values: rowGradient).wait()
                havePulled = false
                var state = JobState.running
                if job.mode != "async" {
                    do {
                        state = try exchange(
                            servers, layout: layout, rank: rank, clock: UInt64(step), loss: loss,
                            samples: job.batchPerWorker,
                            gradient: denseGradient, into: &dense, versions: &versions)
                        havePulled = true
                    } catch .remote(.timeout, let message) {
                        // The server took the gradient and the clock; the weights are pulled next step.
                        log.info("waiting", ["reason": message])
                    }
                } else {
                    try pushAll(
                        servers, layout: layout, clock: UInt64(step), gradient: denseGradient, versions: versions)
                    state = try sendClock(
                        connected, rank: rank, clock: UInt64(step + 1), loss: loss, samples: job.batchPerWorker)
                }
                step += 1
                samplesDone += job.batchPerWorker
                epochLoss = (epochLoss.sum + loss, epochLoss.steps + 1)
                if state == .finished {
                    finished = true
                    continue
                }
                if step % job.stepsPerEpoch == 0 || step == totalSteps {
                    let epoch = (step - 1) / job.stepsPerEpoch
                    var accuracy: Double? = nil
                    if let test {
                        if !havePulled {
                            try pullAll(servers, layout: layout, clock: UInt64(step), into: &dense, versions: &versions)
                            havePulled = true
                        }
                        let result = try evaluateSparse(
                            model, on: test, dense: dense, client: connected, clock: UInt64(step))
                        accuracy = result.accuracy
                        _ = try connected.request(
                            .metrics(
                                EpochMetrics(
                                    epoch: UInt32(epoch), testLoss: result.loss, testAccuracy: result.accuracy ?? 0,
                                    samples: UInt64(step * job.batchPerWorker * job.workers)))
                        ).wait()
                    }
                    report(
                        epoch: epoch, of: job.epochs, step: step, total: totalSteps,
                        loss: epochLoss.sum / Double(max(epochLoss.steps, 1)), accuracy: accuracy, started: started,
                        samples: samplesDone, batch: job.batchPerWorker)
                    epochLoss = (0, 0)
                }
            } catch .remote(.timeout, let message) {
                log.info("waiting", ["reason": message])
                havePulled = false
            } catch .remote(let code, let message) where code != .invalidState && code != .shuttingDown {
                // The request itself was refused (bad rows, a shape mismatch): retrying cannot help.
                heartbeat.stop()
                leave(connected, reason: .error)
                throw WorkerError("the server refused step \(step): \(message)")
            } catch {
                // The connection is gone (or the coordinator no longer counts this worker): reconnect under the
                // same name and resume where the coordinator says (a restored checkpoint's step, say).
                connected = try reconnect(
                    after: error, at: step, closing: connected, servers: servers, heartbeat: heartbeat,
                    firstWelcome: firstWelcome)
                havePulled = false
                rank = connected.rank ?? rank
                step = Int(connected.config.startStep)
                epochLoss = (0, 0)
                servers = try openServers(connected, layout: layout)
                log.info("resumed", ["rank": rank, "step": step])
            }
        }
        heartbeat.stop()
        leave(connected, reason: .finished)
        let seconds = Date().timeIntervalSince(started)
        log.info(
            "finished",
            [
                "steps": step, "seconds": String(format: "%.2f", seconds),
                "samples_per_s": String(format: "%.0f", Double(samplesDone) / max(seconds, 1e-9)),
                "sparse_pull_bytes_per_step": pulledBytes / max(pulledSteps, 1),
            ])
    }

    /// The test set's loss and accuracy: pulls the table rows the test set touches (at `clock`) and evaluates.
    func evaluateSparse(
        _ model: any RowSparseModel, on test: SparseDataset, dense: [Float], client: ParameterClient,
        clock: UInt64
    ) throws(ClientError) -> Evaluation {
        let examples = SparseExamples(
            rowStarts: test.rowStarts, featureIds: test.featureIds, values: test.values, labels: test.labels)
        let touched = examples.touchedRows
        let rows = try ParameterClient.sparseValues(try client.sparsePull(table: 0, clock: clock, ids: touched).wait())
        return model.evaluate(examples, touched: touched, rows: rows, dense: dense)
    }
}
