import Foundation
import PSCLI
import PSLog
import PSPosix
import PSSecurity
import PSTraining

/// `psworker`: joins a SwiftPS job and trains on its partition of the data until the job ends.
@main
struct PSWorkerCommand {
    static let command = Command(
        name: "psworker",
        abstract: "Join a SwiftPS training job and compute gradients for it.",
        discussion: """
            The job (model, data, batch, epochs, mode) is configured on the server; the worker names only the \
            server, receives its rank and the job in the handshake, loads its partition of the data and loops \
            pull -> gradient -> push until the job ends, then exits 0. If the server disappears it retries for \
            --reconnect-timeout seconds, then exits 1 with the reason.
            """,
        options: [
            Option(
                "server", short: "s", value: "host:port", help: "The coordinator's address.",
                default: "127.0.0.1:7000", environment: "PS_SERVER"),
            Option("name", value: "name", help: "Worker name; a restarted worker with the same name rejoins its rank."),
            Option("data", value: "path", help: "Where this worker finds the job's data on its own disk."),
            Option("test", value: "path", help: "Test set for the epoch evaluation (rank 0)."),
            Option("token", value: "token", help: "Shared secret the server requires.", environment: "PS_TOKEN"),
            Option("tls-ca", value: "pem", help: "Connect with TLS; the servers' certificates must come from this CA."),
            Option("tls-cert", value: "pem", help: "Mutual TLS: this worker's certificate chain (needs --tls-key)."),
            Option("tls-key", value: "pem", help: "Private key of --tls-cert."),
            Option("threads", value: "n", help: "OpenBLAS threads for the gradient math.", default: "1"),
            Option(
                "reconnect-timeout", value: "seconds", help: "How long to keep trying to reach the server.",
                default: "30"),
            Option(
                "debug-step-delay-ms", value: "ms",
                help: "Testing aid: sleep this long every step, to make this worker a straggler.", default: "0"),
            Option("debug-max-steps", value: "n", help: "Testing aid: leave the job after n steps."),
            Option(
                "debug-die-mid-step", value: "n",
                help: "Testing aid: at step n send only the coordinator's part, then exit (code 3)."),
            Option("quiet", short: "q", help: "Print only errors and the final line."),
            Option("log-level", value: "level", help: "debug, info, warning or error.", default: "info"),
        ])

    /// The most OpenBLAS threads `--threads` may ask for.
    static let maxThreads = 1024
    /// The longest `--reconnect-timeout` (a year; `--debug-step-delay-ms` likewise): longer ones overflow the
    /// conversions to whole seconds and to dates.
    static let maxSeconds: Double = 365 * 86_400

    static func main() {
        Signals.ignoreSIGPIPE()
        CommandLineTool.main(command) { arguments in
            let (host, port) = try parseAddress(arguments.string("server") ?? "127.0.0.1:7000", flag: "--server")
            var options = WorkerOptions(
                name: arguments.string("name") ?? "\(Host.name())-\(Host.processID())")
            options.host = host
            options.port = port
            options.dataOverride = arguments.string("data")
            options.testOverride = arguments.string("test")
            options.token = arguments.string("token").flatMap { $0.isEmpty ? nil : $0 }
            let tls = TLSFiles(
                certificate: arguments.string("tls-cert"), key: arguments.string("tls-key"),
                ca: arguments.string("tls-ca"))
            if let problem = tls.problem(server: false) { throw UsageError(problem) }
            options.tls = try tls.clientContext()
            options.threads = try arguments.required("threads", as: Int.self, in: 1...maxThreads)
            options.reconnectTimeoutSeconds = try arguments.required(
                "reconnect-timeout", as: Double.self, in: 0...maxSeconds)
            options.debugStepDelayMillis = try arguments.required(
                "debug-step-delay-ms", as: Int.self, in: 0...Int(maxSeconds) * 1000)
            options.debugMaxSteps = try arguments.value("debug-max-steps", as: Int.self, in: 0...Int.max)
            options.debugDieMidStep = try arguments.value("debug-die-mid-step", as: Int.self, in: 0...Int.max)
            if arguments.has("quiet") {
                options.progress = .quiet
            } else {
                options.progress = Terminal.isTerminal(fileDescriptor: 2) ? .bar : .lines
            }
            guard let level = Logger.Level(name: arguments.string("log-level") ?? "info") else {
                throw UsageError("Invalid value for '--log-level <level>': expected debug, info, warning or error")
            }
            let worker = Worker(options: options, log: Logger(component: "psworker", minimumLevel: level))
            do {
                try worker.run()
            } catch {
                FileHandle.standardError.write(Data("Error: \(error)\n".utf8))
                return 1
            }
            return 0
        }
    }
}
