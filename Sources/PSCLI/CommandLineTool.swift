import Foundation

/// What running a command line produced: the exit code and the text for standard output and standard error.
public struct ToolOutcome: Sendable, Equatable {
    /// 0 after help, 64 after a usage error, 1 after another error, else the body's code.
    public var exitCode: Int32
    /// Help text, if help was asked for.
    public var standardOutput: String
    /// `Error: ...` lines, if any.
    public var standardError: String

    /// Creates an outcome.
    public init(exitCode: Int32, standardOutput: String, standardError: String) {
        self.exitCode = exitCode
        self.standardOutput = standardOutput
        self.standardError = standardError
    }
}

/// Parses command lines and prints help in swift-argument-parser's conventions.
public enum CommandLineTool {
    /// The exit code after a usage error (`EX_USAGE`).
    public static let usageErrorExitCode: Int32 = 64
    /// The exit code after any other error.
    public static let failureExitCode: Int32 = 1

    /// The width help text is wrapped to (argument-parser's default when the output is not a terminal).
    static let screenWidth = 80
    static let labelColumnWidth = 26

    /// Parses `arguments` (without the tool name) with the process's environment for option fallbacks.
    public static func parse(_ command: Command, arguments: [String]) throws(UsageError) -> ParseResult {
        try parse(command, arguments: arguments, environment: ProcessInfo.processInfo.environment)
    }

    /// Parses `arguments` (without the tool name), reading option fallbacks from `environment`.
    ///
    /// `-h`/`--help` anywhere before `--`, or `help [subcommand ...]` as the first words of a command that has
    /// subcommands, gives ``ParseResult/help(_:)`` for the command reached.
    public static func parse(
        _ command: Command,
        arguments: [String],
        environment: [String: String]
    ) throws(UsageError) -> ParseResult {
        if arguments.first == "help" && !command.subcommands.isEmpty && command.subcommand(named: "help") == nil {
            var path = [command.name]
            var target = command
            for word in arguments.dropFirst() where !Parser.looksLikeOption(word) {
                guard let next = target.subcommand(named: word) else {
                    let names = target.subcommands.map(\.name).joined(separator: ", ")
                    var error = UsageError("Unknown subcommand '\(word)'; valid subcommands: \(names)")
                    error.commandPath = path
                    throw error
                }
                target = next
                path.append(word)
            }
            return .help(helpText(for: target, path: path))
        }
        let helpWanted = arguments.prefix { $0 != "--" }.contains { $0 == "-h" || $0 == "--help" }
        var parser = Parser(root: command, environment: environment, lenient: helpWanted)
        if try parser.parse(arguments) {
            let names = parser.pathNames
            let target = command.descendant(names.dropFirst()) ?? command
            return .help(helpText(for: target, path: names))
        }
        return try parser.finish()
    }

    /// Runs the command line as ``main(_:_:)`` would, but returns the output and exit code instead of exiting.
    public static func run(
        _ command: Command,
        arguments: [String],
        environment: [String: String],
        _ body: (ParsedArguments) throws -> Int32
    ) -> ToolOutcome {
        let parsed: ParsedArguments
        do {
            switch try parse(command, arguments: arguments, environment: environment) {
            case .help(let text):
                return ToolOutcome(exitCode: 0, standardOutput: text, standardError: "")
            case .parsed(let arguments):
                parsed = arguments
            }
        } catch {
            return usageFailure(error, root: command, path: error.commandPath ?? [command.name])
        }
        do {
            let code = try body(parsed)
            return ToolOutcome(exitCode: code, standardOutput: "", standardError: "")
        } catch let error as UsageError {
            return usageFailure(error, root: command, path: error.commandPath ?? parsed.commandPath)
        } catch {
            return ToolOutcome(exitCode: failureExitCode, standardOutput: "", standardError: "Error: \(error)\n")
        }
    }

    private static func usageFailure(_ error: UsageError, root: Command, path: [String]) -> ToolOutcome {
        let command = root.descendant(path.dropFirst()) ?? root
        var text = "Error: \(error.message)\n"
        if let help = error.help {
            text += "Help:  \(help)\n"
        }
        text += "Usage: \(usage(for: command, path: path))\n"
        text += "  See '\(path.joined(separator: " ")) --help' for more information.\n"
        return ToolOutcome(exitCode: usageErrorExitCode, standardOutput: "", standardError: text)
    }

    /// Parses `CommandLine.arguments`, runs `body` and exits with its code.
    ///
    /// `--help`/`-h` prints help to standard output and exits 0. A ``UsageError`` (from parsing or thrown by
    /// `body`) prints `Error: <message>`, `Usage: <usage line>` and `  See '<command> --help' for more
    /// information.` to standard error and exits 64; any other error thrown by `body` prints `Error: <description>`
    /// to standard error and exits 1.
    public static func main(_ command: Command, _ body: (ParsedArguments) throws -> Int32) -> Never {
        main(command, arguments: Array(CommandLine.arguments.dropFirst()), body)
    }

    /// Like ``main(_:_:)``, with the arguments given (a tool that rewrites its command line first).
    public static func main(
        _ command: Command, arguments: [String], _ body: (ParsedArguments) throws -> Int32
    ) -> Never {
        let outcome = run(
            command,
            arguments: arguments,
            environment: ProcessInfo.processInfo.environment,
            body
        )
        if !outcome.standardOutput.isEmpty {
            FileHandle.standardOutput.write(Data(outcome.standardOutput.utf8))
        }
        if !outcome.standardError.isEmpty {
            FileHandle.standardError.write(Data(outcome.standardError.utf8))
        }
        exit(outcome.exitCode)
    }

    // MARK: - Help

    /// The usage synopsis: `psserver [--port <port>] [--verbose] <data>`, plus ` <subcommand>` where there are any.
    ///
    /// As in argument-parser, a command with more than 12 options and arguments shows `[<options>]` instead.
    public static func usage(for command: Command, path: [String]) -> String {
        let toolName = path.joined(separator: " ")
        var parts: [String] = []
        if command.options.count + command.arguments.count > 12 {
            let arguments = command.arguments.map(argumentSynopsis)
            parts = arguments.isEmpty ? ["<options>"] : ["[<options>]"] + arguments
        } else {
            parts = command.options.map(optionSynopsis) + command.arguments.map(argumentSynopsis)
        }
        if !command.subcommands.isEmpty {
            parts.append("<subcommand>")
        }
        return ([toolName] + parts).joined(separator: " ")
    }

    private static func optionSynopsis(_ option: Option) -> String {
        var text = option.synopsis
        if option.repeatable {
            text += " ..."
        }
        return "[\(text)]"
    }

    private static func argumentSynopsis(_ argument: Argument) -> String {
        (argument.optional ? "[<\(argument.name)>]" : "<\(argument.name)>") + (argument.variadic ? " ..." : "")
    }

    /// The help text for `command` reached by the words `path` (root first), ending in a newline.
    public static func helpText(for command: Command, path: [String]) -> String {
        var overview = command.abstract
        if let discussion = command.discussion, !discussion.isEmpty {
            if !overview.isEmpty {
                overview += "\n"
            }
            overview += "\n\(discussion)"
        }
        var text = ""
        if !overview.isEmpty {
            text += wrap("OVERVIEW: \(overview)", indent: 0) + "\n\n"
        }
        text += "USAGE: \(usage(for: command, path: path))\n\n"

        var sections: [String] = []
        if !command.arguments.isEmpty {
            sections.append(
                section("ARGUMENTS", command.arguments.map { ("<\($0.name)>", $0.help) })
            )
        }
        let helpOption = ("-h, --help", "Show help information.")
        sections.append(section("OPTIONS", command.options.map(optionElement) + [helpOption]))
        if !command.subcommands.isEmpty {
            sections.append(section("SUBCOMMANDS", command.subcommands.map { ($0.name, $0.abstract) }))
        }
        text += sections.joined(separator: "\n")
        if !command.subcommands.isEmpty {
            var names = path
            names.insert("help", at: min(1, names.count))
            text += "\n  See '\(names.joined(separator: " ")) <subcommand>' for detailed help."
        }
        return text + "\n"
    }

    private static func optionElement(_ option: Option) -> (String, String) {
        var label = option.short.map { "-\($0), " } ?? ""
        label += "--\(option.long)"
        if let valueName = option.valueName {
            label += " <\(valueName)>"
        }
        var notes: [String] = []
        if let environment = option.environment {
            notes.append("env: \(environment)")
        }
        if let defaultValue = option.defaultValue {
            notes.append("default: \(defaultValue)")
        }
        var abstract = option.help
        if !notes.isEmpty {
            abstract += (abstract.isEmpty ? "" : " ") + "(\(notes.joined(separator: "; ")))"
        }
        return (label, abstract)
    }

    private static func section(_ header: String, _ elements: [(label: String, abstract: String)]) -> String {
        var text = "\(header):\n"
        for (label, abstract) in elements {
            let paddedLabel = "  " + label
            text += paddedLabel
            if !abstract.isEmpty {
                let wrapped = wrap(abstract, indent: labelColumnWidth)
                if paddedLabel.count < labelColumnWidth {
                    text += wrapped.dropFirst(paddedLabel.count)
                } else {
                    text += "\n" + wrapped
                }
            }
            text += "\n"
        }
        return text
    }

    /// Wraps `text` to ``screenWidth`` columns, indenting every non-empty line by `indent` (argument-parser's rule).
    static func wrap(_ text: String, indent: Int) -> String {
        let columns = screenWidth - indent
        var lines: [Substring] = []
        var rest = text[...]
        while true {
            let chunk = rest.prefix(columns)
            if let lineBreak = chunk.lastIndex(of: "\n") {
                lines.append(contentsOf: rest[..<lineBreak].split(separator: "\n", omittingEmptySubsequences: false))
                rest = rest[rest.index(after: lineBreak)...]
            } else if chunk.endIndex == rest.endIndex {
                lines.append(rest)
                break
            } else if let space = chunk.lastIndex(of: " ") {
                lines.append(rest[..<space])
                rest = rest[rest.index(after: space)...]
            } else if let space = rest.firstIndex(of: " ") {
                lines.append(rest[..<space])
                rest = rest[rest.index(after: space)...]
            } else {
                lines.append(rest)
                break
            }
        }
        let padding = String(repeating: " ", count: indent)
        return lines.map { $0.isEmpty ? "" : padding + $0 }.joined(separator: "\n")
    }
}
