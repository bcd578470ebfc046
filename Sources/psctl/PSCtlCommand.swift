import Foundation
import PSCLI
import PSClient
import PSPosix
import PSSecurity
import PSWire

/// `psctl`: operate a running SwiftPS cluster, or start a local demo cluster.
@main
struct PSCtlCommand {
    static let connectionOptions = [
        Option(
            "server", short: "s", value: "host:port", help: "The coordinator's address.", default: "127.0.0.1:7000",
            environment: "PS_SERVER"),
        Option("token", value: "token", help: "Shared secret the server requires.", environment: "PS_TOKEN"),
        Option("tls-ca", value: "pem", help: "Connect with TLS; the server's certificate must come from this CA."),
        Option("tls-cert", value: "pem", help: "Mutual TLS: psctl's certificate chain (needs --tls-key)."),
        Option("tls-key", value: "pem", help: "Private key of --tls-cert."),
        Option("timeout", value: "seconds", help: "Give up after this long.", default: "30"),
    ]

    static let command = Command(
        name: "psctl",
        abstract: "Operate a running SwiftPS cluster.",
        discussion: "Every subcommand exits 0 on success and non-zero with a one-line reason on failure.",
        options: connectionOptions,
        subcommands: [
            Command(
                name: "status", abstract: "Show shards, workers, clocks and counters.",
                options: connectionOptions + [Option("json", help: "Print the raw JSON document.")]),
            Command(name: "workers", abstract: "List the job's workers.", options: connectionOptions),
            Command(
                name: "checkpoint", abstract: "Take a checkpoint and print its directory and step.",
                options: connectionOptions + [Option("wait", help: "Return only once the checkpoint is durable.")]),
            Command(
                name: "export", abstract: "Write the current weights as .npy files into a directory on the server.",
                options: connectionOptions,
                arguments: [
                    Argument(
                        "directory",
                        help: "Directory under the server's --export-dir (default <checkpoint-dir>/exports).")
                ]),
            Command(
                name: "shutdown", abstract: "Stop the server.",
                discussion: """
                    A server running a job first takes a checkpoint at the next step boundary (bounded by its \
                    --stop-timeout) and then exits 0, as on SIGTERM; its workers keep retrying for their \
                    --reconnect-timeout, so a server restarted with --restore latest continues the job.
                    """,
                options: connectionOptions + [
                    Option("no-checkpoint", help: "Stop at once, without the checkpoint at the next step.")
                ]),
            Plot.command,
            Launcher.command,
            Command(
                name: "demo", abstract: "Run a local cluster (one psserver, two psworkers) on bundled or local data.",
                discussion: """
                    A preset of psctl run: trains an MLP on Fashion-MNIST when Debian's dataset-fashion-mnist \
                    package is installed, on the bundled digits data set otherwise, streams progress, prints the \
                    final accuracy and stops every process it started (also on failure and Ctrl-C).
                    """,
                options: [
                    Option("workers", value: "k", help: "Number of worker processes.", default: "2"),
                    Option("epochs", value: "e", help: "Epochs to train (default: 5 on Fashion-MNIST, 20 on digits)."),
                    Option("data", value: "data", help: "Data set (default: fashion-mnist if installed, else digits)."),
                    Option("model", value: "model", help: "Model to train.", default: "mlp:128"),
                    Option("mode", value: "bsp|ssp|async", help: "Consistency mode.", default: "bsp"),
                    Option("directory", value: "dir", help: "Where to keep logs, metrics and final weights."),
                ]),
        ])

    static func main() {
        Signals.ignoreSIGPIPE()
        // psctl run passes every flag it does not know to psserver.
        let tokens = Launcher.regroup(Array(CommandLine.arguments.dropFirst()))
        CommandLineTool.main(command, arguments: tokens) { arguments in
            switch arguments.commandPath.last {
            case "demo":
                return try Demo.run(arguments)
            case "run":
                return try Launcher.run(arguments)
            case "status":
                return try status(arguments, json: arguments.has("json"), workersOnly: false)
            case "workers":
                return try status(arguments, json: false, workersOnly: true)
            case "checkpoint":
                return try checkpoint(arguments)
            case "export":
                return try export(arguments)
            case "shutdown":
                return try shutdown(arguments)
            case "plot":
                return try Plot.run(arguments)
            default:
                throw UsageError(
                    "Missing subcommand: expected status, workers, checkpoint, export, shutdown, plot, run or demo")
            }
        }
    }

    static func connect(_ arguments: ParsedArguments) throws -> (ParameterClient, Duration) {
        let (host, port) = try parseAddress(arguments.string("server") ?? "127.0.0.1:7000", flag: "--server")
        // At most a year, so the milliseconds below fit an Int64; NaN and infinities are refused too.
        let seconds = try arguments.required("timeout", as: Double.self, in: 0.001...(365 * 86_400))
        let timeout = Duration.milliseconds(Int64(seconds * 1000))
        let files = TLSFiles(
            certificate: arguments.string("tls-cert"), key: arguments.string("tls-key"), ca: arguments.string("tls-ca"))
        if let problem = files.problem(server: false) { throw UsageError(problem) }
        do {
            let client = try ParameterClient.connect(
                host: host, port: port, role: .control, name: "psctl",
                token: arguments.string("token").flatMap { $0.isEmpty ? nil : $0 }, connectTimeout: timeout,
                requestTimeout: timeout, tls: try files.clientContext())
            return (client, timeout)
        } catch {
            throw CtlError("cannot talk to \(host):\(port): \(error)")
        }
    }

    static func status(_ arguments: ParsedArguments, json: Bool, workersOnly: Bool) throws -> Int32 {
        let (client, timeout) = try connect(arguments)
        defer { client.close() }
        let reply = try client.request(.status(StatusRequest())).wait(timeout: timeout)
        guard case .message(.statusReply(let status)) = reply else { throw CtlError("unexpected reply \(reply)") }
        if json {
            print(status.json)
            return 0
        }
        let document: StatusDocument
        do {
            document = try StatusDocument.decode(json: status.json)
        } catch {
            throw CtlError("the server's status document does not decode: \(error)")
        }
        print(StatusFormatter.format(document, workersOnly: workersOnly), terminator: "")
        return 0
    }

    static func checkpoint(_ arguments: ParsedArguments) throws -> Int32 {
        let (client, timeout) = try connect(arguments)
        defer { client.close() }
        let wait = arguments.has("wait")
        let reply = try client.request(.checkpoint(CheckpointRequest(wait: wait))).wait(timeout: timeout)
        guard case .message(.checkpointReply(let checkpoint)) = reply else {
            throw CtlError("unexpected reply \(reply)")
        }
        print("checkpoint \(checkpoint.path) step \(checkpoint.step)\(checkpoint.durable ? " (durable)" : "")")
        return 0
    }

    static func export(_ arguments: ParsedArguments) throws -> Int32 {
        guard let directory = arguments.argument("directory") else {
            throw UsageError("Missing expected argument '<directory>'")
        }
        let (client, timeout) = try connect(arguments)
        defer { client.close() }
        let reply = try client.request(.export(ExportRequest(path: directory))).wait(timeout: timeout)
        guard case .message(.exportReply(let export)) = reply else { throw CtlError("unexpected reply \(reply)") }
        print("exported weights to \(export.path) (version \(export.step))")
        return 0
    }

    static func shutdown(_ arguments: ParsedArguments) throws -> Int32 {
        let (client, timeout) = try connect(arguments)
        defer { client.close() }
        let checkpoint = !arguments.has("no-checkpoint")
        _ = try client.request(.shutdown(ShutdownRequest(checkpoint: checkpoint))).wait(timeout: timeout)
        print(
            checkpoint
                ? "server is shutting down (a running job checkpoints at the next step first)"
                : "server is shutting down (no checkpoint)")
        return 0
    }
}

/// A psctl failure with its one-line reason.
struct CtlError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
