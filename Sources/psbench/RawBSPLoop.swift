import Foundation
import PSModel
import PSPosix

/// The least a BSP step of the `psbench train` jobs can cost on this machine, measured: each client thread runs
/// real mlp:128 forward+backward passes on its batch, writes the gradient's bytes to a raw TCP socket and reads
/// the model's bytes back into the parameters the next pass reads; a server thread per connection reads the
/// gradient, waits until every connection's has arrived (the barrier) and writes the weights back.
///
/// No framing, no arithmetic or copies on the server, threads instead of processes: what any parameter server
/// over TCP must at least do per step, with the passes and the traffic competing for the same cores as the real
/// job's workers and server do.
enum RawBSPLoop {
    private struct Barrier {
        var arrived = 0
        var generation = 0
    }

    /// What one run of the loop measured.
    struct Measurement {
        /// The mean wall time of a timed step (pass, send, barrier, receive): a mean, as the jobs' step rows are
        /// (their epoch time over their steps), so that stalls count in both.
        let stepSeconds: Double
        /// The process's CPU time (every client and server thread, user and kernel) per step, over the whole run.
        let cpuSecondsPerStep: Double
        /// What the machine's cores offered per step over the whole run: their count times its wall time per step.
        /// CPU time near this means the loop alone keeps every core busy, and no step on this machine can be
        /// shorter without doing less work.
        let coreSecondsPerStep: Double
    }

    /// Runs `clients` clients at `batch` rows for `warmup` untimed and `steps` timed steps each.
    static func measure(clients: Int, batch: Int, steps: Int, warmup: Int = 20) throws -> Measurement {
        let spec = TrainBench.mlpSpec
        let rounds = warmup + steps
        let listener = try Socket.listen(host: "127.0.0.1", port: 0)
        let port = try listener.localPort()
        let barrier = LockedValue(Barrier())
        let initial = spec.initialParameters()
        let (wallStart, cpuStart) = (MonotonicClock.nanoseconds(), ProcessCPUClock.nanoseconds())
        Thread {
            var sockets: [Socket] = []
            while sockets.count < clients, let (socket, _) = try? listener.accept() { sockets.append(socket) }
            listener.close()
            for socket in sockets {
                Thread { serve(socket, weights: initial, rounds: rounds, clients: clients, barrier: barrier) }.start()
            }
        }.start()

        let samples = LockedValue<[UInt64]>([])
        let failure = LockedValue<String?>(nil)
        let finished = LockedValue(0)
        for _ in 0..<clients {
            Thread {
                defer { finished.withLockAndBroadcast { $0 += 1 } }
                do {
                    let times = try runClient(port: port, batch: batch, rounds: rounds)
                    samples.withLock { $0 += times.dropFirst(warmup) }
                } catch {
                    failure.withLock { $0 = $0 ?? "raw BSP client: \(error)" }
                    listener.close()  // a server still accepting gives up
                }
            }.start()
        }
        guard finished.wait(until: MonotonicClock.deadline(afterSeconds: 120), while: { $0 < clients }) else {
            throw BenchError("raw BSP loop (\(clients) x \(batch)) did not finish in 120 s")
        }
        let (wall, cpu) = (MonotonicClock.nanoseconds() - wallStart, ProcessCPUClock.nanoseconds() - cpuStart)
        if let failure = failure.withLock({ $0 }) { throw BenchError(failure) }
        let times = samples.withLock { $0 }
        let cores = Double(ProcessInfo.processInfo.activeProcessorCount)
        return Measurement(
            stepSeconds: Double(times.reduce(0, +)) / Double(max(times.count, 1)) / 1e9,
            cpuSecondsPerStep: Double(cpu) / Double(rounds) / 1e9,
            coreSecondsPerStep: cores * Double(wall) / Double(rounds) / 1e9)
    }

    /// One connection's server side: read a gradient, wait for every connection's, send the weights.
    private static func serve(
        _ socket: Socket, weights: [Float], rounds: Int, clients: Int, barrier: LockedValue<Barrier>
    ) {
        defer { socket.close() }
        guard (try? socket.setReceiveTimeout(.seconds(30))) != nil else { return }
        let gradient = UnsafeMutableRawBufferPointer.allocate(byteCount: weights.count * 4, alignment: 16)
        defer { gradient.deallocate() }
        for _ in 0..<rounds {
            guard (try? socket.readExactly(into: gradient)) != nil else { return }
            let generation = barrier.withLockAndBroadcast { state -> Int in
                let generation = state.generation
                state.arrived += 1
                if state.arrived == clients { (state.arrived, state.generation) = (0, generation + 1) }
                return generation
            }
            let deadline = MonotonicClock.deadline(afterSeconds: 30)
            guard barrier.wait(until: deadline, while: { $0.generation == generation }) else { return }
            guard (try? weights.withUnsafeBytes { try socket.writeAll($0) }) != nil else { return }
        }
    }

    /// One client: `rounds` steps of pass, send, receive; each step's wall time in nanoseconds.
    private static func runClient(port: UInt16, batch: Int, rounds: Int) throws -> [UInt64] {
        var pass = MLPPass(batch: batch)
        let socket = try Socket.connect(host: "127.0.0.1", port: port, timeout: .seconds(5))
        defer { socket.close() }
        try socket.setReceiveTimeout(.seconds(30))
        var times: [UInt64] = []
        for _ in 0..<rounds {
            let start = MonotonicClock.nanoseconds()
            pass.run()
            try pass.gradient.withUnsafeBytes { try socket.writeAll($0) }
            try pass.parameters.withUnsafeMutableBytes { try socket.readExactly(into: $0) }
            times.append(MonotonicClock.nanoseconds() - start)
        }
        return times
    }
}
