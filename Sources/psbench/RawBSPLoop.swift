import Foundation
import PSMath
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
///
/// With `serverWork`, the server threads also do the arithmetic every SGD parameter server must do per step, as
/// psserver does it: each checks its gradient for NaN and infinity as it arrives; once all have arrived, each applies
/// the gradients' mean to its slice of the weights (one fused pass where `FusedMeanSGD` is exact), in parallel, and
/// the weights go out when every slice is done.
enum RawBSPLoop {
    private struct Barrier {
        var arrived = 0
        var generation = 0
    }

    /// The server's weights and each connection's gradient with `serverWork`. Accesses take turns that the barrier
    /// orders: a connection thread writes its gradient before the step's first barrier, every thread reads all of
    /// them and writes its own slice of the weights between the first and second, and the weights are only read
    /// (sent) after the second, until the next step's first.
    private final class ServerBuffers: @unchecked Sendable {
        // @unchecked Sendable: the barrier (a pthread mutex and condition) orders every access, as above.
        let weights: UnsafeMutableBufferPointer<Float>
        let gradients: [UnsafeMutableBufferPointer<Float>]

        init(initial: [Float], clients: Int) {
            weights = .allocate(capacity: initial.count)
            _ = weights.initialize(from: initial)
            gradients = (0..<clients).map { _ in
                let gradient = UnsafeMutableBufferPointer<Float>.allocate(capacity: initial.count)
                gradient.initialize(repeating: 0)
                return gradient
            }
        }

        deinit {
            weights.deallocate()
            gradients.forEach { $0.deallocate() }
        }

        /// The part of the update that connection `rank` carries out: its slice of the weights and of every
        /// gradient, the same every step.
        func slice(rank: Int) -> Slice {
            let (count, clients) = (weights.count, gradients.count)
            let range = (count * rank / clients)..<(count * (rank + 1) / clients)
            return Slice(
                weights: UnsafeMutableBufferPointer(rebasing: weights[range]),
                sources: gradients.map { UnsafeBufferPointer(rebasing: $0[range]) })
        }
    }

    /// One connection thread's slice of the update (`ServerBuffers.slice(rank:)`), built once per run so that a
    /// step allocates nothing.
    private struct Slice {
        let weights: UnsafeMutableBufferPointer<Float>
        let sources: [UnsafeBufferPointer<Float>]

        /// `weights -= learningRate * mean(sources)`; `mean` (as long as the slice) holds the mean where the one
        /// pass is not exact.
        func apply(learningRate: Float, mean: UnsafeMutableBufferPointer<Float>) {
            guard let w = weights.baseAddress, !weights.isEmpty else { return }
            if sources.count == 1 {
                BLAS.saxpy(count: weights.count, alpha: -learningRate, x: sources[0].baseAddress!, y: w)
            } else if FusedMeanSGD.isExact {
                FusedMeanSGD.apply(sources, into: weights, alpha: -learningRate)
            } else {
                GradientMean.average(sources, into: mean)
                BLAS.saxpy(count: weights.count, alpha: -learningRate, x: mean.baseAddress!, y: w)
            }
        }
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

    /// Runs `clients` clients at `batch` rows for `warmup` untimed and `steps` timed steps each; with
    /// `serverWork`, the server checks and applies every step's gradients (SGD, learning rate 0.01).
    static func measure(clients: Int, batch: Int, steps: Int, warmup: Int = 20, serverWork: Bool = false) throws
        -> Measurement
    {
        let spec = TrainBench.mlpSpec
        let rounds = warmup + steps
        let listener = try Socket.listen(host: "127.0.0.1", port: 0)
        let port = try listener.localPort()
        let barrier = LockedValue(Barrier())
        let initial = spec.initialParameters()
        let buffers = serverWork ? ServerBuffers(initial: initial, clients: clients) : nil
        let (wallStart, cpuStart) = (MonotonicClock.nanoseconds(), ProcessCPUClock.nanoseconds())
        Thread {
            var sockets: [Socket] = []
            while sockets.count < clients, let (socket, _) = try? listener.accept() { sockets.append(socket) }
            listener.close()
            for (rank, socket) in sockets.enumerated() {
                Thread {
                    if let buffers {
                        serveWorking(socket, rank: rank, buffers: buffers, rounds: rounds, barrier: barrier)
                    } else {
                        serve(socket, weights: initial, rounds: rounds, clients: clients, barrier: barrier)
                    }
                }.start()
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
            guard arrive(at: barrier, clients: clients) else { return }
            guard (try? weights.withUnsafeBytes { try socket.writeAll($0) }) != nil else { return }
        }
    }

    /// `serve` with the server's arithmetic (`ServerBuffers`): read and check the gradient, wait for every
    /// connection's, apply this connection's slice of the mean, wait for every slice, send the weights.
    private static func serveWorking(
        _ socket: Socket, rank: Int, buffers: ServerBuffers, rounds: Int, barrier: LockedValue<Barrier>
    ) {
        defer { socket.close() }
        guard (try? socket.setReceiveTimeout(.seconds(30))) != nil else { return }
        let clients = buffers.gradients.count
        let gradient = buffers.gradients[rank]
        let slice = buffers.slice(rank: rank)
        let mean = UnsafeMutableBufferPointer<Float>.allocate(capacity: slice.weights.count)
        defer { mean.deallocate() }
        for _ in 0..<rounds {
            guard (try? socket.readExactly(into: UnsafeMutableRawBufferPointer(gradient))) != nil else { return }
            // A NaN or infinity ends this connection: its client's read fails and the measurement reports it.
            guard MagnitudeBounds.maxMagnitude(UnsafeBufferPointer(gradient)).isFinite else { return }
            guard arrive(at: barrier, clients: clients) else { return }
            slice.apply(learningRate: 0.01, mean: mean)
            guard arrive(at: barrier, clients: clients) else { return }
            guard (try? socket.writeAll(UnsafeRawBufferPointer(buffers.weights))) != nil else { return }
        }
    }

    /// Counts this thread in and waits until all `clients` threads are (false after 30 s).
    private static func arrive(at barrier: LockedValue<Barrier>, clients: Int) -> Bool {
        let generation = barrier.withLockAndBroadcast { state -> Int in
            let generation = state.generation
            state.arrived += 1
            if state.arrived == clients { (state.arrived, state.generation) = (0, generation + 1) }
            return generation
        }
        let deadline = MonotonicClock.deadline(afterSeconds: 30)
        return barrier.wait(until: deadline, while: { $0.generation == generation })
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
