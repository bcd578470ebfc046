import Foundation

/// Renders the server's status JSON as the human-readable tables `psctl status` and `psctl workers` print.
enum StatusFormatter {
    static func format(_ status: [String: Any], workersOnly: Bool) -> String {
        var out = ""
        let workers = status["workers"] as? [[String: Any]] ?? []
        if !workersOnly {
            let uptime = (status["uptime_s"] as? Double).map { String(format: "%.1f s", $0) } ?? "?"
            out += "mode \(status["mode"] ?? "?")  optimizer \(status["optimizer"] ?? "?")  uptime \(uptime)  "
            out += "connections \(status["connections"] ?? 0)\n"
            if let job = status["job"] as? [String: Any] {
                out += "job: model \(job["model"] ?? "?") data \(job["data"] ?? "?") workers \(job["workers"] ?? "?") "
                out += "step \(status["completed_steps"] ?? 0)/\(job["totalSteps"] ?? "?") "
                out += "min clock \(status["min_clock"] ?? 0) max clock \(status["max_clock"] ?? 0) "
                out += "barrier waits \(status["barrier_waits"] ?? 0)\n"
                out += "stale pushes: dropped \(status["stale_dropped"] ?? 0) scaled \(status["stale_scaled"] ?? 0)\n"
            }
            out += "\nSHARD  VERSION      ELEMENTS         BYTES     PUSHES      PULLS\n"
            for shard in status["shards"] as? [[String: Any]] ?? [] {
                out += pad(shard["index"], 5) + "  " + pad(shard["version"], 7) + "  " + pad(shard["elements"], 12)
                out += "  " + pad(shard["bytes"], 12) + "  " + pad(shard["pushes"], 9) + "  " + pad(shard["pulls"], 9)
                out += "\n"
            }
            if workers.isEmpty { return out }
            out += "\n"
        }
        out += "NAME                  RANK  STATE   CLOCK   HEARTBEAT AGE   PUSHES\n"
        for worker in workers {
            let age = (worker["last_seen_s"] as? Double).map { String(format: "%.1f s", $0) } ?? "?"
            out +=
                (String(describing: worker["name"] ?? "?") + String(repeating: " ", count: 20))
                .prefix(20) + "  " + pad(worker["rank"], 4) + "  "
            out += (String(describing: worker["state"] ?? "?") + "      ").prefix(6) + "  " + pad(worker["clock"], 5)
            out += "  " + pad(age, 14) + "  " + pad(worker["pushes"], 7) + "\n"
        }
        if let events = status["events"] as? [String], !events.isEmpty {
            out += "\nevents:\n" + events.map { "  \($0)\n" }.joined()
        }
        return out
    }

    static func pad(_ value: Any?, _ width: Int) -> String {
        let text = value.map { String(describing: $0) } ?? "-"
        return String(repeating: " ", count: max(0, width - text.count)) + text
    }
}
