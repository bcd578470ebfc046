/// The outcome of parsing a command line: which (sub)command, and the options and arguments given.
///
/// An option's value comes from the command line if it was given there, else from its environment variable,
/// else from its default. Option names may be written with or without the leading `--`.
public struct ParsedArguments: Sendable {
    /// The command words from the root, e.g. `["psctl", "checkpoint"]`.
    public let commandPath: [String]
    /// The options of every command on the path, by long name (a subcommand's own option wins over a parent's).
    let options: [String: Option]
    /// Values given on the command line, in order; a flag records an empty string per occurrence.
    let explicitValues: [String: [String]]
    /// The values of the options' environment variables that are set.
    let environmentValues: [String: String]
    /// Positional arguments by name.
    let positionalValues: [String: String]
    /// A variadic argument's words, by name.
    var positionalLists: [String: [String]] = [:]

    private static func key(_ long: String) -> String {
        long.hasPrefix("--") ? String(long.dropFirst(2)) : long
    }

    private enum Source {
        case commandLine
        case environment(String)
        case defaultValue
    }

    private func lookup(_ long: String) -> (value: String, source: Source)? {
        let key = Self.key(long)
        if let value = explicitValues[key]?.last {
            return (value, .commandLine)
        }
        if let option = options[key] {
            if let variable = option.environment, let value = environmentValues[variable] {
                return (value, .environment(variable))
            }
            if let value = option.defaultValue {
                return (value, .defaultValue)
            }
        }
        return nil
    }

    /// Whether the flag or option was given on the command line or through its environment variable.
    ///
    /// A flag's environment variable counts when set to anything but ``""``, `0`, `false`, `no` or `off`.
    public func has(_ long: String) -> Bool {
        let key = Self.key(long)
        if explicitValues[key] != nil {
            return true
        }
        guard let option = options[key], let variable = option.environment,
            let value = environmentValues[variable]
        else { return false }
        if option.isFlag {
            return !["", "0", "false", "no", "off"].contains(value.lowercased())
        }
        return true
    }

    /// The option's value: the last one given, else its environment variable, else its default.
    public func string(_ long: String) -> String? {
        lookup(long)?.value
    }

    /// Every value of a repeatable option in the order given; else the environment value or default, if any.
    public func strings(_ long: String) -> [String] {
        if let values = explicitValues[Self.key(long)] {
            return values
        }
        return lookup(long).map { [$0.value] } ?? []
    }

    /// The option's value converted to `T` (Int, UInt16, UInt64, Double, Float, String, ...); nil if absent.
    ///
    /// A value that does not convert throws `The value 'abc' is invalid for '--port <port>'`.
    public func value<T: LosslessStringConvertible>(_ long: String, as type: T.Type) throws(UsageError) -> T? {
        guard let (text, source) = lookup(long) else { return nil }
        return try convert(text, source: source, long: long, as: type)
    }

    /// Every value of a repeatable option converted to `T`.
    public func values<T: LosslessStringConvertible>(_ long: String, as type: T.Type) throws(UsageError) -> [T] {
        var converted: [T] = []
        for text in strings(long) {
            converted.append(try convert(text, source: .commandLine, long: long, as: type))
        }
        return converted
    }

    /// Like ``value(_:as:)``, but a missing value throws `Missing expected argument '--port <port>'`.
    public func required<T: LosslessStringConvertible>(_ long: String, as type: T.Type) throws(UsageError) -> T {
        guard let value = try value(long, as: type) else {
            throw UsageError("Missing expected argument '\(synopsis(long))'", help: helpLine(long))
        }
        return value
    }

    /// Like ``value(_:as:)``, but a value outside `range` throws, naming the option and the range.
    ///
    /// NaN is in no range and the infinities are in no finite one, so a `Double` range also refuses those:
    /// `The value 'nan' is invalid for '--timeout <seconds>': expected a number in 0.0...31536000.0`.
    public func value<T: LosslessStringConvertible & Comparable>(
        _ long: String,
        as type: T.Type,
        in range: ClosedRange<T>
    ) throws(UsageError) -> T? {
        guard let value = try value(long, as: type) else { return nil }
        guard range.contains(value) else {
            var message = "The value '\(value)' is invalid for '\(synopsis(long))': expected a number in \(range)"
            if case .environment(let variable)? = lookup(long)?.source {
                message += " (from environment variable \(variable))"
            }
            throw UsageError(message, help: helpLine(long))
        }
        return value
    }

    /// Like ``required(_:as:)``, but a value outside `range` throws, naming the option and the range.
    public func required<T: LosslessStringConvertible & Comparable>(
        _ long: String,
        as type: T.Type,
        in range: ClosedRange<T>
    ) throws(UsageError) -> T {
        guard let value = try value(long, as: type, in: range) else {
            throw UsageError("Missing expected argument '\(synopsis(long))'", help: helpLine(long))
        }
        return value
    }

    /// The positional argument's value, or nil if it was not given.
    public func argument(_ name: String) -> String? {
        positionalValues[name]
    }

    /// Every word given for a variadic argument (its first word alone is also ``argument(_:)``).
    public func arguments(_ name: String) -> [String] {
        positionalLists[name] ?? positionalValues[name].map { [$0] } ?? []
    }

    private func convert<T: LosslessStringConvertible>(
        _ text: String,
        source: Source,
        long: String,
        as type: T.Type
    ) throws(UsageError) -> T {
        if let value = T(text) {
            return value
        }
        var message = "The value '\(text)' is invalid for '\(synopsis(long))'"
        if case .environment(let variable) = source {
            message += " (from environment variable \(variable))"
        }
        throw UsageError(message, help: helpLine(long))
    }

    private func synopsis(_ long: String) -> String {
        options[Self.key(long)]?.synopsis ?? "--\(Self.key(long))"
    }

    private func helpLine(_ long: String) -> String? {
        guard let option = options[Self.key(long)], !option.help.isEmpty else { return nil }
        return "\(option.synopsis)  \(option.help)"
    }
}
