import PSCLI
import XCTest

/// A psctl-like tool with subcommands, and a single command with arguments, as fixtures.
enum Fixtures {
    static let server = Option(
        "server",
        short: "s",
        value: "address",
        help: "The server to contact.",
        default: "127.0.0.1:7000",
        environment: "PS_SERVER"
    )

    static let checkpoint = Command(
        name: "checkpoint",
        abstract: "Ask the server to write a checkpoint now.",
        options: [server, Option("wait", help: "Wait until the checkpoint is durable.")]
    )

    static let status = Command(name: "status", abstract: "Print the job's status as JSON.", options: [server])

    static let psctl = Command(
        name: "psctl",
        abstract: "Control a running SwiftPS job.",
        options: [Option("verbose", short: "v", help: "Print more.")],
        subcommands: [status, checkpoint]
    )

    static let export = Command(
        name: "psexport",
        abstract: "Export the weights.",
        discussion: "Writes one .npy file per tensor.",
        options: [
            Option(
                "port", short: "p", value: "port", help: "The port to listen on.", default: "7000",
                environment: "PS_PORT"),
            Option("tensor", short: "t", value: "name", help: "A tensor to export.", repeatable: true),
            Option("lr", value: "rate", help: "A learning rate."),
            Option("offset", value: "n", help: "An offset."),
            Option("force", short: "f", help: "Overwrite."),
            Option("quiet", short: "q", help: "Print nothing."),
            Option("learning-rate-schedule", value: "schedule", help: "How the learning rate changes over time."),
        ],
        arguments: [
            Argument("directory", help: "Where to write."),
            Argument("name", help: "The export's name.", optional: true),
        ]
    )

    static let exportUsage =
        "psexport [--port <port>] [--tensor <name> ...] [--lr <rate>] [--offset <n>] [--force] [--quiet]"
        + " [--learning-rate-schedule <schedule>] <directory> [<name>]"
}

struct ExampleError: Error, CustomStringConvertible {
    var description: String { "the job is not running" }
}

final class CommandLineToolTests: XCTestCase {
    private func parse(
        _ command: Command,
        _ arguments: [String],
        environment: [String: String] = [:]
    ) throws -> ParsedArguments {
        switch try CommandLineTool.parse(command, arguments: arguments, environment: environment) {
        case .parsed(let parsed):
            return parsed
        case .help(let text):
            throw UsageError("unexpected help:\n\(text)")
        }
    }

    private func help(_ command: Command, _ arguments: [String]) throws -> String {
        switch try CommandLineTool.parse(command, arguments: arguments, environment: [:]) {
        case .help(let text):
            return text
        case .parsed(let parsed):
            throw UsageError("expected help, parsed \(parsed.commandPath)")
        }
    }

    private func run(
        _ command: Command,
        _ arguments: [String],
        environment: [String: String] = [:],
        body: (ParsedArguments) throws -> Int32 = { _ in 0 }
    ) -> ToolOutcome {
        CommandLineTool.run(command, arguments: arguments, environment: environment, body)
    }

    // MARK: - Parsing forms

    func test_parse_optionSpellings_allGiveTheValue() throws {
        for arguments in [["--port", "8000"], ["--port=8000"], ["-p", "8000"], ["-p8000"]] {
            let parsed = try parse(Fixtures.export, arguments + ["out"])
            XCTAssertEqual(try parsed.value("port", as: Int.self), 8000, "\(arguments)")
            XCTAssertEqual(try parsed.value("--port", as: UInt16.self), 8000, "\(arguments)")
            XCTAssertTrue(parsed.has("port"))
        }
    }

    func test_parse_defaultEnvironmentAndExplicit_takePrecedenceInThatOrder() throws {
        let byDefault = try parse(Fixtures.export, ["out"])
        XCTAssertEqual(byDefault.string("port"), "7000")
        XCTAssertFalse(byDefault.has("port"))
        let fromEnvironment = try parse(Fixtures.export, ["out"], environment: ["PS_PORT": "9000"])
        XCTAssertEqual(try fromEnvironment.value("port", as: UInt16.self), 9000)
        XCTAssertTrue(fromEnvironment.has("port"))
        let explicit = try parse(Fixtures.export, ["--port", "8000", "out"], environment: ["PS_PORT": "9000"])
        XCTAssertEqual(explicit.string("port"), "8000")
    }

    func test_parse_flagsPositionalsAndRepeatableOptions() throws {
        let parsed = try parse(Fixtures.export, ["-fq", "out", "-t", "fc1.weight", "--tensor=fc1.bias", "run7"])
        XCTAssertTrue(parsed.has("force"))
        XCTAssertTrue(parsed.has("quiet"))
        XCTAssertFalse(parsed.has("lr"))
        XCTAssertNil(parsed.string("lr"))
        XCTAssertEqual(parsed.strings("tensor"), ["fc1.weight", "fc1.bias"])
        XCTAssertEqual(parsed.argument("directory"), "out")
        XCTAssertEqual(parsed.argument("name"), "run7")
        XCTAssertEqual(parsed.commandPath, ["psexport"])
    }

    func test_parse_variadicLastArgument_takesEveryRemainingWord() throws {
        let plot = Command(
            name: "plot", abstract: "Plot runs.", options: [Option("output", short: "o", value: "file", help: "Out.")],
            arguments: [Argument("run", help: "A metrics file.", variadic: true)])
        let parsed = try parse(plot, ["a.jsonl", "-o", "x.svg", "b.jsonl", "c.jsonl"])
        XCTAssertEqual(parsed.arguments("run"), ["a.jsonl", "b.jsonl", "c.jsonl"])
        XCTAssertEqual(parsed.argument("run"), "a.jsonl")
        XCTAssertEqual(parsed.string("output"), "x.svg")
        XCTAssertTrue(CommandLineTool.helpText(for: plot, path: ["plot"]).contains("<run> ..."))
        XCTAssertThrowsError(try parse(plot, ["-o", "x.svg"]))
    }

    func test_parse_nonRepeatableOptionTwice_lastWins() throws {
        let parsed = try parse(Fixtures.export, ["--lr", "0.1", "--lr", "0.5", "out"])
        XCTAssertEqual(try parsed.value("lr", as: Double.self), 0.5)
        XCTAssertEqual(try parsed.values("lr", as: Float.self), [0.5])
    }

    func test_parse_doubleDashEndsOptions_andNegativeNumbersAreValues() throws {
        let parsed = try parse(Fixtures.export, ["--offset", "-5", "--", "--odd-directory", "-f"])
        XCTAssertEqual(try parsed.value("offset", as: Int.self), -5)
        XCTAssertEqual(parsed.argument("directory"), "--odd-directory")
        XCTAssertEqual(parsed.argument("name"), "-f")
        XCTAssertFalse(parsed.has("force"))
    }

    func test_parse_subcommand_collectsItsOptionsAndTheParents() throws {
        let parsed = try parse(Fixtures.psctl, ["-v", "checkpoint", "--wait", "-s", "10.0.0.1:7000"])
        XCTAssertEqual(parsed.commandPath, ["psctl", "checkpoint"])
        XCTAssertTrue(parsed.has("verbose"))
        XCTAssertTrue(parsed.has("wait"))
        XCTAssertEqual(parsed.string("server"), "10.0.0.1:7000")
    }

    func test_parse_environmentFallback_forFlagsAndOptions() throws {
        let parsed = try parse(Fixtures.psctl, ["status"], environment: ["PS_SERVER": "host:1"])
        XCTAssertEqual(parsed.string("server"), "host:1")
        XCTAssertTrue(parsed.has("server"))
        let flag = Command(name: "t", abstract: "", options: [Option("dry-run", help: "", environment: "PS_DRY_RUN")])
        XCTAssertTrue(try parse(flag, [], environment: ["PS_DRY_RUN": "1"]).has("dry-run"))
        XCTAssertFalse(try parse(flag, [], environment: ["PS_DRY_RUN": "false"]).has("dry-run"))
        XCTAssertFalse(try parse(flag, []).has("dry-run"))
    }

    // MARK: - Typed values

    func test_typedValues_invalidText_throwsArgumentParserWording() throws {
        let parsed = try parse(Fixtures.export, ["--port", "abc", "--lr", "fast", "--offset", "70000", "out"])
        XCTAssertThrowsError(try parsed.value("port", as: UInt16.self)) {
            XCTAssertEqual("\($0)", "The value 'abc' is invalid for '--port <port>'")
        }
        XCTAssertThrowsError(try parsed.value("lr", as: Double.self)) {
            XCTAssertEqual("\($0)", "The value 'fast' is invalid for '--lr <rate>'")
        }
        XCTAssertThrowsError(try parsed.value("offset", as: UInt16.self)) {
            XCTAssertEqual("\($0)", "The value '70000' is invalid for '--offset <n>'")
        }
        XCTAssertEqual(try parsed.value("offset", as: UInt64.self), 70000)
        XCTAssertEqual(try parsed.value("lr", as: String.self), "fast")
    }

    func test_typedValues_invalidEnvironmentValue_namesTheVariable() throws {
        let parsed = try parse(Fixtures.export, ["out"], environment: ["PS_PORT": "zz"])
        XCTAssertThrowsError(try parsed.value("port", as: Int.self)) {
            XCTAssertEqual("\($0)", "The value 'zz' is invalid for '--port <port>' (from environment variable PS_PORT)")
        }
    }

    func test_required_missingOption_throwsMissingExpectedArgument() throws {
        let parsed = try parse(Fixtures.export, ["out"])
        XCTAssertThrowsError(try parsed.required("lr", as: Float.self)) {
            XCTAssertEqual("\($0)", "Missing expected argument '--lr <rate>'")
        }
        XCTAssertEqual(try parsed.required("port", as: UInt16.self), 7000)
    }

    func test_rangedValues_outOfRangeNaNOrInfinite_throwNamingTheOptionAndRange() throws {
        let parsed = try parse(Fixtures.export, ["--port", "0", "--lr", "nan", "--offset", "inf", "out"])
        XCTAssertThrowsError(try parsed.value("port", as: Int.self, in: 1...65535)) {
            XCTAssertEqual("\($0)", "The value '0' is invalid for '--port <port>': expected a number in 1...65535")
        }
        XCTAssertThrowsError(try parsed.required("lr", as: Double.self, in: 0...10)) {
            XCTAssertEqual("\($0)", "The value 'nan' is invalid for '--lr <rate>': expected a number in 0.0...10.0")
        }
        XCTAssertThrowsError(try parsed.value("offset", as: Double.self, in: -1e9...1e9)) {
            XCTAssertTrue("\($0)".hasPrefix("The value 'inf' is invalid for '--offset <n>'"), "\($0)")
        }
        XCTAssertEqual(try parsed.value("port", as: Int.self, in: 0...1), 0)
        XCTAssertNil(try parsed.value("dry-run-count", as: Int.self, in: 0...1))
        let environment = try parse(Fixtures.export, ["out"], environment: ["PS_PORT": "-5"])
        XCTAssertThrowsError(try environment.value("port", as: Int.self, in: 1...65535)) {
            XCTAssertEqual(
                "\($0)",
                "The value '-5' is invalid for '--port <port>': expected a number in 1...65535 "
                    + "(from environment variable PS_PORT)")
        }
    }

    // MARK: - Errors, exactly as printed

    private func usageFailure(_ message: String, help: String? = nil, usage: String, path: String) -> ToolOutcome {
        var text = "Error: \(message)\n"
        if let help {
            text += "Help:  \(help)\n"
        }
        text += "Usage: \(usage)\n  See '\(path) --help' for more information.\n"
        return ToolOutcome(exitCode: 64, standardOutput: "", standardError: text)
    }

    func test_errors_unknownOptionMissingValueAndUnexpectedArguments() {
        let usage = Fixtures.exportUsage
        XCTAssertEqual(
            run(Fixtures.export, ["--x", "out"]),
            usageFailure("Unknown option '--x'", usage: usage, path: "psexport")
        )
        XCTAssertEqual(
            run(Fixtures.export, ["-z", "out"]),
            usageFailure("Unknown option '-z'", usage: usage, path: "psexport")
        )
        XCTAssertEqual(
            run(Fixtures.export, ["out", "--port"]),
            usageFailure(
                "Missing value for '--port <port>'",
                help: "--port <port>  The port to listen on.",
                usage: usage,
                path: "psexport"
            )
        )
        XCTAssertEqual(
            run(Fixtures.export, ["a", "b", "c"]),
            usageFailure("Unexpected argument 'c'", usage: usage, path: "psexport")
        )
        XCTAssertEqual(
            run(Fixtures.export, ["a", "b", "c", "d"]),
            usageFailure("2 unexpected arguments: 'c', 'd'", usage: usage, path: "psexport")
        )
        XCTAssertEqual(
            run(Fixtures.export, []),
            usageFailure(
                "Missing expected argument '<directory>'",
                help: "<directory>  Where to write.",
                usage: usage,
                path: "psexport"
            )
        )
        XCTAssertEqual(
            run(Fixtures.export, ["--force=yes", "out"]),
            usageFailure(
                "The option '--force' does not take any value, but 'yes' was specified.",
                usage: usage,
                path: "psexport"
            )
        )
    }

    func test_errors_invalidValueThrownByBody_printsHelpAndUsage() {
        let outcome = run(Fixtures.export, ["--port", "abc", "out"]) { parsed in
            _ = try parsed.value("port", as: UInt16.self)
            return 0
        }
        XCTAssertEqual(
            outcome,
            usageFailure(
                "The value 'abc' is invalid for '--port <port>'",
                help: "--port <port>  The port to listen on.",
                usage: Fixtures.exportUsage,
                path: "psexport"
            )
        )
    }

    func test_errors_subcommands_useTheFailingCommandsUsage() {
        XCTAssertEqual(
            run(Fixtures.psctl, ["frob"]),
            usageFailure(
                "Unknown subcommand 'frob'; valid subcommands: status, checkpoint",
                usage: "psctl [--verbose] <subcommand>",
                path: "psctl"
            )
        )
        XCTAssertEqual(
            run(Fixtures.psctl, ["checkpoint", "--bogus"]),
            usageFailure(
                "Unknown option '--bogus'",
                usage: "psctl checkpoint [--server <address>] [--wait]",
                path: "psctl checkpoint"
            )
        )
    }

    func test_run_otherErrorsExitOne_andBodyCodePassesThrough() {
        XCTAssertEqual(
            run(Fixtures.psctl, ["status"]) { _ in throw ExampleError() },
            ToolOutcome(exitCode: 1, standardOutput: "", standardError: "Error: the job is not running\n")
        )
        XCTAssertEqual(run(Fixtures.psctl, ["status"]) { _ in 3 }.exitCode, 3)
        XCTAssertEqual(
            run(Fixtures.psctl, ["status"]) { _ in throw UsageError("--server must be HOST:PORT") },
            usageFailure("--server must be HOST:PORT", usage: "psctl status [--server <address>]", path: "psctl status")
        )
    }

    // MARK: - Help, exactly as printed

    static let psctlHelp = """
        OVERVIEW: Control a running SwiftPS job.

        USAGE: psctl [--verbose] <subcommand>

        OPTIONS:
          -v, --verbose           Print more.
          -h, --help              Show help information.

        SUBCOMMANDS:
          status                  Print the job's status as JSON.
          checkpoint              Ask the server to write a checkpoint now.

          See 'psctl help <subcommand>' for detailed help.

        """

    static let checkpointHelp = """
        OVERVIEW: Ask the server to write a checkpoint now.

        USAGE: psctl checkpoint [--server <address>] [--wait]

        OPTIONS:
          -s, --server <address>  The server to contact. (env: PS_SERVER; default:
                                  127.0.0.1:7000)
          --wait                  Wait until the checkpoint is durable.
          -h, --help              Show help information.


        """

    func test_help_rootCommand_listsOptionsAndSubcommands() throws {
        XCTAssertEqual(try help(Fixtures.psctl, ["--help"]), Self.psctlHelp)
        XCTAssertEqual(try help(Fixtures.psctl, ["-h"]), Self.psctlHelp)
        XCTAssertEqual(try help(Fixtures.psctl, ["help"]), Self.psctlHelp)
        let bare = run(Fixtures.psctl, []) { _ in 0 }
        XCTAssertEqual(bare.exitCode, 64, "no subcommand is a usage error, not help")
        XCTAssertTrue(
            bare.standardError.hasPrefix("Error: Missing subcommand; valid subcommands: status"), bare.standardError)
    }

    func test_help_subcommand_allSpellings() throws {
        XCTAssertEqual(try help(Fixtures.psctl, ["checkpoint", "--help"]), Self.checkpointHelp)
        XCTAssertEqual(try help(Fixtures.psctl, ["checkpoint", "--server", "x", "-h"]), Self.checkpointHelp)
        XCTAssertEqual(try help(Fixtures.psctl, ["help", "checkpoint"]), Self.checkpointHelp)
        XCTAssertEqual(try help(Fixtures.psctl, ["checkpoint", "--bogus", "--help"]), Self.checkpointHelp)
        XCTAssertEqual(
            CommandLineTool.helpText(for: Fixtures.checkpoint, path: ["psctl", "checkpoint"]),
            Self.checkpointHelp
        )
    }

    func test_help_afterDoubleDash_isAnArgument() throws {
        let parsed = try parse(Fixtures.export, ["--", "--help"])
        XCTAssertEqual(parsed.argument("directory"), "--help")
    }

    func test_help_argumentsDiscussionAndLongLabels() throws {
        let expected = """
            OVERVIEW: Export the weights.

            Writes one .npy file per tensor.

            USAGE: \(Fixtures.exportUsage)

            ARGUMENTS:
              <directory>             Where to write.
              <name>                  The export's name.

            OPTIONS:
              -p, --port <port>       The port to listen on. (env: PS_PORT; default: 7000)
              -t, --tensor <name>     A tensor to export.
              --lr <rate>             A learning rate.
              --offset <n>            An offset.
              -f, --force             Overwrite.
              -q, --quiet             Print nothing.
              --learning-rate-schedule <schedule>
                                      How the learning rate changes over time.
              -h, --help              Show help information.


            """
        let outcome = run(Fixtures.export, ["-h"])
        XCTAssertEqual(outcome, ToolOutcome(exitCode: 0, standardOutput: expected, standardError: ""))
    }

    func test_usage_moreThanTwelveOptions_collapsesToOptionsPlaceholder() {
        let options = (1...13).map { Option("option\($0)", help: "") }
        let many = Command(name: "many", abstract: "", options: options, arguments: [Argument("file", help: "")])
        XCTAssertEqual(CommandLineTool.usage(for: many, path: ["many"]), "many [<options>] <file>")
        let noArguments = Command(name: "many", abstract: "", options: options)
        XCTAssertEqual(CommandLineTool.usage(for: noArguments, path: ["many"]), "many <options>")
    }
}
