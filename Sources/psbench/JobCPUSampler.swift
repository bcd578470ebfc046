import Foundation

/// Samples a local job's CPU time while it trains: each process's (every thread, user and kernel, from
/// `/proc/PID/task/*/schedstat`) against the last step its metrics file shows, so that start-up, data loading and
/// the end-of-epoch evaluation drop out of the CPU per step (`steadyState`).
///
/// Linux only; where `/proc` cannot be read the samples show no CPU and `steadyState` is nil.
final class JobCPUSampler {
    /// One reading.
    struct Sample {
        let nanos: UInt64
        /// The last step record in the metrics file, -1 before the first.
        let step: Int
        let serverCPU: UInt64
        let workersCPU: UInt64
    }

    /// CPU time per training step between two samples taken while the job trained.
    struct SteadyState {
        /// Steps between the two samples.
        let steps: Int
        let serverSecondsPerStep: Double
        let workersSecondsPerStep: Double
        /// The machine's cores times the wall time per step between the samples: the CPU the job could have used.
        let coreSecondsPerStep: Double

        var totalSecondsPerStep: Double { serverSecondsPerStep + workersSecondsPerStep }
    }

    private let metricsPath: String
    private let server: Int32
    private let workers: [Int32]
    private(set) var samples: [Sample] = []

    init(metricsPath: String, server: Int32, workers: [Int32]) {
        self.metricsPath = metricsPath
        self.server = server
        self.workers = workers
    }

    /// Takes one sample (a few file reads: cheap next to the job).
    func sample() {
        samples.append(
            Sample(
                nanos: DispatchTime.now().uptimeNanoseconds, step: lastStep(), serverCPU: Self.cpuNanoseconds(server),
                workersCPU: workers.reduce(0) { $0 + Self.cpuNanoseconds($1) }))
    }

    /// From the first sample at or past `warmupSteps` to the last sample before the job's final step (`lastStep`):
    /// nil when fewer than two samples fall in that window or they show no CPU.
    func steadyState(warmupSteps: Int, lastStep: Int) -> SteadyState? {
        let window = samples.filter { $0.step >= warmupSteps && $0.step < lastStep }
        guard let first = window.first, let last = window.last, last.step > first.step,
            last.serverCPU > first.serverCPU
        else { return nil }
        let steps = Double(last.step - first.step)
        let cores = Double(ProcessInfo.processInfo.activeProcessorCount)
        return SteadyState(
            steps: last.step - first.step, serverSecondsPerStep: Double(last.serverCPU - first.serverCPU) / steps / 1e9,
            workersSecondsPerStep: Double(last.workersCPU - first.workersCPU) / steps / 1e9,
            coreSecondsPerStep: cores * Double(last.nanos - first.nanos) / steps / 1e9)
    }

    /// The `step` of the last step record in the metrics file (-1 when there is none yet).
    private func lastStep() -> Int {
        guard let handle = FileHandle(forReadingAtPath: metricsPath) else { return -1 }
        defer { try? handle.close() }
        guard let size = try? handle.seekToEnd() else { return -1 }
        try? handle.seek(toOffset: size > 4096 ? size - 4096 : 0)
        guard let data = try? handle.readToEnd(), let text = String(data: data, encoding: .utf8) else { return -1 }
        // The last line may still be being written: only whole lines (ending in a newline) count.
        for line in text.split(separator: "\n", omittingEmptySubsequences: true).reversed().dropFirst(
            text.hasSuffix("\n") ? 0 : 1)
        where line.contains("\"type\":\"step\"") {
            guard let range = line.range(of: "\"step\":") else { continue }
            return Int(line[range.upperBound...].prefix { $0.isNumber }) ?? -1
        }
        return -1
    }

    /// The CPU time of every live thread of process `pid`, in nanoseconds (0 when `/proc` cannot be read).
    static func cpuNanoseconds(_ pid: Int32) -> UInt64 {
        let directory = "/proc/\(pid)/task"
        guard let tasks = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return 0 }
        var total: UInt64 = 0
        for task in tasks {
            guard let text = try? String(contentsOfFile: "\(directory)/\(task)/schedstat", encoding: .utf8),
                let first = text.split(separator: " ").first, let nanos = UInt64(first)
            else { continue }
            total += nanos
        }
        return total
    }
}
