import Foundation
import PSPosix
import Synchronization  // Atomic

/// The limits that keep an HTTP client from making the server spend memory, threads or time.
public struct HTTPServerLimits: Sendable {
    /// Connections served at once (default 16). At the limit, a new connection evicts the oldest one still
    /// sending its request head (so idle clients cannot starve a scraper); with none to evict, or with as many
    /// evicted connections still winding down, it is closed at once.
    public var maxConnections: Int = 16
    /// Largest request head (default 8 KiB); a larger one gets `400` and the connection closes.
    public var maxHeadBytes: Int = 8192
    /// Most header fields (default 64).
    public var maxHeaders: Int = 64
    /// The whole request head must arrive within this many seconds of the accept (default 5): an idle client or
    /// one that drips bytes is closed.
    public var requestTimeoutSeconds: Double = 5
    /// A response write blocked longer than this (a client that never reads) closes the connection (default 5).
    public var writeTimeoutSeconds: Double = 5

    public init() {}
}

/// A small HTTP/1.1 server for the observability endpoints: its own listener, its own accept thread and one
/// short-lived thread per connection (at most ``HTTPServerLimits/maxConnections``), one request per connection.
///
/// It answers GET and HEAD through the handler, anything else with `405`, a malformed or oversized head with
/// `400`. It never shares a lock or a thread with the caller's data path: a handler runs on the connection's
/// thread and must itself be quick and non-blocking (build the page from copies and atomics).
public final class HTTPServer: Sendable {
    public typealias Handler = @Sendable (HTTPRequest) -> HTTPResponse

    public let limits: HTTPServerLimits
    /// The port actually bound (useful with port 0).
    public let port: UInt16
    private let listener: Socket
    private let open = LockedValue<[UInt64: OpenConnection]>([:])

    private struct OpenConnection {
        let socket: Socket
        /// Whether the request head arrived (the connection is being answered and cannot be evicted).
        var answering = false
        var evicted = false
    }
    private let nextID = Atomic<UInt64>(1)
    private let stopped = Atomic<Bool>(false)
    /// Requests answered, connections refused for the limit, and heads refused as malformed or too slow.
    public let served = Atomic<UInt64>(0)
    public let refused = Atomic<UInt64>(0)
    public let rejected = Atomic<UInt64>(0)
    /// Connections still sending their head that a newer connection evicted at the limit.
    public let evicted = Atomic<UInt64>(0)

    /// Binds `host:port` (port 0 picks a free port); call ``start()`` to serve.
    public init(host: String, port: UInt16, limits: HTTPServerLimits = HTTPServerLimits()) throws(SocketError) {
        self.limits = limits
        listener = try Socket.listen(host: host, port: port, backlog: 128)
        do {
            self.port = try listener.localPort()
        } catch {
            listener.close()
            throw error
        }
    }

    /// Connections open right now (evicted ones included until their thread closes them).
    public var openConnections: Int { open.withLock { $0.count } }

    /// Starts the accept thread, which answers every request with `handler`, and returns.
    public func start(_ handler: @escaping Handler) {
        let thread = Thread { [self] in acceptLoop(handler) }
        thread.name = "http-accept"
        thread.stackSize = 256 << 10
        thread.start()
    }

    /// Stops accepting and shuts every open connection down; their threads finish on their own.
    public func stop() {
        guard !stopped.exchange(true, ordering: .acquiringAndReleasing) else { return }
        listener.shutdown()
        for connection in open.withLock({ Array($0.values) }) { connection.socket.shutdown() }
    }

    private func acceptLoop(_ handler: @escaping Handler) {
        defer { listener.close() }
        while !stopped.load(ordering: .acquiring) {
            let socket: Socket
            do {
                socket = try listener.accept().socket
            } catch {
                if stopped.load(ordering: .acquiring) { return }
                Thread.sleep(forTimeInterval: 0.01)  // EMFILE and friends: do not spin
                continue
            }
            let id = nextID.wrappingAdd(1, ordering: .relaxed).oldValue
            let (admitted, evict) = open.withLock { open in admit(id, socket, &open) }
            evict?.shutdown()  // its thread wakes from the read and closes it
            guard admitted else {
                refused.wrappingAdd(1, ordering: .relaxed)
                socket.close()
                continue
            }
            let thread = Thread { [self] in
                serve(id, socket, handler)
                open.withLock { _ = $0.removeValue(forKey: id) }
                socket.close()
            }
            thread.name = "http-conn-\(id)"
            thread.stackSize = 256 << 10
            thread.start()
        }
    }

    /// Admits connection `id` within the limit, evicting the oldest connection still reading its head if needed;
    /// returns whether it was admitted and the socket to shut down (after the lock is released).
    private func admit(_ id: UInt64, _ socket: Socket, _ open: inout [UInt64: OpenConnection]) -> (Bool, Socket?) {
        let active = open.values.filter { !$0.evicted }.count
        if active < limits.maxConnections {
            open[id] = OpenConnection(socket: socket)
            return (true, nil)
        }
        guard open.count < 2 * limits.maxConnections,
            let oldest = open.filter({ !$0.value.answering && !$0.value.evicted }).keys.min()
        else { return (false, nil) }
        open[oldest]?.evicted = true
        open[id] = OpenConnection(socket: socket)
        evicted.wrappingAdd(1, ordering: .relaxed)
        return (true, open[oldest]?.socket)
    }

    /// Reads one request head within the deadline, answers it, returns (the caller closes).
    private func serve(_ id: UInt64, _ socket: Socket, _ handler: Handler) {
        let deadline = MonotonicClock.deadline(afterSeconds: limits.requestTimeoutSeconds)
        var parser = HTTPRequestParser(maxHeadBytes: limits.maxHeadBytes, maxHeaders: limits.maxHeaders)
        var buffer = [UInt8](repeating: 0, count: 2048)
        try? socket.setSendTimeout(.milliseconds(Int64(limits.writeTimeoutSeconds * 1000)))
        while true {
            let now = MonotonicClock.nanoseconds()
            guard now < deadline else {
                rejected.wrappingAdd(1, ordering: .relaxed)
                write(.error(408, "Request Timeout", "the request head did not arrive in time"), to: socket)
                return
            }
            do {
                try socket.setReceiveTimeout(.nanoseconds(Int64(deadline - now)))
                let count = try buffer.withUnsafeMutableBytes { try socket.receive(into: $0) }
                if count == 0 { return }
                if let request = try parser.feed(buffer[0..<count]) {
                    let evicted = open.withLock { open in
                        open[id]?.answering = true
                        return open[id]?.evicted ?? true
                    }
                    if evicted { return }
                    served.wrappingAdd(1, ordering: .relaxed)
                    respond(to: request, on: socket, handler)
                    return
                }
            } catch let error as HTTPParseError {
                rejected.wrappingAdd(1, ordering: .relaxed)
                write(.badRequest(error.description), to: socket)
                drain(socket, buffer: &buffer)
                return
            } catch SocketError.timedOut {
                continue  // the deadline check above answers 408
            } catch {
                return  // reset or closed: nothing to answer
            }
        }
    }

    /// After an error reply to a client still sending: ends our side, then reads and discards what it sends for
    /// a moment (at most 1 s and 1 MiB), so closing with unread bytes does not reset the reply away.
    private func drain(_ socket: Socket, buffer: inout [UInt8]) {
        socket.shutdownSend()
        let deadline = MonotonicClock.deadline(afterSeconds: 1)
        var discarded = 0
        while discarded < 1 << 20 {
            let now = MonotonicClock.nanoseconds()
            guard now < deadline, (try? socket.setReceiveTimeout(.nanoseconds(Int64(deadline - now)))) != nil,
                let count = try? buffer.withUnsafeMutableBytes({ try socket.receive(into: $0) }), count > 0
            else { return }
            discarded += count
        }
    }

    private func respond(to request: HTTPRequest, on socket: Socket, _ handler: Handler) {
        switch request.method {
        case "GET":
            write(handler(request), to: socket)
        case "HEAD":
            write(handler(request), to: socket, includeBody: false)
        default:
            write(.methodNotAllowed(request.method), to: socket)
        }
    }

    private func write(_ response: HTTPResponse, to socket: Socket, includeBody: Bool = true) {
        let bytes = response.serialized(includeBody: includeBody)
        do {
            try bytes.withUnsafeBytes { try socket.writeAll($0) }
        } catch {
            // The client left or stopped reading (the send timeout): nothing more to do.
        }
    }
}
