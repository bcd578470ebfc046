import Foundation
import PSCLI
import PSCoordinator
import PSData
import PSLog
import PSMath
import PSPosix
import PSSecurity
import PSServer
import PSTraining
import PSWire

/// `psserver`: holds the model's shards, serves pushes and pulls, and coordinates the training job.
@main
struct PSServerCommand {
    static let command = Command(
        name: "psserver",
        abstract: "Hold a model's weights in shards and coordinate data-parallel training.",
        discussion: """
            With --model the server runs a training job: it registers the model, waits for --workers workers, \
            and coordinates them in --mode bsp (default), ssp or async until the job ends, then writes the final \
            weights (as .npy files under <checkpoint-dir>/final) and exits 0. Without --model it is a plain \
            parameter store whose clients register their own tensors (async updates).
            """,
        options: [
            Option("host", value: "host", help: "Address to listen on.", default: "0.0.0.0"),
            Option("port", short: "p", value: "port", help: "TCP port (0 picks a free one).", default: "7000"),
            Option("shards", value: "n", help: "Number of shards the model is split into.", default: "4"),
            Option(
                "max-frame-bytes", value: "bytes", help: "Largest accepted frame payload.",
                default: "\(512 << 20)"),
            Option(
                "max-model-bytes", value: "bytes",
                help: "Most server memory a model may take (weights, optimizer state, buffers); default half the RAM."),
            Option("token", value: "token", help: "Shared secret clients must present.", environment: "PS_TOKEN"),
            Option("tls-cert", value: "pem", help: "Serve TLS with this certificate chain (needs --tls-key)."),
            Option("tls-key", value: "pem", help: "Private key of --tls-cert."),
            Option(
                "tls-ca", value: "pem",
                help: "Mutual TLS: clients must present a certificate from this CA (also checks --join's coordinator)."),
            Option(
                "allow-nonfinite",
                help: "Accept NaN/Inf gradients and updates that make weights NaN/Inf instead of refusing them."),
            Option("workers", value: "k", help: "Workers the job waits for before step 0.", default: "1"),
            Option(
                "servers", value: "m",
                help: "Servers the job waits for before step 0, this one included (scale-out in progress: see README).",
                default: "1"),
            Option(
                "join", value: "host:port",
                help: "Register with this coordinator (scale-out in progress: the shards are not split yet)."),
            Option(
                "advertise", value: "host:port",
                help: "Address workers use to reach this joined server (default: as the coordinator sees it)."),
            Option(
                "model", value: "model",
                help:
                    "softmax, linear, mlp:128, mlp:256,128, cnn:32,64,128, sparse-lr, sparse-mlp:16,64, or external "
                    + "(the first worker's own model) (enables the job)."),
            Option(
                "data", value: "data",
                help: "digits, fashion-mnist, synthetic:ROWS,FEATURES,CLASSES, synthetic-sparse:ROWS,FEATURES,NNZ "
                    + "(sparse models) or a file.",
                default: "digits"),
            Option("test", value: "path", help: "Test set (default: the data set's own test split)."),
            Option(
                "features", value: "d",
                help: "Row-sparse models: the feature count of a LIBSVM file (default: its largest index)."),
            Option(
                "hash-features", value: "d",
                help: "Row-sparse models: hash every feature id into a table of d rows (1...2^31; splitmix64, "
                    + "see README), whatever the ids."),
            Option("label-column", value: "first|last", help: "Where CSV files keep the label.", default: "first"),
            Option("batch", value: "b", help: "Rows per worker per step.", default: "64"),
            Option("epochs", value: "e", help: "Passes over the training data.", default: "10"),
            Option("seed", value: "seed", help: "Seed for the data order and the initialisation.", default: "0"),
            Option(
                "optimizer", value: "name",
                help: "sgd, momentum, adam, adagrad, or ftrl (row-sparse models: FTRL-Proximal on the table, "
                    + "AdaGrad on the dense part).", default: "sgd"),
            Option("l1", value: "lambda1", help: "FTRL's L1 strength (--optimizer ftrl).", default: "0"),
            Option("l2", value: "lambda2", help: "FTRL's L2 strength (--optimizer ftrl).", default: "0"),
            Option("ftrl-beta", value: "beta", help: "FTRL's beta (--optimizer ftrl).", default: "1"),
            Option("lr", value: "rate", help: "Learning rate.", default: "0.1"),
            Option("momentum", value: "mu", help: "Momentum coefficient.", default: "0.9"),
            Option("nesterov", help: "Use Nesterov momentum."),
            Option("weight-decay", value: "lambda", help: "L2 weight decay added to the gradient.", default: "0"),
            Option("clip-value", value: "c", help: "Clip every gradient element to [-c, c]."),
            Option("beta1", value: "b1", help: "Adam's first-moment decay.", default: "0.9"),
            Option("beta2", value: "b2", help: "Adam's second-moment decay.", default: "0.999"),
            Option(
                "epsilon", value: "eps", help: "Adam/AdaGrad denominator epsilon (default: adam 1e-8, adagrad 1e-10)."),
            Option("mode", value: "bsp|ssp|async", help: "Consistency mode.", default: "bsp"),
            Option("staleness", value: "s", help: "SSP bound: how many clocks ahead a worker may run.", default: "0"),
            Option("max-gradient-staleness", value: "k", help: "Drop (or scale) pushes staler than k versions."),
            Option("stale-policy", value: "drop|scale", help: "What to do with a too-stale push.", default: "drop"),
            Option(
                "compression", value: "none|fp16|bf16|topk:f",
                help: "How workers compress exchange gradients (top-k keeps the residual on the worker).",
                default: "none"),
            Option(
                "compress-pulls",
                help: "Exchange replies carry the weights as fp16/bf16 too (needs --compression fp16 or bf16)."),
            Option(
                "worker-timeout", value: "seconds", help: "Declare a silent worker dead after this long.",
                default: "10"),
            Option(
                "wait-timeout", value: "seconds", help: "Longest single server-side wait before a retry is asked.",
                default: "30"),
            Option(
                "server-timeout", value: "seconds",
                help: "Scale-out: end the job when a joined server is silent this long (and how long a joined "
                    + "server looks for a lost coordinator).", default: "30"),
            Option(
                "handshake-timeout", value: "seconds", help: "Close a connection that has not sent hello by then.",
                default: "10"),
            Option(
                "frame-timeout", value: "seconds", help: "Close a connection whose started frame is not done by then.",
                default: "60"),
            Option(
                "send-timeout", value: "seconds", help: "Close a connection that does not read replies for this long.",
                default: "60"),
            Option(
                "stop-timeout", value: "seconds",
                help: "On SIGTERM/SIGINT, wait this long for a checkpoint at the next step, then exit 0.",
                default: "30"),
            Option("max-connections", value: "n", help: "Most open connections; more are refused.", default: "1024"),
            Option("checkpoint-dir", value: "dir", help: "Directory for checkpoints and the final weights."),
            Option(
                "export-dir", value: "dir",
                help: "The only directory psctl export writes under (default <checkpoint-dir>/exports)."),
            Option("checkpoint-every-steps", value: "n", help: "Checkpoint every n completed steps."),
            Option("checkpoint-every-seconds", value: "s", help: "Checkpoint every s seconds."),
            Option("keep-checkpoints", value: "n", help: "Keep only the newest n checkpoints."),
            Option("restore", value: "dir|latest", help: "Resume from a checkpoint directory (or the latest one)."),
            Option("metrics-out", value: "file", help: "Write step and epoch records as JSON lines."),
            Option("metrics-port", value: "port", help: "Serve /metrics, /status.json and a dashboard over HTTP."),
            Option("metrics-host", value: "host", help: "Address for --metrics-port (default: --host)."),
            Option("keep-running", help: "Keep serving after the job finished."),
            Option("log-level", value: "level", help: "debug, info, warning or error.", default: "info"),
        ])

    static func main() {
        Signals.ignoreSIGPIPE()
        CommandLineTool.main(command) { arguments in
            try run(arguments)
        }
    }

    static func run(_ arguments: ParsedArguments) throws -> Int32 {
        guard let level = Logger.Level(name: arguments.string("log-level") ?? "info") else {
            throw UsageError("Invalid value for '--log-level <level>': expected debug, info, warning or error")
        }
        let log = Logger(component: "psserver", minimumLevel: level)
        // Installed before anything else starts a thread; a signal that arrives before the server exists is kept
        // and stops it as soon as it does.
        let target = LockedValue<(server: ParameterServer?, signal: Int32?)>((nil, nil))
        Signals.handleTermination { signal in
            let server = target.withLock { state -> ParameterServer? in
                if state.server == nil { state.signal = signal }
                return state.server
            }
            server?.stopForSignal(signal == SIGINT ? "SIGINT" : "SIGTERM")
        }
        let config = try makeConfig(arguments)
        let server = try ParameterServer(config: config, log: log)
        let early = target.withLock { state -> Int32? in
            state.server = server
            return state.signal
        }
        server.start()
        if let early { server.stopForSignal(early == SIGINT ? "SIGINT" : "SIGTERM") }
        return server.waitUntilStopped()
    }

    static func makeConfig(_ arguments: ParsedArguments) throws -> ServerConfig {
        var config = ServerConfig()
        config.host = arguments.string("host") ?? "0.0.0.0"
        config.port = try arguments.required("port", as: UInt16.self)
        config.shardCount = try arguments.required("shards", as: Int.self)
        config.maxFrameBytes = try arguments.required("max-frame-bytes", as: Int.self)
        config.maxModelBytes =
            try arguments.value("max-model-bytes", as: Int.self) ?? ServerConfig.defaultMaxModelBytes
        config.token = arguments.string("token").flatMap { $0.isEmpty ? nil : $0 }
        config.tls = TLSFiles(
            certificate: arguments.string("tls-cert"), key: arguments.string("tls-key"), ca: arguments.string("tls-ca"))
        if let problem = config.tls.problem(server: true) { throw UsageError(problem) }
        config.allowNonFinite = arguments.has("allow-nonfinite")
        guard let mode = ConsistencyMode(rawValue: arguments.string("mode") ?? "bsp") else {
            throw UsageError("Invalid value for '--mode <bsp|ssp|async>': expected bsp, ssp or async")
        }
        config.mode = mode
        config.staleness = try arguments.required("staleness", as: UInt64.self)
        if config.staleness != 0, mode != .ssp {
            throw UsageError(
                "--staleness \(config.staleness) applies only to --mode ssp (it is the SSP bound), "
                    + "not --mode \(mode.rawValue)")
        }
        config.maxGradientStaleness = try arguments.value("max-gradient-staleness", as: UInt64.self)
        guard let policy = StalePolicy(rawValue: arguments.string("stale-policy") ?? "drop") else {
            throw UsageError("Invalid value for '--stale-policy <drop|scale>': expected drop or scale")
        }
        config.stalePolicy = policy
        config.workerTimeoutSeconds = try arguments.required("worker-timeout", as: Double.self)
        config.waitTimeoutSeconds = try arguments.required("wait-timeout", as: Double.self)
        config.serverTimeoutSeconds = try arguments.required("server-timeout", as: Double.self)
        config.handshakeTimeoutSeconds = try arguments.required("handshake-timeout", as: Double.self)
        config.frameTimeoutSeconds = try arguments.required("frame-timeout", as: Double.self)
        config.sendTimeoutSeconds = try arguments.required("send-timeout", as: Double.self)
        config.maxConnections = try arguments.required("max-connections", as: Int.self)
        config.stopTimeoutSeconds = try arguments.required("stop-timeout", as: Double.self)
        let optimizerName = arguments.string("optimizer") ?? "sgd"
        if optimizerName == "ftrl" {
            // FTRL is a row-sparse optimizer: the table gets it, the dense parameters AdaGrad.
            var ftrl = RowOptimizerConfig(kind: .ftrl, learningRate: try arguments.required("lr", as: Float.self))
            ftrl.l1 = try arguments.required("l1", as: Float.self)
            ftrl.l2 = try arguments.required("l2", as: Float.self)
            ftrl.ftrlBeta = try arguments.required("ftrl-beta", as: Float.self)
            config.sparseOptimizer = ftrl
        }
        guard let kind = optimizerName == "ftrl" ? .adagrad : OptimizerKind(rawValue: optimizerName) else {
            throw UsageError("Invalid value for '--optimizer <name>': expected sgd, momentum, adam, adagrad or ftrl")
        }
        var optimizer = OptimizerConfig(kind: kind, learningRate: try arguments.required("lr", as: Float.self))
        optimizer.momentum = try arguments.required("momentum", as: Float.self)
        optimizer.nesterov = arguments.has("nesterov")
        optimizer.weightDecay = try arguments.required("weight-decay", as: Float.self)
        optimizer.clipValue = try arguments.value("clip-value", as: Float.self)
        optimizer.beta1 = try arguments.required("beta1", as: Float.self)
        optimizer.beta2 = try arguments.required("beta2", as: Float.self)
        // Unset: the optimizer's own conventional default (PyTorch's), set by OptimizerConfig(kind:).
        if let epsilon = try arguments.value("epsilon", as: Float.self) { optimizer.epsilon = epsilon }
        do {
            try optimizer.validate()
        } catch {
            throw UsageError("\(error)")
        }
        config.optimizer = optimizer
        config.checkpointDirectory = arguments.string("checkpoint-dir")
        config.exportDirectory = arguments.string("export-dir")
        config.checkpointEverySteps = try arguments.value("checkpoint-every-steps", as: UInt64.self)
        config.checkpointEverySeconds = try arguments.value("checkpoint-every-seconds", as: Double.self)
        config.keepCheckpoints = try arguments.value("keep-checkpoints", as: Int.self)
        config.restore = arguments.string("restore")
        config.metricsPath = arguments.string("metrics-out")
        config.keepRunning = arguments.has("keep-running")
        config.metricsPort = try arguments.value("metrics-port", as: UInt16.self)
        config.metricsHost = arguments.string("metrics-host")
        config.servers = try arguments.required("servers", as: Int.self)
        if let join = arguments.string("join") { config.join = try parseAddress(join, flag: "--join") }
        if let advertise = arguments.string("advertise") {
            _ = try parseAddress(advertise, flag: "--advertise")
            config.advertise = advertise
        }

        let jobFlags = [
            "workers", "data", "test", "label-column", "batch", "epochs", "seed", "features", "hash-features",
            "compression", "compress-pulls",
        ]
        if arguments.string("model") == nil, let given = jobFlags.first(where: { arguments.has($0) }) {
            throw UsageError(
                "--\(given) is a training-job flag and needs --model (without --model the server is a plain "
                    + "parameter store whose clients register their own tensors)")
        }
        if let model = arguments.string("model") {
            var request = JobRequest()
            request.model = model
            request.data = arguments.string("data") ?? "digits"
            request.test = arguments.string("test")
            guard let column = LabelColumn(rawValue: arguments.string("label-column") ?? "first") else {
                throw UsageError("Invalid value for '--label-column <first|last>': expected first or last")
            }
            request.labelColumn = column
            request.batchPerWorker = try arguments.required("batch", as: Int.self)
            request.epochs = try arguments.required("epochs", as: Int.self)
            request.seed = try arguments.required("seed", as: UInt64.self)
            request.mode = mode.rawValue
            request.staleness = config.staleness
            request.workers = try arguments.required("workers", as: Int.self)
            request.features = try arguments.value("features", as: Int.self)
            request.hashFeatures = try arguments.value("hash-features", as: Int.self)
            let compression = arguments.string("compression") ?? "none"
            guard let setting = CompressionSetting(parsing: compression) else {
                throw UsageError(
                    "Invalid value for '--compression <none|fp16|bf16|topk:f>': expected none, fp16, bf16 or "
                        + "topk:FRACTION with 0 < FRACTION <= 1, got \(compression)")
            }
            request.compression = setting
            request.compressPulls = arguments.has("compress-pulls")
            do {
                let planned = try JobPlanner.plan(request)
                config.job = planned.job
                config.jobTensors = planned.tensors
                if let sparse = SparseModels.model(for: planned.job) {
                    config.sparseTables = [
                        RowSparseTableSpec(
                            name: sparse.table.name, rows: sparse.table.rows, width: sparse.table.width,
                            initScale: sparse.tableInitScale, seed: planned.job.seed)
                    ]
                } else if config.sparseOptimizer != nil {
                    throw UsageError("--optimizer ftrl is for row-sparse models (--model sparse-lr)")
                }
            } catch let error as PlanError {
                // Every PlanError names the flag it is about; data errors (which name the file) stay exit 1.
                throw UsageError(error.description)
            }
        } else if mode != .async {
            if arguments.has("mode") {
                throw UsageError("--mode \(mode.rawValue) needs a training job: add --model (a plain store is async)")
            }
            config.mode = .async
        }
        do {
            try config.validate()
        } catch {
            throw UsageError(error.description)
        }
        return config
    }
}
