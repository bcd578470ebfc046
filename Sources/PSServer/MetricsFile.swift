import Foundation
import Synchronization

/// A JSON value for metrics and status documents (keys are written sorted, so lines are stable).
public enum MetricsValue: Sendable, Equatable {
    case string(String)
    case int(Int)
    case double(Double)
    case bool(Bool)
    case null
    case array([MetricsValue])
    case object([String: MetricsValue])

    /// The value as compact JSON text.
    public var json: String {
        switch self {
        case .string(let text): return Self.quote(text)
        case .int(let value): return String(value)
        case .double(let value): return value.isFinite ? "\(value)" : "null"
        case .bool(let value): return value ? "true" : "false"
        case .null: return "null"
        case .array(let values): return "[" + values.map(\.json).joined(separator: ",") + "]"
        case .object(let fields):
            return "{" + fields.keys.sorted().map { Self.quote($0) + ":" + fields[$0]!.json }.joined(separator: ",")
                + "}"
        }
    }

    static func quote(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 {
                    out += String(format: "\\u%04x", scalar.value)
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }
}

/// The `--metrics-out` file: one JSON object per line (`"type": "step"` or `"epoch"` records), appended and
/// flushed line by line so a crash loses at most the line being written.
public final class MetricsFile: Sendable {
    private let handle: Mutex<FileHandle>
    public let path: String

    /// Creates (truncates) the file.
    public init(path: String) throws {
        guard FileManager.default.createFile(atPath: path, contents: nil) else {
            throw ConfigError("--metrics-out: cannot create \(path)")
        }
        guard let handle = FileHandle(forWritingAtPath: path) else {
            throw ConfigError("--metrics-out: cannot open \(path) for writing")
        }
        self.path = path
        self.handle = Mutex(handle)
    }

    /// Appends one record.
    public func write(_ fields: [String: MetricsValue]) {
        let line = MetricsValue.object(fields).json + "\n"
        handle.withLock { $0.write(Data(line.utf8)) }
    }
}
