/// The Prometheus text exposition format, version 0.0.4: what `GET /metrics` returns.
///
/// Every family gets its `# HELP` and `# TYPE` lines, then its samples, one per line; label values and help
/// text are escaped as the format requires; the document ends with a newline.
public enum PrometheusText {
    /// The `Content-Type` of the format.
    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    /// Formats `families` in the order given.
    public static func format(_ families: [MetricFamily]) -> String {
        var out = ""
        for family in families {
            out += "# HELP \(family.name) \(escapeHelp(family.help))\n"
            out += "# TYPE \(family.name) \(family.kind.rawValue)\n"
            for sample in family.samples {
                out += family.name + sample.suffix
                if !sample.labels.isEmpty {
                    out += "{"
                    out += sample.labels.map { "\($0.name)=\"\(escapeLabelValue($0.value))\"" }.joined(separator: ",")
                    out += "}"
                }
                out += " " + number(sample.value) + "\n"
            }
        }
        return out
    }

    /// A sample value: integers without a fraction or exponent, `+Inf`, `-Inf`, `NaN`, otherwise Swift's
    /// shortest round-tripping form (which Go's `ParseFloat` reads).
    public static func number(_ value: Double) -> String {
        if value.isNaN { return "NaN" }
        if value == .infinity { return "+Inf" }
        if value == -.infinity { return "-Inf" }
        if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        return "\(value)"
    }

    /// `\` and newline escaped, as `# HELP` requires.
    public static func escapeHelp(_ text: String) -> String {
        text.replacingAll("\\", with: "\\\\").replacingAll("\n", with: "\\n")
    }

    /// `\`, `"` and newline escaped, as label values require.
    public static func escapeLabelValue(_ text: String) -> String {
        text.replacingAll("\\", with: "\\\\").replacingAll("\"", with: "\\\"").replacingAll("\n", with: "\\n")
    }

    /// Whether `name` is a valid metric or label name (`[a-zA-Z_:][a-zA-Z0-9_:]*`; labels may not use `:`).
    public static func isValidName(_ name: String, label: Bool = false) -> Bool {
        guard let first = name.unicodeScalars.first else { return false }
        func allowed(_ scalar: Unicode.Scalar, leading: Bool) -> Bool {
            if scalar == "_" || (!label && scalar == ":") { return true }
            if ("a"..."z").contains(scalar) || ("A"..."Z").contains(scalar) { return true }
            return !leading && ("0"..."9").contains(scalar)
        }
        return allowed(first, leading: true)
            && name.unicodeScalars.dropFirst().allSatisfy { allowed($0, leading: false) }
    }
}

extension String {
    fileprivate func replacingAll(_ target: Character, with replacement: String) -> String {
        guard contains(target) else { return self }
        var out = ""
        for character in self {
            if character == target { out += replacement } else { out.append(character) }
        }
        return out
    }
}
