import Foundation
import PSWire

/// Renders the server's status document as the human-readable tables `psctl status` and `psctl workers` print.
enum StatusFormatter {
    static func format(_ status: StatusDocument, workersOnly: Bool) -> String {
        var out = ""
        let job = status.jobStatus
        let workers = job?.workers ?? []
        if !workersOnly {
            let uptime = String(format: "%.1f s", status.uptimeSeconds)
            out += "mode \(status.mode)  optimizer \(status.optimizer)  uptime \(uptime)  "
            out += "connections \(status.connections)\n"
            if let job {
                let description = job.job
                out += "job: model \(description.model) data \(description.data) "
                if let rows = description.hashFeatures { out += "hashed into \(rows) rows " }
                out += "workers \(description.workers) "
                out += "step \(job.completedSteps)/\(description.totalSteps) "
                out += "min clock \(job.minClock) max clock \(job.maxClock) "
                out += "barrier waits \(job.barrierWaits)\n"
                out += "stale pushes: dropped \(status.staleDropped) scaled \(status.staleScaled)\n"
            }
            if let refused = status.nonFiniteRefused {
                out += "non-finite updates refused: \(refused)\n"
            }
            if let servers = status.servers {
                let addresses = servers.map { $0.address.isEmpty ? "(coordinator)" : $0.address }
                let addressWidth = width(of: addresses, atLeast: 21)
                out += "\nSERVER  " + column("ADDRESS", addressWidth)
                out += "  SHARDS            BYTES     PUSHES      PULLS  HEARTBEAT AGE\n"
                for (server, address) in zip(servers, addresses) {
                    let range = "\(server.firstShard)..<\(server.firstShard + server.shards)"
                    out += pad(server.index, 6) + "  " + column(address, addressWidth)
                    out += "  " + column(range, 8)
                    out += "  " + pad(server.bytes.map { "\($0)" } ?? "-", 13)
                    out += "  " + pad(server.pushes.map { "\($0)" } ?? "-", 9)
                    out += "  " + pad(server.pulls.map { "\($0)" } ?? "-", 9)
                    out += "  " + pad(server.heartbeatAgeSeconds.map { String(format: "%.1f s", $0) } ?? "-", 13)
                    out += (server.isSelf ? "  (this server)" : "") + "\n"
                }
            }
            out += "\nSHARD  VERSION      ELEMENTS         BYTES     PUSHES      PULLS\n"
            for shard in status.shards {
                out += pad(shard.index, 5) + "  " + pad(shard.version, 7) + "  " + pad(shard.elements, 12)
                out += "  " + pad(shard.bytes, 12) + "  " + pad(shard.pushes, 9) + "  " + pad(shard.pulls, 9)
                out += "\n"
            }
            if let tables = status.tables, !tables.isEmpty {
                let nameWidth = width(of: tables.map(\.name), atLeast: 20)
                out += "\n" + column("TABLE", nameWidth) + "  " + pad("ROWS", 10)
                out += "  WIDTH  OPTIMIZER  ROWS TOUCHED    UPDATES     PUSHES      PULLS\n"
                for table in tables {
                    out += column(table.name, nameWidth) + "  " + pad(table.rows, 10)
                    out += "  " + pad(table.width, 5) + "  " + column(table.optimizer, 9)
                    out += "  " + pad(table.rowsTouched, 12) + "  " + pad(table.updatesApplied, 9)
                    out += "  " + pad(table.pushes, 9) + "  " + pad(table.pulls, 9) + "\n"
                }
            }
            if workers.isEmpty { return out }
            out += "\n"
        }
        let nameWidth = width(of: workers.map(\.name), atLeast: 20)
        out += column("NAME", nameWidth) + "  RANK  STATE   CLOCK   HEARTBEAT AGE   PUSHES\n"
        for worker in workers {
            let age = String(format: "%.1f s", worker.lastSeenSeconds)
            out += column(worker.name, nameWidth) + "  " + pad(worker.rank, 4) + "  "
            out += column(worker.state, 6) + "  " + pad(worker.clock, 5)
            out += "  " + pad(age, 14) + "  " + pad(worker.pushes, 7) + "\n"
        }
        if let events = job?.events, !events.isEmpty {
            out += "\nevents:\n" + events.map { "  \($0)\n" }.joined()
        }
        return out
    }

    /// `text` left-aligned in a column of `width` characters: padded with spaces (never cut: names and addresses
    /// are what an operator types into the next command).
    static func column(_ text: String, _ width: Int) -> String {
        text + String(repeating: " ", count: max(0, width - text.count))
    }

    /// The width of a column holding `texts`: the longest of them, and at least `minimum`.
    static func width(of texts: [String], atLeast minimum: Int) -> Int {
        max(minimum, texts.map(\.count).max() ?? 0)
    }

    /// `value` right-aligned in `width` characters (never cut).
    static func pad(_ value: some CustomStringConvertible, _ width: Int) -> String {
        let text = value.description
        return String(repeating: " ", count: max(0, width - text.count)) + text
    }
}
