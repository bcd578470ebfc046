import Foundation
import PSPosix
import PSSecurity
import PSTransport
import PSWire

/// `psbench wire`: framed PSWire traffic against plain send/recv loops of the same sizes, in one run.
enum WireBench {
    static let sizes = [4 << 10, 256 << 10, 4 << 20, 64 << 20]

    static func run(quick: Bool) throws -> [BenchRow] {
        var rows: [BenchRow] = []
        for size in sizes {
            let iterations = iterationsFor(size, quick: quick)
            let rawOne = try rawStream(size: size, iterations: iterations, echo: false)
            let framedOne = try framedStream(size: size, iterations: iterations, echo: false)
            rows.append(
                BenchRow(
                    name: "one-way \(formatBytes(size))", value: framedOne, unit: "GB/s", baseline: rawOne,
                    baselineName: "raw send/recv"))
            let rawEcho = try rawStream(size: size, iterations: max(iterations / 2, 2), echo: true)
            let framedEcho = try framedStream(size: size, iterations: max(iterations / 2, 2), echo: true)
            rows.append(
                BenchRow(
                    name: "echo \(formatBytes(size))", value: framedEcho, unit: "GB/s", baseline: rawEcho,
                    baselineName: "raw echo"))
        }
        // Latency is sensitive to where the scheduler puts the two threads: alternate the two measurements over
        // several rounds and keep each one's best median.
        let pings = quick ? 1000 : 5000
        var rawRTT = Double.infinity
        var framedRTT = Double.infinity
        for _ in 0..<5 {
            rawRTT = min(rawRTT, try rawPingPong(iterations: pings))
            framedRTT = min(framedRTT, try framedPingPong(iterations: pings))
        }
        rows.append(
            BenchRow(
                name: "64 B round trip (median)", value: framedRTT, unit: "us", baseline: rawRTT,
                baselineName: "raw 64 B ping-pong", lowerIsBetter: true))
        rows += try tlsRows(quick: quick)
        return rows
    }

    /// TLS (a self-signed P-256 certificate, the cipher suite OpenSSL negotiates: TLS 1.3, AES-256-GCM on this
    /// hardware) against the same framed traffic over plain TCP, measured back to back in this run.
    static func tlsRows(quick: Bool) throws -> [BenchRow] {
        let tls = try TLSContext.selfSignedPair()
        var rows: [BenchRow] = []
        for size in [256 << 10, 4 << 20] {
            let iterations = iterationsFor(size, quick: quick)
            let plainOne = try framedStream(size: size, iterations: iterations, echo: false)
            let tlsOne = try framedStream(size: size, iterations: iterations, echo: false, tls: tls)
            rows.append(
                BenchRow(
                    name: "TLS one-way \(formatBytes(size))", value: tlsOne, unit: "GB/s", baseline: plainOne,
                    baselineName: "framed, plain TCP"))
            let plainEcho = try framedStream(size: size, iterations: max(iterations / 2, 2), echo: true)
            let tlsEcho = try framedStream(size: size, iterations: max(iterations / 2, 2), echo: true, tls: tls)
            rows.append(
                BenchRow(
                    name: "TLS echo \(formatBytes(size))", value: tlsEcho, unit: "GB/s", baseline: plainEcho,
                    baselineName: "framed, plain TCP"))
        }
        let pings = quick ? 1000 : 5000
        var plainRTT = Double.infinity
        var tlsRTT = Double.infinity
        for _ in 0..<5 {
            plainRTT = min(plainRTT, try framedPingPong(iterations: pings))
            tlsRTT = min(tlsRTT, try framedPingPong(iterations: pings, tls: tls))
        }
        rows.append(
            BenchRow(
                name: "TLS 64 B round trip (median)", value: tlsRTT, unit: "us", baseline: plainRTT,
                baselineName: "framed, plain TCP", lowerIsBetter: true))
        var plainConnect = Double.infinity
        var tlsConnect = Double.infinity
        for _ in 0..<5 {
            plainConnect = min(plainConnect, try connectTime(tls: nil, count: quick ? 20 : 100))
            tlsConnect = min(tlsConnect, try connectTime(tls: tls, count: quick ? 20 : 100))
        }
        rows.append(
            BenchRow(
                name: "TLS connect + first round trip (median)", value: tlsConnect, unit: "us",
                baseline: plainConnect, baselineName: "plain TCP", lowerIsBetter: true))
        return rows
    }

    /// The median time to connect, send one small frame and read the answer (the TLS handshake included).
    static func connectTime(tls: (server: TLSContext, client: TLSContext)?, count: Int) throws -> Double {
        let listener = try Socket.listen(host: "127.0.0.1", port: 0)
        let port = try listener.localPort()
        let done = DispatchSemaphore(value: 0)
        Thread {
            defer { done.signal() }
            for _ in 0..<count {
                guard let (accepted, _) = try? listener.accept() else { return }
                guard let socket = tls == nil ? accepted : try? tls?.server.secure(accepted) else {
                    accepted.close()
                    continue
                }
                let connection = FramedConnection(socket: socket, peer: "bench")
                if let (header, _) = try? connection.readMessage() {
                    try? connection.send(.metricsAck, requestID: header.requestID)
                }
                _ = try? connection.readHeader()  // until the client closes
                connection.close()
            }
            listener.close()
        }.start()
        var samples: [UInt64] = []
        for _ in 0..<count {
            let start = MonotonicClock.nanoseconds()
            let connection = try FramedConnection.connect(
                host: "127.0.0.1", port: port, timeout: .seconds(5), tls: tls?.client)
            try connection.send(.status(StatusRequest()), requestID: 1)
            _ = try connection.readMessage()
            samples.append(MonotonicClock.nanoseconds() - start)
            connection.close()
        }
        done.wait()
        return median(samples) / 1000
    }

    static func iterationsFor(_ size: Int, quick: Bool) -> Int {
        let target = quick ? 256 << 20 : 2 << 30
        return max(4, min(20000, target / size))
    }

    /// A loopback listener whose single connection is served by `body` on its own thread.
    static func serve(_ body: @escaping @Sendable (Socket) -> Void) throws -> (port: UInt16, done: DispatchSemaphore) {
        let listener = try Socket.listen(host: "127.0.0.1", port: 0)
        let port = try listener.localPort()
        let done = DispatchSemaphore(value: 0)
        Thread {
            defer { done.signal() }
            guard let (socket, _) = try? listener.accept() else { return }
            listener.close()
            body(socket)
            socket.close()
        }.start()
        return (port, done)
    }

    static func rawStream(size: Int, iterations: Int, echo: Bool) throws -> Double {
        let (port, done) = try serve { socket in
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 16)
            defer { buffer.deallocate() }
            for _ in 0..<iterations {
                guard (try? socket.readExactly(into: buffer)) != nil else { return }
                if echo { try? socket.writeAll(UnsafeRawBufferPointer(buffer)) }
            }
            if !echo { try? socket.writeAll(UnsafeRawBufferPointer(rebasing: buffer[0..<1])) }
        }
        let socket = try Socket.connect(host: "127.0.0.1", port: port, timeout: .seconds(5))
        defer { socket.close() }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 16)
        defer { buffer.deallocate() }
        buffer.initializeMemory(as: UInt8.self, repeating: 1)
        let start = MonotonicClock.nanoseconds()
        for _ in 0..<iterations {
            try socket.writeAll(UnsafeRawBufferPointer(buffer))
            if echo { try socket.readExactly(into: buffer) }
        }
        if !echo { try socket.readExactly(into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<1])) }
        let seconds = Double(MonotonicClock.nanoseconds() - start) / 1e9
        done.wait()
        return Double(size) * Double(iterations) / seconds / 1e9
    }

    static func framedStream(
        size: Int, iterations: Int, echo: Bool, tls: (server: TLSContext, client: TLSContext)? = nil
    ) throws -> Double {
        let count = size / 4
        let serverTLS = tls?.server
        let (port, done) = try serve { socket in
            guard let socket = serverTLS == nil ? socket : try? serverTLS?.secure(socket) else { return }
            let connection = FramedConnection(socket: socket, peer: "bench")
            var floats = [Float](repeating: 0, count: count)
            for _ in 0..<iterations {
                guard let header = try? connection.readHeader(),
                    let prefixBytes = try? connection.readPayload(length: PushPrefix.size),
                    let prefix = try? PushPrefix.decode(prefixBytes)
                else { return }
                let ok = floats.withUnsafeMutableBytes { destination in
                    (try? connection.readPayload(into: destination)) != nil
                }
                guard ok else { return }
                if echo {
                    let reply = PullReplyPrefix(shard: prefix.shard, count: prefix.count, version: 1)
                    _ = floats.withUnsafeBufferPointer {
                        try? connection.sendPullReply(prefix: reply, floats: $0, requestID: header.requestID)
                    }
                }
            }
            if !echo { try? connection.send(.metricsAck, requestID: 0) }
        }
        let connection = try FramedConnection.connect(
            host: "127.0.0.1", port: port, timeout: .seconds(5), tls: tls?.client)
        defer { connection.close() }
        var floats = [Float](repeating: 1, count: count)
        let start = MonotonicClock.nanoseconds()
        for i in 0..<iterations {
            let prefix = PushPrefix(shard: 0, count: UInt32(count), clock: UInt64(i), baseVersion: 0)
            try floats.withUnsafeBufferPointer {
                try connection.sendPush(.push, prefix: prefix, floats: $0, requestID: UInt64(i))
            }
            if echo {
                guard try connection.readHeader() != nil else { throw BenchError("echo server closed") }
                _ = try connection.readPayload(length: PullReplyPrefix.size)
                try floats.withUnsafeMutableBytes { try connection.readPayload(into: $0) }
            }
        }
        if !echo { _ = try connection.readMessage() }
        let seconds = Double(MonotonicClock.nanoseconds() - start) / 1e9
        done.wait()
        return Double(size) * Double(iterations) / seconds / 1e9
    }

    static func rawPingPong(iterations: Int) throws -> Double {
        let (port, done) = try serve { socket in
            var buffer = [UInt8](repeating: 0, count: 64)
            for _ in 0..<iterations {
                let ok = buffer.withUnsafeMutableBytes { bytes in
                    (try? socket.readExactly(into: bytes)) != nil
                        && (try? socket.writeAll(UnsafeRawBufferPointer(bytes))) != nil
                }
                guard ok else { return }
            }
        }
        let socket = try Socket.connect(host: "127.0.0.1", port: port, timeout: .seconds(5))
        defer { socket.close() }
        var buffer = [UInt8](repeating: 7, count: 64)
        var samples: [UInt64] = []
        samples.reserveCapacity(iterations)
        for _ in 0..<iterations {
            let start = MonotonicClock.nanoseconds()
            try buffer.withUnsafeMutableBytes { bytes in
                try socket.writeAll(UnsafeRawBufferPointer(bytes))
                try socket.readExactly(into: bytes)
            }
            samples.append(MonotonicClock.nanoseconds() - start)
        }
        done.wait()
        return median(samples) / 1000
    }

    /// A push of 10 floats (64-byte payload) answered by a push acknowledgement, as a worker would see it.
    static func framedPingPong(
        iterations: Int, tls: (server: TLSContext, client: TLSContext)? = nil
    ) throws -> Double {
        let serverTLS = tls?.server
        let (port, done) = try serve { socket in
            guard let socket = serverTLS == nil ? socket : try? serverTLS?.secure(socket) else { return }
            let connection = FramedConnection(socket: socket, peer: "bench")
            var floats = [Float](repeating: 0, count: 10)
            for _ in 0..<iterations {
                guard let header = try? connection.readHeader(),
                    let prefixBytes = try? connection.readPayload(length: PushPrefix.size),
                    let prefix = try? PushPrefix.decode(prefixBytes)
                else { return }
                let ok = floats.withUnsafeMutableBytes { (try? connection.readPayload(into: $0)) != nil }
                guard ok else { return }
                let ack = PushAck(shard: prefix.shard, status: .applied, version: 1, staleness: 0)
                guard (try? connection.send(.pushAck(ack), requestID: header.requestID)) != nil else { return }
            }
        }
        let connection = try FramedConnection.connect(
            host: "127.0.0.1", port: port, timeout: .seconds(5), tls: tls?.client)
        defer { connection.close() }
        let floats = [Float](repeating: 1, count: 10)
        var samples: [UInt64] = []
        samples.reserveCapacity(iterations)
        for i in 0..<iterations {
            let start = MonotonicClock.nanoseconds()
            let prefix = PushPrefix(shard: 0, count: 10, clock: UInt64(i), baseVersion: 0)
            try floats.withUnsafeBufferPointer {
                try connection.sendPush(.push, prefix: prefix, floats: $0, requestID: UInt64(i))
            }
            guard let header = try connection.readHeader() else { throw BenchError("ping server closed") }
            _ = try connection.readPayload(length: Int(header.payloadLength))
            samples.append(MonotonicClock.nanoseconds() - start)
        }
        done.wait()
        return median(samples) / 1000
    }
}

/// One line of a benchmark table: a figure next to the baseline measured in the same run.
struct BenchRow {
    let name: String
    let value: Double
    let unit: String
    let baseline: Double
    let baselineName: String
    var lowerIsBetter = false

    /// value / baseline (for times: how many times the baseline's time).
    var ratio: Double { baseline > 0 ? value / baseline : .nan }
}

struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// The median of `values` (the mean of the middle two for an even count); nan for none.
func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    guard !sorted.isEmpty else { return .nan }
    let middle = sorted.count / 2
    return sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
}

/// The median of timing samples in nanoseconds (`median(_:)` of their values).
func median(_ samples: [UInt64]) -> Double {
    median(samples.map(Double.init))
}

func formatBytes(_ bytes: Int) -> String {
    if bytes >= 1 << 20 { return "\(bytes >> 20) MiB" }
    if bytes >= 1 << 10 { return "\(bytes >> 10) KiB" }
    return "\(bytes) B"
}

/// Prints rows as a Markdown table (ready for the README).
func printTable(_ title: String, _ rows: [BenchRow]) {
    print("\n### \(title)\n")
    print("| measurement | SwiftPS | baseline (same run) | ratio |")
    print("|---|---|---|---|")
    for row in rows {
        let value = String(format: "%.3f %@", row.value, row.unit)
        let baseline = String(format: "%.3f %@ (%@)", row.baseline, row.unit, row.baselineName)
        let ratio = String(format: "%.2fx", row.ratio)
        print("| \(row.name) | \(value) | \(baseline) | \(ratio) |")
    }
    fflush(nil)
}
