import Foundation
import PSClient
import PSLog
import PSMath
import PSPosix
import PSServer
import PSTransport
import PSWire

/// `psbench server`: push, pull and push-pull goodput against an in-process psserver, next to the raw TCP
/// echo and memcpy baselines measured in the same run; and the optimizer apply rate against memcpy.
enum ServerBench {
    static func run(quick: Bool) throws -> [BenchRow] {
        var rows: [BenchRow] = []
        let sizes = quick ? [4 << 10, 4 << 20, 64 << 20] : [4 << 10, 256 << 10, 4 << 20, 64 << 20, 256 << 20]
        for size in sizes {
            let iterations = max(3, min(2000, (quick ? 128 << 20 : 1 << 30) / size))
            let rawEcho = try WireBench.rawStream(size: size, iterations: max(iterations / 2, 2), echo: true)
            let rawOneWay = try WireBench.rawStream(size: size, iterations: iterations, echo: false)
            for shards in [1, 4] {
                for clients in quick ? [1, 4] : [1, 2, 4] {
                    if size >= 256 << 20, clients > 2 { continue }  // keeps memory within a 24 GiB machine
                    FileHandle.standardError.write(
                        Data("measuring \(formatBytes(size)), \(shards) shards, \(clients) clients\n".utf8))
                    let result = try measure(
                        size: size, shards: shards, clients: clients, iterations: max(2, iterations / clients))
                    let label =
                        "\(formatBytes(size)) \(shards) shard\(shards == 1 ? "" : "s") \(clients) client\(clients == 1 ? "" : "s")"
                    rows.append(
                        BenchRow(
                            name: "push-pull \(label)", value: result.pushPull, unit: "GB/s", baseline: rawEcho,
                            baselineName: "raw echo"))
                    rows.append(
                        BenchRow(
                            name: "exchange \(label)", value: result.exchange, unit: "GB/s", baseline: rawEcho,
                            baselineName: "raw echo"))
                    rows.append(
                        BenchRow(
                            name: "push \(label)", value: result.push, unit: "GB/s", baseline: rawOneWay,
                            baselineName: "raw one-way"))
                    rows.append(
                        BenchRow(
                            name: "pull \(label)", value: result.pull, unit: "GB/s", baseline: rawOneWay,
                            baselineName: "raw one-way"))
                }
            }
        }
        rows += try smallMessageRows(rounds: smallMessageRounds(quick: quick))
        for kind in OptimizerKind.allCases {
            let rates = applyRate(kind: kind, bytes: 64 << 20)
            rows.append(
                BenchRow(
                    name: "\(kind.rawValue) apply, 64 MiB of gradient", value: rates.apply, unit: "GB/s",
                    baseline: rates.memcpy, baselineName: "memcpy"))
            if let traffic = rates.traffic {
                rows.append(
                    BenchRow(
                        name: "\(kind.rawValue) apply vs a pass with its memory traffic", value: rates.apply,
                        unit: "GB/s", baseline: traffic,
                        baselineName: kind == .adam
                            ? "4 reads + 3 writes per element" : "3 reads + 2 writes per element"))
            }
            if let portable = rates.portable {
                rows.append(
                    BenchRow(
                        name: "\(kind.rawValue) apply, AVX2 loop vs the Swift loop (SSE)", value: rates.apply,
                        unit: "GB/s", baseline: portable, baselineName: "FusedUpdate path .portable"))
            }
            rows.append(
                BenchRow(
                    name: "\(kind.rawValue) gradient check + apply + non-finite weight check", value: rates.checked,
                    unit: "GB/s", baseline: rates.validated, baselineName: "gradient check + apply"))
        }
        return rows
    }

    /// An in-process async psserver on 127.0.0.1:0 with `shards` shards and SGD at a learning rate too small to
    /// move the weights the benchmarks push.
    static func benchConfig(shards: Int) -> ServerConfig {
        var config = ServerConfig()
        config.host = "127.0.0.1"
        config.port = 0
        config.shardCount = shards
        config.mode = .async
        config.optimizer = OptimizerConfig(kind: .sgd, learningRate: 1e-9)
        return config
    }

    struct Goodput {
        var push = 0.0
        var pull = 0.0
        var pushPull = 0.0
        /// One `exchange` frame carrying every shard's slice, answered by one frame with every shard's weights.
        var exchange = 0.0
    }

    static func measure(size: Int, shards: Int, clients: Int, iterations: Int) throws -> Goodput {
        var config = benchConfig(shards: shards)
        config.allowNonFinite = true
        config.maxFrameBytes = max(size + 4096, 1 << 20)
        let server = try ParameterServer(config: config, log: Logger(component: "bench", minimumLevel: .error))
        server.start()
        defer { server.stop(exitCode: 0, reason: "bench done") }
        let count = size / 4
        let setup = try ParameterClient.connect(
            host: "127.0.0.1", port: server.port, role: .worker, name: "setup", maxPayloadBytes: config.maxFrameBytes)
        _ = try setup.register([TensorSpec(name: "w", shape: [count], initializer: .zeros)])
        setup.close()
        let layout = ShardLayout(tensorElementCounts: [count], shardCount: shards)
        var result = Goodput()
        let maxPayloadBytes = config.maxFrameBytes
        let port = server.port
        for phase in 0..<4 {
            let seconds = try runClients(clients) { index in
                let client = try ParameterClient.connect(
                    host: "127.0.0.1", port: port, role: .worker, name: "c\(index)", maxPayloadBytes: maxPayloadBytes)
                defer { client.close() }
                var gradient = [Float](repeating: 0, count: count)
                var weights = [Float](repeating: 0, count: count)
                let zeroVersions = [UInt64](repeating: 0, count: shards)
                return try measureLoop(iterations: iterations) {
                    if phase == 3 {
                        try gradient.withUnsafeBufferPointer { g in
                            try weights.withUnsafeMutableBufferPointer { w in
                                _ = try client.exchange(
                                    rank: 0, clock: 0, loss: 0, samples: 0, baseVersions: zeroVersions, gradient: g,
                                    into: w
                                ).wait()
                            }
                        }
                        return
                    }
                    var handles: [RequestHandle] = []
                    try gradient.withUnsafeMutableBufferPointer { g in
                        try weights.withUnsafeMutableBufferPointer { w in
                            for s in 0..<shards {
                                let range = layout.range(ofShard: s)
                                let gs = UnsafeBufferPointer(rebasing: g[range])
                                let ws = UnsafeMutableBufferPointer(rebasing: w[range])
                                switch phase {
                                case 0:
                                    handles.append(try client.push(shard: s, clock: 0, baseVersion: 0, gradient: gs))
                                case 1: handles.append(try client.pull(shard: s, clock: 0, into: ws))
                                default:
                                    handles.append(
                                        try client.pushPull(shard: s, clock: 0, baseVersion: 0, gradient: gs, into: ws))
                                }
                            }
                            for handle in handles { _ = try handle.wait() }
                        }
                    }
                }
            }
            let rate = Double(size) * Double(iterations * clients) / seconds / 1e9
            switch phase {
            case 0: result.push = rate
            case 1: result.pull = rate
            case 2: result.pushPull = rate
            default: result.exchange = rate
            }
        }
        return result
    }

    /// Runs `body` on `count` threads at once; returns the wall time of the slowest.
    static func runClients(_ count: Int, _ body: @escaping @Sendable (Int) throws -> Double) throws -> Double {
        let results = LockedValue<[Result<Double, BenchError>]>([])
        let group = DispatchGroup()
        for index in 0..<count {
            group.enter()
            Thread {
                defer { group.leave() }
                do {
                    let seconds = try body(index)
                    results.withLock { $0.append(.success(seconds)) }
                } catch {
                    results.withLock { $0.append(.failure(BenchError("\(error)"))) }
                }
            }.start()
        }
        group.wait()
        var slowest = 0.0
        for result in results.withLock({ $0 }) { slowest = max(slowest, try result.get()) }
        return slowest
    }

    static func measureLoop(iterations: Int, _ body: () throws -> Void) throws -> Double {
        try body()  // warm-up
        let start = MonotonicClock.nanoseconds()
        for _ in 0..<iterations { try body() }
        return Double(MonotonicClock.nanoseconds() - start) / 1e9
    }

    /// Rounds of interleaved bursts for `smallMessageRows` (the whole `psbench server`, or `--small-messages`).
    static func smallMessageRounds(quick: Bool) -> Int { quick ? 40 : 160 }

    /// The small-message rows: a 4 KiB push's round trip against a raw 64 B ping-pong and against a raw exchange of
    /// the same sizes (4 KiB out, a 64 B answer back: what the kernel must move for a push and its acknowledgement),
    /// and one 4 KiB `exchange` on 1 and 4 shards against a raw 4 KiB echo (as goodput, 4 KiB over the round trip);
    /// medians throughout.
    ///
    /// Each group is measured interleaved, in bursts of 50 round trips over connections kept open, so that all of
    /// it sees the same scheduler state: on a VM whose idle vCPUs halt (cpuidle `haltpoll` with polling off), a
    /// wake-up across vCPUs costs tens of microseconds once the host stops polling, which can happen in the middle
    /// of a run; measuring one side after the other compared two different machines.
    static func smallMessageRows(rounds: Int) throws -> [BenchRow] {
        let burst = 50
        let iterations = 2 * rounds * burst + 10
        let ping = try RawEcho(requestBytes: 64, replyBytes: 64, iterations: iterations)
        let pushSized = try RawEcho(requestBytes: 4096, replyBytes: 64, iterations: iterations)
        let echo = try RawEcho(requestBytes: 4096, replyBytes: 4096, iterations: iterations)
        defer {
            for raw in [ping, pushSized, echo] { raw.close() }
        }
        var rows: [BenchRow] = []
        let push = try SmallMessageTarget(shards: 1)
        var samples = try interleave(
            rounds: rounds, burst: burst, [push.pushRoundTrip, ping.roundTrip, pushSized.roundTrip])
        push.close()
        let pushMedian = median(samples[0]) / 1000
        rows.append(
            BenchRow(
                name: "4 KiB push round trip (median)", value: pushMedian, unit: "us",
                baseline: median(samples[1]) / 1000, baselineName: "raw 64 B ping-pong", lowerIsBetter: true))
        rows.append(
            BenchRow(
                name: "4 KiB push round trip (median), same bytes", value: pushMedian, unit: "us",
                baseline: median(samples[2]) / 1000, baselineName: "raw 4 KiB out, 64 B back", lowerIsBetter: true))
        for shards in [1, 4] {
            let target = try SmallMessageTarget(shards: shards)
            samples = try interleave(rounds: rounds, burst: burst, [target.exchangeRoundTrip, echo.roundTrip])
            target.close()
            let goodput = { (nanos: [UInt64]) in 4096 / median(nanos) }
            rows.append(
                BenchRow(
                    name: "exchange 4 KiB \(shards) shard\(shards == 1 ? "" : "s") 1 client (median round trip)",
                    value: goodput(samples[0]), unit: "GB/s", baseline: goodput(samples[1]),
                    baselineName: "raw 4 KiB echo"))
        }
        return rows
    }

    /// Runs `rounds` rounds of `burst` calls of each body in turn; every call's nanoseconds, per body.
    static func interleave(rounds: Int, burst: Int, _ bodies: [() throws -> Void]) throws -> [[UInt64]] {
        for body in bodies { try body() }  // warm-up
        var samples = [[UInt64]](repeating: [], count: bodies.count)
        for _ in 0..<rounds {
            for (index, body) in bodies.enumerated() {
                for _ in 0..<burst {
                    let start = MonotonicClock.nanoseconds()
                    try body()
                    samples[index].append(MonotonicClock.nanoseconds() - start)
                }
            }
        }
        return samples
    }

    /// A raw TCP exchange over loopback: a thread answers each `requestBytes` it reads with `replyBytes`.
    final class RawEcho {
        let socket: Socket
        let done: DispatchSemaphore
        var request: [UInt8]
        var reply: [UInt8]

        init(requestBytes: Int, replyBytes: Int, iterations: Int) throws {
            let (port, done) = try WireBench.serve { socket in
                var request = [UInt8](repeating: 0, count: requestBytes)
                let reply = [UInt8](repeating: 1, count: replyBytes)
                for _ in 0..<iterations {
                    let ok = request.withUnsafeMutableBytes { bytes in
                        (try? socket.readExactly(into: bytes)) != nil
                            && reply.withUnsafeBytes { (try? socket.writeAll($0)) != nil }
                    }
                    guard ok else { return }
                }
            }
            socket = try Socket.connect(host: "127.0.0.1", port: port, timeout: .seconds(5))
            self.done = done
            request = [UInt8](repeating: 7, count: requestBytes)
            reply = [UInt8](repeating: 0, count: replyBytes)
        }

        func roundTrip() throws {
            try request.withUnsafeBytes { try socket.writeAll($0) }
            try reply.withUnsafeMutableBytes { try socket.readExactly(into: $0) }
        }

        func close() {
            socket.shutdown()
            done.wait()
            socket.close()
        }
    }

    /// An in-process async psserver with one 4 KiB tensor over `shards` shards, and one client connected to it.
    final class SmallMessageTarget {
        let server: ParameterServer
        let client: ParameterClient
        let shards: Int
        let gradient = [Float](repeating: 0, count: 1024)
        var weights = [Float](repeating: 0, count: 1024)

        init(shards: Int) throws {
            server = try ParameterServer(
                config: benchConfig(shards: shards), log: Logger(component: "bench", minimumLevel: .error))
            server.start()
            do {
                client = try ParameterClient.connect(
                    host: "127.0.0.1", port: server.port, role: .worker, name: "latency")
                _ = try client.register([TensorSpec(name: "w", shape: [1024], initializer: .zeros)])
            } catch {
                server.stop(exitCode: 0, reason: "bench failed")
                throw error
            }
            self.shards = shards
        }

        /// A push of the whole tensor (one shard's worth with one shard), waited for.
        func pushRoundTrip() throws {
            _ = try gradient.withUnsafeBufferPointer {
                try client.push(shard: 0, clock: 0, baseVersion: 0, gradient: $0).wait()
            }
        }

        /// One step's exchange of every shard's slice, waited for.
        func exchangeRoundTrip() throws {
            let versions = [UInt64](repeating: 0, count: shards)
            try gradient.withUnsafeBufferPointer { g in
                try weights.withUnsafeMutableBufferPointer { w in
                    _ = try client.exchange(
                        rank: 0, clock: 0, loss: 0, samples: 0, baseVersions: versions, gradient: g, into: w
                    ).wait()
                }
            }
        }

        func close() {
            client.close()
            server.stop(exitCode: 0, reason: "bench done")
        }
    }

    /// The best of several applies of `kind` to `bytes` of gradient and, alternated with them, the best of as many
    /// memcpys of the same bytes (so both see the same background load), as bytes of gradient per second.
    ///
    /// Also, alternated in the same loop, the server's push path with `--allow-nonfinite` off, without and with the
    /// check that the update keeps every weight finite: `validated` is the gradient's NaN/Inf pass then the apply,
    /// `checked` the same pass also taking the gradient's largest |g|, the O(1) `MagnitudeBounds` proof, then the
    /// apply (what the server does now). `portable` is the same fused loop run as the Swift loop
    /// (`FusedUpdate.VectorPath.portable`) where the CPU has AVX2 and `apply` runs the AVX2 loop; nil otherwise.
    /// `traffic` (nil for SGD) is a pass that moves the bytes the fused update must (`runTrafficPass`).
    static func applyRate(
        kind: OptimizerKind, bytes: Int
    ) -> (apply: Double, memcpy: Double, validated: Double, checked: Double, portable: Double?, traffic: Double?) {
        let count = bytes / 4
        let config = OptimizerConfig(kind: kind, learningRate: 1e-6)
        var state = OptimizerState(config: config, count: count)
        var weights = [Float](repeating: 0.5, count: count)
        var gradient = [Float](repeating: 0.1, count: count)
        var copy = [Float](repeating: 0, count: count)
        var bounds = weights.withUnsafeBufferPointer { MagnitudeBounds.measure(weights: $0, state: state) }
        var best = (apply: Double.infinity, copy: Double.infinity, validated: Double.infinity, checked: Double.infinity)
        var refused = 0
        let comparesPaths = kind != .sgd && FusedUpdate.VectorPath.fastest == .avx2
        var bestPortable = Double.infinity
        var bestTraffic = Double.infinity
        var first = [Float](repeating: 0, count: kind == .sgd ? 0 : count)
        var second = first
        for _ in 0..<7 {
            if kind != .sgd {
                let start = MonotonicClock.nanoseconds()
                runTrafficPass(kind: kind, weights: &copy, gradient: gradient, first: &first, second: &second)
                bestTraffic = min(bestTraffic, Double(MonotonicClock.nanoseconds() - start))
            }
            if comparesPaths {
                let start = MonotonicClock.nanoseconds()
                // On the memcpy destination, not the weights: the bounds below track the weights' magnitude.
                runPortableLoop(
                    kind: kind, config: config, weights: &copy, gradient: gradient, first: &first, second: &second)
                bestPortable = min(bestPortable, Double(MonotonicClock.nanoseconds() - start))
            }
            var start = MonotonicClock.nanoseconds()
            weights.withUnsafeMutableBufferPointer { w in
                gradient.withUnsafeMutableBufferPointer { g in state.apply(weights: w, gradient: g) }
            }
            best.apply = min(best.apply, Double(MonotonicClock.nanoseconds() - start))
            start = MonotonicClock.nanoseconds()
            copy.withUnsafeMutableBufferPointer { destination in
                gradient.withUnsafeBufferPointer { _ = destination.update(fromContentsOf: $0) }
            }
            best.copy = min(best.copy, Double(MonotonicClock.nanoseconds() - start))
            start = MonotonicClock.nanoseconds()
            gradient.withUnsafeMutableBufferPointer { g in
                // The gradient's NaN/Inf pass alone (the same vectorised scan, without the maximum).
                if MagnitudeBounds.allFinite(UnsafeBufferPointer(g)) {
                    weights.withUnsafeMutableBufferPointer { w in state.apply(weights: w, gradient: g) }
                }
            }
            best.validated = min(best.validated, Double(MonotonicClock.nanoseconds() - start))
            start = MonotonicClock.nanoseconds()
            gradient.withUnsafeMutableBufferPointer { g in
                let largest = MagnitudeBounds.maxMagnitude(UnsafeBufferPointer(g))
                if largest.isFinite, let next = bounds.afterUpdate(config: config, gradient: largest, lrScale: 1) {
                    weights.withUnsafeMutableBufferPointer { w in state.apply(weights: w, gradient: g) }
                    bounds = next
                } else {
                    refused += 1
                }
            }
            best.checked = min(best.checked, Double(MonotonicClock.nanoseconds() - start))
        }
        precondition(refused == 0, "the benchmark's updates are finite; the bounds must prove it")
        let rate = { (nanos: Double) in Double(bytes) / nanos }
        return (
            rate(best.apply), rate(best.copy), rate(best.validated), rate(best.checked),
            comparesPaths ? rate(bestPortable) : nil, kind == .sgd ? nil : rate(bestTraffic)
        )
    }

    /// A pass with the memory traffic of `kind`'s fused update and next to no arithmetic: it reads the gradient,
    /// the weights and each state slot and writes the weights and each slot back (Adam: 4 streams in, 3 out;
    /// momentum and AdaGrad: 3 in, 2 out). Its rate is what the update could reach if memory alone bound it.
    private static func runTrafficPass(
        kind: OptimizerKind, weights: inout [Float], gradient: [Float], first: inout [Float], second: inout [Float]
    ) {
        let count = weights.count
        weights.withUnsafeMutableBufferPointer { w in
            gradient.withUnsafeBufferPointer { g in
                first.withUnsafeMutableBufferPointer { a in
                    second.withUnsafeMutableBufferPointer { b in
                        if kind == .adam {
                            for i in 0..<count {
                                let gi = g[i]
                                w[i] += gi
                                a[i] += gi
                                b[i] += gi
                            }
                        } else {
                            for i in 0..<count {
                                let gi = g[i]
                                w[i] += gi
                                a[i] += gi
                            }
                        }
                    }
                }
            }
        }
    }

    /// One step of `kind`'s fused loop through the Swift loop (`VectorPath.portable`), with Adam's step-1 bias
    /// corrections; the bench only times it.
    private static func runPortableLoop(
        kind: OptimizerKind, config: OptimizerConfig, weights: inout [Float], gradient: [Float], first: inout [Float],
        second: inout [Float]
    ) {
        let prelude = FusedUpdate.Prelude(config: config)
        let count = weights.count
        weights.withUnsafeMutableBufferPointer { w in
            gradient.withUnsafeBufferPointer { g in
                first.withUnsafeMutableBufferPointer { a in
                    second.withUnsafeMutableBufferPointer { b in
                        let (w, g, a, b) = (w.baseAddress!, g.baseAddress!, a.baseAddress!, b.baseAddress!)
                        switch kind {
                        case .sgd:
                            break
                        case .momentum:
                            FusedUpdate.momentum(
                                w: w, g: g, v: a, count: count, prelude: prelude, lr: config.learningRate,
                                mu: config.momentum, nesterov: config.nesterov, path: .portable)
                        case .adam:
                            FusedUpdate.adam(
                                w: w, g: g, m: a, v: b, count: count, prelude: prelude, beta1: config.beta1,
                                beta2: config.beta2, stepSize: config.learningRate / (1 - config.beta1),
                                inverseRootCorrection2: 1 / (1 - config.beta2).squareRoot(), epsilon: config.epsilon,
                                path: .portable)
                        case .adagrad:
                            FusedUpdate.adagrad(
                                w: w, g: g, s: a, count: count, prelude: prelude, lr: config.learningRate,
                                epsilon: config.epsilon, path: .portable)
                        }
                    }
                }
            }
        }
    }
}
