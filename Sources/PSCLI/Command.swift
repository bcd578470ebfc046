/// A named command-line option: `--port <port>` (with a value) or `--verbose` (a flag).
public struct Option: Sendable {
    /// The long name without dashes: `port` for `--port`.
    public let long: String
    /// The optional one-letter name: `p` for `-p`.
    public let short: Character?
    /// The value's placeholder name (`port` shows as `<port>`); nil for a flag, which takes no value.
    public let valueName: String?
    /// One line of help.
    public let help: String
    /// The value used when the option is given neither explicitly nor through its environment variable.
    public let defaultValue: String?
    /// An environment variable consulted when the option is not given explicitly.
    public let environment: String?
    /// Whether the option may be given more than once, collecting every value.
    public let repeatable: Bool

    /// Declares an option; `value` nil makes it a flag. A leading `--` on `long` is ignored.
    public init(
        _ long: String,
        short: Character? = nil,
        value: String? = nil,
        help: String,
        default defaultValue: String? = nil,
        environment: String? = nil,
        repeatable: Bool = false
    ) {
        self.long = long.hasPrefix("--") ? String(long.dropFirst(2)) : long
        self.short = short
        self.valueName = value
        self.help = help
        self.defaultValue = defaultValue
        self.environment = environment
        self.repeatable = repeatable
    }

    /// Whether the option is a flag (takes no value).
    public var isFlag: Bool {
        valueName == nil
    }

    /// `--port <port>` or `--verbose`: how errors name the option.
    public var synopsis: String {
        if let valueName {
            return "--\(long) <\(valueName)>"
        }
        return "--\(long)"
    }
}

/// A positional argument: `<path>`.
public struct Argument: Sendable {
    /// The placeholder name (`path` shows as `<path>`), also the key for ``ParsedArguments/argument(_:)``.
    public let name: String
    /// One line of help.
    public let help: String
    /// Whether the argument may be left out.
    public let optional: Bool
    /// Whether the (last) argument takes every remaining positional word: `<run> ...`.
    public let variadic: Bool

    /// Declares a positional argument.
    public init(_ name: String, help: String, optional: Bool = false, variadic: Bool = false) {
        self.name = name
        self.help = help
        self.optional = optional
        self.variadic = variadic
    }
}

/// A command (or subcommand): its name, help texts, options, positional arguments and subcommands.
public struct Command: Sendable {
    /// The word that invokes the command: the tool name for the root, the subcommand word otherwise.
    public let name: String
    /// One sentence shown after `OVERVIEW:` and in the parent's subcommand list.
    public let abstract: String
    /// Further paragraphs shown under the overview.
    public let discussion: String?
    /// The options this command accepts (`-h`/`--help` is implicit).
    public let options: [Option]
    /// The positional arguments, in order.
    public let arguments: [Argument]
    /// The subcommands; a command that has some requires one (without one, its help is shown).
    public let subcommands: [Command]

    /// Declares a command.
    public init(
        name: String,
        abstract: String,
        discussion: String? = nil,
        options: [Option] = [],
        arguments: [Argument] = [],
        subcommands: [Command] = []
    ) {
        self.name = name
        self.abstract = abstract
        self.discussion = discussion
        self.options = options
        self.arguments = arguments
        self.subcommands = subcommands
    }

    func option(long: String) -> Option? {
        options.first { $0.long == long }
    }

    func option(short: Character) -> Option? {
        options.first { $0.short == short }
    }

    func subcommand(named name: String) -> Command? {
        subcommands.first { $0.name == name }
    }

    /// The command reached from this one by following `names` (the path without the root's own name).
    func descendant(_ names: ArraySlice<String>) -> Command? {
        var command = self
        for name in names {
            guard let next = command.subcommand(named: name) else { return nil }
            command = next
        }
        return command
    }
}

/// A mistake in the command line: an unknown option, a missing or invalid value, an unexpected argument.
///
/// ``CommandLineTool/main(_:_:)`` prints it as `Error: <message>` followed by the usage and exits with 64.
public struct UsageError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The sentence after `Error: `.
    public let message: String
    /// An optional `Help:` line naming the option and its help, as argument-parser prints for invalid values.
    public let help: String?
    /// The command path whose usage line is printed; nil means the path that was parsed.
    var commandPath: [String]?

    /// Creates a usage error with `message`.
    public init(_ message: String) {
        self.init(message, help: nil)
    }

    /// Creates a usage error with `message` and a `Help:` line.
    public init(_ message: String, help: String?) {
        self.message = message
        self.help = help
        self.commandPath = nil
    }

    /// The message.
    public var description: String {
        message
    }
}
