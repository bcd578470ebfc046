import Foundation
import PSPosix

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
        var out = ""
        out.reserveCapacity(256)
        write(to: &out)
        return out
    }

    /// Appends the value's compact JSON text to `out` (one growing string, no intermediate pieces).
    public func write(to out: inout String) {
        switch self {
        case .string(let text): Self.quote(text, to: &out)
        case .int(let value): out += String(value)
        case .double(let value): out += value.isFinite ? value.description : "null"
        case .bool(let value): out += value ? "true" : "false"
        case .null: out += "null"
        case .array(let values):
            out += "["
            for (index, value) in values.enumerated() {
                if index > 0 { out += "," }
                value.write(to: &out)
            }
            out += "]"
        case .object(let fields):
            out += "{"
            for (index, field) in fields.sorted(by: { $0.key < $1.key }).enumerated() {
                if index > 0 { out += "," }
                Self.quote(field.key, to: &out)
                out += ":"
                field.value.write(to: &out)
            }
            out += "}"
        }
    }

    /// Appends `text` as a JSON string literal; text with nothing to escape (keys, names) is appended whole.
    static func quote(_ text: String, to out: inout String) {
        out += "\""
        defer { out += "\"" }
        guard text.utf8.contains(where: { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") }) else {
            out += text
            return
        }
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
    }
}

/// The `--metrics-out` file: one JSON object per line (`"type": "step"` or `"epoch"` records), appended line by
/// line so a crash loses at most the line being written.
///
/// Records carry the sequence number the job coordinator gave them and are written in that order whatever order
/// the threads carrying them arrive in. No lock is held while writing: the thread that finds nobody writing
/// becomes the writer and drains every line that is ready, then steps down.
public final class MetricsFile: Sendable {
    public let path: String
    private let handle: FileHandle
    private let queue = LockedValue(Queue())

    private struct Queue {
        /// The sequence number of the next record to write.
        var nextSequence: UInt64 = 0
        /// Records that arrived ahead of an earlier one.
        var heldBack: [UInt64: String] = [:]
        /// Lines ready to write, in order.
        var ready: [String] = []
        /// Whether a thread is writing lines right now.
        var writing = false
    }

    /// Creates (truncates) the file; `header`, when given, is its first line (the `"type": "run"` record).
    public init(path: String, header: [String: MetricsValue]? = nil) throws {
        guard FileManager.default.createFile(atPath: path, contents: nil) else {
            throw ConfigError("--metrics-out: cannot create \(path)")
        }
        guard let handle = FileHandle(forWritingAtPath: path) else {
            throw ConfigError("--metrics-out: cannot open \(path) for writing")
        }
        self.path = path
        self.handle = handle
        if let header { handle.write(Data((MetricsValue.object(header).json + "\n").utf8)) }
    }

    /// Appends the record with sequence number `sequence` once every earlier record was appended.
    public func write(_ fields: [String: MetricsValue], sequence: UInt64) {
        let line = MetricsValue.object(fields).json + "\n"
        var batch: [String] = queue.withLock { queue in
            queue.heldBack[sequence] = line
            while let next = queue.heldBack.removeValue(forKey: queue.nextSequence) {
                queue.ready.append(next)
                queue.nextSequence += 1
            }
            guard !queue.writing, !queue.ready.isEmpty else { return [] }
            queue.writing = true
            defer { queue.ready.removeAll() }
            return queue.ready
        }
        while !batch.isEmpty {
            handle.write(Data(batch.joined().utf8))
            batch = queue.withLockAndBroadcast { queue in
                defer { queue.ready.removeAll() }
                if queue.ready.isEmpty { queue.writing = false }
                return queue.ready
            }
        }
    }

    /// Waits (bounded) until every ready line is on its way to the file: called when the server stops.
    public func flush(seconds: Double = 10) {
        queue.wait(until: MonotonicClock.deadline(afterSeconds: seconds), while: { $0.writing || !$0.ready.isEmpty })
    }
}
