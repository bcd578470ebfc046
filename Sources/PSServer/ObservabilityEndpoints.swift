import Foundation
import PSCoordinator
import PSHTTP
import PSMetrics
import PSPosix
import PSWire

/// What `--metrics-port` serves: `/metrics` (Prometheus text), `/status.json` (the `psctl status --json`
/// document), `/history.json` (the loss per step and the test metrics per epoch, for the dashboard) and `/`
/// (the dashboard). Everything is built from atomics and copies taken under short locks; nothing here waits for
/// the data path.
struct ObservabilityEndpoints: Sendable {
    let server: ParameterServer

    func handle(_ request: HTTPRequest) -> HTTPResponse {
        switch request.path {
        case "/metrics":
            return .ok(PrometheusText.format(families()), contentType: PrometheusText.contentType)
        case "/status.json":
            return .ok(server.status().json() + "\n", contentType: "application/json")
        case "/history.json":
            let since = request.query["since"].flatMap { Int($0) } ?? 0
            return .ok(historyJSON(since: since), contentType: "application/json")
        case "/", "/index.html":
            return .ok(DashboardPage.html, contentType: "text/html; charset=utf-8")
        default:
            return .notFound(request.path)
        }
    }

    /// `{"first": N, "steps": [[step, loss, samples, elapsed_s, workers], …], "epochs": [[epoch, test_loss,
    /// test_accuracy, elapsed_s], …]}`: steps from index `since` of the whole run (`first` is the index of the
    /// oldest step still kept).
    func historyJSON(since: Int) -> String {
        let (first, steps, epochs) = server.serverMetrics.history.withLock { history in
            let start = max(0, since - history.droppedSteps)
            let steps = start < history.steps.count ? Array(history.steps[start...]) : []
            return (history.droppedSteps + start, steps, history.epochs)
        }
        func number(_ value: Double) -> String { value.isFinite ? "\(value)" : "null" }
        var out = "{\"first\":\(first),\"steps\":["
        out += steps.map { "[\($0.step),\(number($0.loss)),\($0.samples),\(number($0.elapsed)),\($0.workers)]" }
            .joined(separator: ",")
        out += "],\"epochs\":["
        out += epochs.map {
            "[\($0.epoch),\(number($0.testLoss)),\(number($0.testAccuracy)),\(number($0.elapsed))]"
        }.joined(separator: ",")
        return out + "]}\n"
    }

    // MARK: Metric families

    /// Every family `/metrics` exposes, in a stable order.
    func families() -> [MetricFamily] {
        typealias Label = MetricFamily.Label
        typealias Sample = MetricFamily.Sample
        let metrics = server.serverMetrics
        let shards = server.store.current?.shards ?? []
        var families: [MetricFamily] = []

        // Process.
        families.append(
            .gauge(
                "swiftps_process_uptime_seconds", help: "Seconds since the server started.",
                Double(MonotonicClock.nanoseconds() &- server.startNanos) / 1e9))
        families.append(
            .gauge(
                "swiftps_process_resident_memory_bytes", help: "Resident set size of the server process.",
                Double(ProcessStats.residentBytes() ?? 0)))
        families.append(
            .gauge(
                "swiftps_open_connections", help: "Open protocol connections (workers, clients, psctl).",
                Double(server.connections.withLock { $0.count })))
        families.append(
            .gauge(
                "swiftps_http_open_connections", help: "Open connections to this metrics endpoint.",
                Double(server.http?.openConnections ?? 0)))
        families.append(
            .gauge("swiftps_shards", help: "Shards the model is split into.", Double(server.config.shardCount)))

        // Data path, per shard and for the whole server.
        var pushes: [Sample] = []
        var pulls: [Sample] = []
        var pushBytes: [Sample] = []
        var pullBytes: [Sample] = []
        var versions: [Sample] = []
        var dropped: [Sample] = []
        var scaled: [Sample] = []
        var totals = (pushes: 0.0, pulls: 0.0, pushBytes: 0.0, pullBytes: 0.0, dropped: 0.0, scaled: 0.0)
        for shard in shards {
            let labels = [Label("shard", String(shard.index))]
            let bytes = Double(shard.elementCount * MemoryLayout<Float>.size)
            let push = Double(shard.pushCount.load(ordering: .relaxed))
            let pull = Double(shard.pullCount.load(ordering: .relaxed))
            let drop = Double(shard.droppedStaleCount.load(ordering: .relaxed))
            let scale = Double(shard.scaledStaleCount.load(ordering: .relaxed))
            pushes.append(Sample(labels: labels, value: push))
            pulls.append(Sample(labels: labels, value: pull))
            pushBytes.append(Sample(labels: labels, value: push * bytes))
            pullBytes.append(Sample(labels: labels, value: pull * bytes))
            versions.append(Sample(labels: labels, value: Double(shard.version)))
            dropped.append(Sample(labels: labels, value: drop))
            scaled.append(Sample(labels: labels, value: scale))
            totals.pushes += push
            totals.pulls += pull
            totals.pushBytes += push * bytes
            totals.pullBytes += pull * bytes
            totals.dropped += drop
            totals.scaled += scale
        }
        families += [
            MetricFamily(
                name: "swiftps_shard_pushes_total", help: "Gradient pushes received, per shard.", kind: .counter,
                samples: pushes),
            MetricFamily(
                name: "swiftps_shard_pulls_total", help: "Weight pulls answered, per shard.", kind: .counter,
                samples: pulls),
            MetricFamily(
                name: "swiftps_shard_push_bytes_total", help: "Gradient bytes received, per shard.", kind: .counter,
                samples: pushBytes),
            MetricFamily(
                name: "swiftps_shard_pull_bytes_total", help: "Weight bytes sent, per shard.", kind: .counter,
                samples: pullBytes),
            MetricFamily(
                name: "swiftps_shard_version", help: "Updates applied to the shard (its version).", kind: .gauge,
                samples: versions),
            MetricFamily(
                name: "swiftps_shard_stale_pushes_dropped_total",
                help: "Pushes dropped by the stale-gradient bound, per shard.", kind: .counter, samples: dropped),
            MetricFamily(
                name: "swiftps_shard_stale_pushes_scaled_total",
                help: "Pushes applied with a scaled-down learning rate by the stale-gradient bound, per shard.",
                kind: .counter, samples: scaled),
            .counter("swiftps_pushes_total", help: "Gradient pushes received by this server.", totals.pushes),
            .counter("swiftps_pulls_total", help: "Weight pulls answered by this server.", totals.pulls),
            .counter("swiftps_push_bytes_total", help: "Gradient bytes received by this server.", totals.pushBytes),
            .counter("swiftps_pull_bytes_total", help: "Weight bytes sent by this server.", totals.pullBytes),
            .counter(
                "swiftps_exchange_gradient_wire_bytes_total",
                help: "Gradient bytes of exchange requests as they travelled (after compression).",
                Double(metrics.exchangeGradientBytes.load(ordering: .relaxed))),
            .counter(
                "swiftps_exchange_weight_wire_bytes_total", help: "Weight bytes of exchange replies.",
                Double(metrics.exchangeWeightBytes.load(ordering: .relaxed))),
            .counter(
                "swiftps_bsp_shared_applies_total",
                help: "BSP shard updates applied by a connection thread waiting on the step.",
                Double(metrics.sharedApplies.load(ordering: .relaxed))),
            .counter(
                "swiftps_stale_pushes_dropped_total", help: "Pushes dropped by the stale-gradient bound.",
                totals.dropped),
            .counter(
                "swiftps_stale_pushes_scaled_total", help: "Pushes applied scaled by the stale-gradient bound.",
                totals.scaled),
            .counter(
                "swiftps_nonfinite_updates_refused_total",
                help: "Updates refused because they would have made a weight NaN or infinite.",
                Double(shards.reduce(UInt64(0)) { $0 + $1.refusedNonFiniteCount.load(ordering: .relaxed) })),
            .histogram(
                "swiftps_barrier_wait_seconds",
                help: "Time a worker's pull waited at the gate (BSP: the barrier; SSP: the staleness bound).",
                metrics.barrierWait.withLock { $0 }),
            .histogram(
                "swiftps_apply_seconds", help: "Time to apply one update to one shard.",
                metrics.applyTime.withLock { $0 }),
        ]

        if !server.sparseTables.isEmpty {
            families += sparseFamilies()
        }

        // Checkpoints.
        let checkpointTime = metrics.checkpointTime.withLock { $0 }
        families += [
            .counter(
                "swiftps_checkpoints_total", help: "Checkpoints written and made durable.",
                Double(checkpointTime.count)),
            .counter(
                "swiftps_checkpoint_failures_total", help: "Checkpoint writes that failed.",
                Double(metrics.checkpointFailures.load(ordering: .relaxed))),
            .counter(
                "swiftps_checkpoint_bytes_total", help: "Bytes of tensor data written to checkpoints.",
                Double(metrics.checkpointBytes.load(ordering: .relaxed))),
            .histogram(
                "swiftps_checkpoint_duration_seconds", help: "Time to write one checkpoint durably.", checkpointTime),
        ]

        if let coordinator = server.coordinator {
            families += jobFamilies(coordinator.snapshot, job: coordinator.job)
        }
        return families
    }

    /// The row-sparse tables' families, one sample per table (label `table`, the table's name).
    private func sparseFamilies() -> [MetricFamily] {
        typealias Sample = MetricFamily.Sample
        let tables = server.sparseTables
        func perTable(_ value: (RowSparseTable) -> Double) -> [Sample] {
            tables.map { Sample(labels: [MetricFamily.Label("table", $0.spec.name)], value: value($0)) }
        }
        func counter(_ name: String, _ help: String, _ atomic: (RowSparseTableCounters) -> UInt64) -> MetricFamily {
            MetricFamily(
                name: name, help: help, kind: .counter, samples: perTable { Double(atomic($0.counters)) })
        }
        return [
            counter("swiftps_sparse_pulls_total", "Row-sparse pulls answered, per table.") {
                $0.pulls.load(ordering: .relaxed)
            },
            counter("swiftps_sparse_pushes_total", "Row-sparse pushes accepted, per table.") {
                $0.pushes.load(ordering: .relaxed)
            },
            counter("swiftps_sparse_rows_pulled_total", "Rows sent by row-sparse pulls, per table.") {
                $0.rowsPulled.load(ordering: .relaxed)
            },
            counter("swiftps_sparse_rows_pushed_total", "Rows received by accepted row-sparse pushes, per table.") {
                $0.rowsPushed.load(ordering: .relaxed)
            },
            counter(
                "swiftps_sparse_pull_wire_bytes_total", "Payload bytes of sparsePullReply frames sent, per table."
            ) { $0.pullBytes.load(ordering: .relaxed) },
            counter(
                "swiftps_sparse_push_wire_bytes_total", "Payload bytes of sparsePush frames accepted, per table."
            ) { $0.pushBytes.load(ordering: .relaxed) },
            counter(
                "swiftps_sparse_requests_refused_total",
                "Row-sparse requests refused for bad row ids, a wrong value count or non-finite values, per table."
            ) { $0.refused.load(ordering: .relaxed) },
            .counter(
                "swiftps_sparse_unknown_table_requests_total", help: "Row-sparse requests that named no table.",
                Double(server.serverMetrics.sparseUnknownTable.load(ordering: .relaxed))),
            MetricFamily(
                name: "swiftps_sparse_table_elements", help: "Rows x width of each row-sparse table.", kind: .gauge,
                samples: perTable { Double($0.spec.rows * $0.spec.width) }),
            MetricFamily(
                name: "swiftps_sparse_table_rows_touched",
                help: "Rows of each row-sparse table at least one update touched (since start or restore).",
                kind: .gauge, samples: perTable { Double($0.rowsTouched) }),
            MetricFamily(
                name: "swiftps_sparse_table_version",
                help: "Updates applied to each row-sparse table (async: one per push; BSP: one per step).",
                kind: .gauge, samples: perTable { Double($0.version) }),
        ]
    }

    private func jobFamilies(_ instance: JobCoordinator, job: JobDescription) -> [MetricFamily] {
        typealias Label = MetricFamily.Label
        typealias Sample = MetricFamily.Sample
        let history = server.serverMetrics.history.withLock { ($0.samples, $0.lastLoss) }
        let workers = instance.membership.workers
        var families: [MetricFamily] = []
        let phases: [JobPhase] = [.waiting, .running, .finished, .stopping]
        families.append(
            MetricFamily(
                name: "swiftps_job_phase", help: "1 for the job's current phase, 0 for the others.", kind: .gauge,
                samples: phases.map {
                    Sample(labels: [Label("phase", $0.rawValue)], value: instance.phase == $0 ? 1 : 0)
                }))
        families.append(
            MetricFamily(
                name: "swiftps_job_info", help: "The job's settings as labels (value 1).", kind: .gauge,
                samples: [
                    Sample(
                        labels: [
                            Label("mode", job.mode), Label("model", job.model), Label("data", job.data),
                            Label("workers", String(job.workers)), Label("batch", String(job.batchPerWorker)),
                        ], value: 1)
                ]))
        families += [
            .gauge("swiftps_job_total_steps", help: "Steps the job will run.", Double(job.totalSteps)),
            .counter(
                "swiftps_applied_steps_total", help: "Steps completed (BSP: released by the barrier).",
                Double(instance.releasedSteps)),
            .counter(
                "swiftps_samples_total", help: "Training samples over all recorded steps (rate() gives samples/s).",
                Double(history.0)),
            .gauge("swiftps_training_loss", help: "Mean training loss of the last recorded step.", history.1 ?? .nan),
        ]
        let states: [WorkerState] = [.live, .dead, .left]
        families.append(
            MetricFamily(
                name: "swiftps_workers", help: "Workers by state.", kind: .gauge,
                samples: states.map { state in
                    Sample(
                        labels: [Label("state", state.rawValue)],
                        value: Double(workers.filter { $0.state == state }.count))
                }))
        families.append(
            .counter(
                "swiftps_worker_rejoins_total", help: "Times a worker rejoined under its name.",
                Double(workers.reduce(0) { $0 + $1.rejoins })))
        families.append(
            MetricFamily(
                name: "swiftps_worker_clock", help: "Steps each worker has completed (its clock).", kind: .gauge,
                samples: workers.map {
                    Sample(labels: [Label("worker", $0.name), Label("rank", String($0.rank))], value: Double($0.clock))
                }))
        families.append(
            .gauge(
                "swiftps_worker_clock_spread", help: "Largest minus smallest live worker clock (SSP spread).",
                Double(clockSpread(instance.membership))))
        if let epoch = instance.lastEpoch {
            families += [
                .gauge("swiftps_epoch", help: "The last evaluated epoch (counted from 1).", Double(epoch.epoch)),
                .gauge("swiftps_test_loss", help: "Test loss after the last evaluated epoch.", epoch.testLoss),
                .gauge(
                    "swiftps_test_accuracy_ratio", help: "Test accuracy (0 to 1) after the last evaluated epoch.",
                    epoch.testAccuracy),
            ]
        }
        return families
    }

    private func clockSpread(_ membership: Membership) -> UInt64 {
        guard let low = membership.minLiveClock else { return 0 }
        return max(membership.maxClock, low) - low
    }
}
