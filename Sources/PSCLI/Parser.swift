/// What parsing a command line produced: a request for help, or the parsed arguments.
public enum ParseResult: Sendable {
    /// `-h`/`--help`/`help` was given (or a command that needs a subcommand got none): print this text.
    case help(String)
    /// The command line was parsed.
    case parsed(ParsedArguments)
}

/// The parsing state machine: walks the tokens once, descending into subcommands as their words appear.
struct Parser {
    let root: Command
    let environment: [String: String]
    /// Skip every error and only find the command path (used when help was asked for).
    let lenient: Bool

    private(set) var path: [Command]
    private var explicitValues: [String: [String]] = [:]
    private var positionals: [String] = []
    private var helpRequested = false

    init(root: Command, environment: [String: String], lenient: Bool) {
        self.root = root
        self.environment = environment
        self.lenient = lenient
        self.path = [root]
    }

    private var current: Command {
        path[path.count - 1]
    }

    var pathNames: [String] {
        path.map(\.name)
    }

    private func fail(_ message: String, help: String? = nil) -> UsageError {
        var error = UsageError(message, help: help)
        error.commandPath = pathNames
        return error
    }

    static func looksLikeOption(_ token: String) -> Bool {
        token.hasPrefix("-") && token.count > 1 && Double(token) == nil
    }

    /// Parses every token; returns whether help was requested along the way.
    mutating func parse(_ tokens: [String]) throws(UsageError) -> Bool {
        var index = 0
        var optionsEnded = false
        while index < tokens.count {
            let token = tokens[index]
            index += 1
            if optionsEnded || !Self.looksLikeOption(token) {
                try positional(token)
            } else if token == "--" {
                optionsEnded = true
            } else if token == "--help" || token == "-h" {
                helpRequested = true
            } else if token.hasPrefix("--") {
                try longOption(token, tokens: tokens, index: &index)
            } else {
                try shortOptions(token, tokens: tokens, index: &index)
            }
        }
        return helpRequested
    }

    private mutating func longOption(_ token: String, tokens: [String], index: inout Int) throws(UsageError) {
        let body = token.dropFirst(2)
        let name: String
        var inlineValue: String?
        if let equals = body.firstIndex(of: "=") {
            name = String(body[..<equals])
            inlineValue = String(body[body.index(after: equals)...])
        } else {
            name = String(body)
        }
        guard let option = current.option(long: name) else {
            if lenient { return }
            throw fail("Unknown option '--\(name)'")
        }
        if option.isFlag {
            if let inlineValue, !lenient {
                throw fail("The option '--\(name)' does not take any value, but '\(inlineValue)' was specified.")
            }
            record(option, "")
            return
        }
        if let inlineValue {
            record(option, inlineValue)
        } else {
            try record(option, nextValue(for: option, tokens: tokens, index: &index, spelling: "--\(name)"))
        }
    }

    private mutating func shortOptions(_ token: String, tokens: [String], index: inout Int) throws(UsageError) {
        var letters = token.dropFirst()
        while let letter = letters.popFirst() {
            guard let option = current.option(short: letter) else {
                if lenient { return }
                throw fail("Unknown option '-\(letter)'")
            }
            if option.isFlag {
                record(option, "")
                continue
            }
            if !letters.isEmpty {
                record(option, String(letters))
            } else {
                try record(option, nextValue(for: option, tokens: tokens, index: &index, spelling: "-\(letter)"))
            }
            return
        }
    }

    private func nextValue(
        for option: Option,
        tokens: [String],
        index: inout Int,
        spelling: String
    ) throws(UsageError) -> String {
        if index < tokens.count && !Self.looksLikeOption(tokens[index]) {
            index += 1
            return tokens[index - 1]
        }
        if lenient { return "" }
        throw fail(
            "Missing value for '\(spelling) <\(option.valueName ?? option.long)>'",
            help: "\(spelling) <\(option.valueName ?? option.long)>  \(option.help)"
        )
    }

    private mutating func record(_ option: Option, _ value: String) {
        if option.repeatable {
            explicitValues[option.long, default: []].append(value)
        } else {
            explicitValues[option.long] = [value]
        }
    }

    private mutating func positional(_ token: String) throws(UsageError) {
        if positionals.isEmpty && !current.subcommands.isEmpty {
            if let subcommand = current.subcommand(named: token) {
                path.append(subcommand)
                return
            }
            if current.arguments.isEmpty {
                if lenient { return }
                let names = current.subcommands.map(\.name).joined(separator: ", ")
                throw fail("Unknown subcommand '\(token)'; valid subcommands: \(names)")
            }
        }
        positionals.append(token)
    }

    /// Checks the arguments and builds the result (after ``parse(_:)`` returned false).
    func finish() throws(UsageError) -> ParseResult {
        let command = current
        if !command.subcommands.isEmpty && command.arguments.isEmpty {
            // Help was not asked for: a command that needs a subcommand and got none is a usage error (exit 64).
            let names = command.subcommands.map(\.name).joined(separator: ", ")
            throw fail("Missing subcommand; valid subcommands: \(names)")
        }
        let variadic = command.arguments.last?.variadic == true
        let extra = variadic ? [] : positionals.dropFirst(command.arguments.count)
        if extra.count == 1 {
            throw fail("Unexpected argument '\(extra[extra.startIndex])'")
        } else if extra.count > 1 {
            throw fail("\(extra.count) unexpected arguments: '\(extra.joined(separator: "', '"))'")
        }
        var positionalValues: [String: String] = [:]
        for (argument, value) in zip(command.arguments, positionals) {
            positionalValues[argument.name] = value
        }
        var positionalLists: [String: [String]] = [:]
        if variadic, let last = command.arguments.last {
            positionalLists[last.name] = Array(positionals.dropFirst(command.arguments.count - 1))
        }
        if let missing = command.arguments.first(where: { !$0.optional && positionalValues[$0.name] == nil }) {
            throw fail("Missing expected argument '<\(missing.name)>'", help: "<\(missing.name)>  \(missing.help)")
        }
        var options: [String: Option] = [:]
        var environmentValues: [String: String] = [:]
        for command in path {
            for option in command.options {
                options[option.long] = option
                if let variable = option.environment, let value = environment[variable] {
                    environmentValues[variable] = value
                }
            }
        }
        return .parsed(
            ParsedArguments(
                commandPath: pathNames,
                options: options,
                explicitValues: explicitValues,
                environmentValues: environmentValues,
                positionalValues: positionalValues,
                positionalLists: positionalLists
            )
        )
    }
}
