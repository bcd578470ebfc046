import Foundation
import PSPosix
import PSSecurity
import PSTransport
import PSWire
import Synchronization

/// A connection to a SwiftPS server: handshake, tensor registration, and push / pull / push-pull requests that
/// return a handle to wait on, so a caller can put requests to every shard in flight before waiting on any
/// (ps-lite's `ZPush`/`ZPull`/`Wait`).
///
/// Replies are matched to requests by request id. A caller in `wait` reads the socket itself (so a reply needs no
/// hand-off between threads), completing any other request's reply it meets on the way. A reply nobody waits for
/// yet stays in the socket until somebody does, unless it is read in the background by the connection's reader
/// thread: when another request is sent on the same connection while it is pending (so that big replies nobody
/// reads cannot stall the server and, with it, that send), or when its handle asks for `readInBackground()` (what
/// `RequestHandle.waitAll` does for the connections it waits on later). While no such request is pending the reader thread sleeps until the peer hangs up, without waking for
/// replies, so the connection's failure is still seen when nobody waits. A pull reply's floats are read straight
/// into the destination the caller passed to `pull`, which must stay valid until the handle's `wait` returns.
///
/// ```swift
/// let client = try ParameterClient.connect(host: "127.0.0.1", port: 7000, role: .worker, name: "w0")
/// defer { client.close() }
/// let pulled = try weights.withUnsafeMutableBufferPointer { flat in
///     try client.pull(shard: 0, clock: 0, into: UnsafeMutableBufferPointer(rebasing: flat[range])).wait()
/// }
/// ```
public final class ParameterClient: Sendable {
    /// What the server answered to the handshake.
    public let welcome: Welcome
    /// The decoded welcome config (job, start step, shard count, tensors).
    public let config: WelcomeConfig
    /// The worker's rank, or nil for store clients and control tools.
    public var rank: Int? { welcome.rank >= 0 ? Int(welcome.rank) : nil }

    let connection: FramedConnection
    /// The requests in flight and, under the same lock, every request's result (`PendingRequest.result`): one
    /// lock per connection instead of one per request, whose waiters sleep on its condition.
    let pending = LockedValue(RequestTable())
    let nextRequestID = Atomic<UInt64>(1)
    let failure = LockedValue<TransportError?>(nil)
    /// Set by the reader thread as it ends, after it has released the descriptor.
    let readerDone = LockedValue(false)
    /// The read token: true while one thread (the reader thread, or a caller waiting for its reply) reads
    /// frames from the socket. Taking and releasing it orders those reads for ThreadSanitizer; the reader
    /// thread keeps it when it ends, so nothing reads the descriptor after it is released.
    let readToken = LockedValue(false)
    /// How long `wait` waits for a reply by default before it declares the connection broken.
    public let requestTimeout: Duration
    /// Wakes the reader thread from its idle watch: a request wants its reply read in the background, or the
    /// client closes. Closed by `deinit`, when no thread can use it any more.
    let wake: WakePipe
    /// The socket's receive timeout once connected: how often a blocked read checks its wait's deadline.
    static let readTick = Duration.milliseconds(100)

    /// Connects, sends hello and waits for welcome (or throws the server's reason for refusing).
    public static func connect(
        host: String, port: UInt16, role: Role = .worker, name: String, token: String? = nil,
        connectTimeout: Duration = .seconds(10), requestTimeout: Duration = .seconds(120),
        maxPayloadBytes: Int = WireProtocol.defaultMaxPayloadBytes, tls: TLSContext? = nil
    ) throws(ClientError) -> ParameterClient {
        let connection: FramedConnection
        do throws(SocketError) {
            connection = try FramedConnection.connect(
                host: host, port: port, timeout: connectTimeout, maxPayloadBytes: maxPayloadBytes, tls: tls)
        } catch {
            throw .connect("\(error)")
        }
        do {
            try connection.setReceiveTimeout(connectTimeout)
            let hello = Hello(role: role, maxVersion: WireProtocol.version, name: name)
            guard let reply = try connection.handshake(hello, token: token) else {
                throw ClientError.connect("\(host):\(port) closed the connection during the handshake")
            }
            try connection.setReceiveTimeout(readTick)
            switch reply {
            case .welcome(let welcome):
                let config: WelcomeConfig
                do {
                    config = try JSONDecoder().decode(WelcomeConfig.self, from: Data(welcome.config.utf8))
                } catch {
                    throw ClientError.protocolViolation("unreadable welcome config: \(error)")
                }
                let wake: WakePipe
                do throws(SocketError) {
                    wake = try WakePipe()
                } catch {
                    throw ClientError.connect("cannot create the reader's wake pipe: \(error)")
                }
                return ParameterClient(
                    connection: connection, welcome: welcome, config: config, requestTimeout: requestTimeout,
                    wake: wake)
            case .reject(let reject):
                connection.close()
                throw ClientError.rejected(code: reject.code, reason: reject.reason)
            case .error(let error):
                connection.close()
                throw ClientError.rejected(code: error.code, reason: error.message)
            default:
                connection.close()
                throw ClientError.protocolViolation("expected welcome, got \(reply.type.name)")
            }
        } catch let error as ClientError {
            connection.close()
            throw error
        } catch {
            connection.close()
            throw .connect("handshake with \(host):\(port) failed: \(error)")
        }
    }

    init(
        connection: FramedConnection, welcome: Welcome, config: WelcomeConfig, requestTimeout: Duration,
        wake: WakePipe
    ) {
        self.connection = connection
        self.welcome = welcome
        self.config = config
        self.requestTimeout = requestTimeout
        self.wake = wake
        let thread = Thread { [self] in readLoop() }
        thread.name = "psclient-reader"
        thread.start()
    }

    deinit {
        connection.close()
        wake.close()
    }

    /// Closes the connection and waits for the reader thread to end; pending requests fail.
    ///
    /// The reader thread releases the descriptor when it stops: closed earlier, its number could be reused by the
    /// next connection this process opens and the old reader would steal that connection's bytes. The wait is
    /// bounded (30 s) only against a bug: the reader releases the descriptor itself whenever it ends.
    public func close() {
        connection.shutdown()
        wake.signal()
        waitForReader()
    }

    /// Whether the connection has failed or been closed.
    public var isBroken: Bool { failure.withLock { $0 != nil } || connection.isClosed }

    // MARK: Requests

    /// Registers tensors (idempotent for the same names and shapes) and returns the server's layout summary.
    public func register(_ tensors: [TensorSpec]) throws(ClientError) -> Registered {
        let reply = try request(.register(Register(tensors: tensors))).wait()
        guard case .message(.registered(let registered)) = reply else {
            throw .protocolViolation("expected registered, got \(reply)")
        }
        return registered
    }

    /// Sends a control message and returns the handle of its reply.
    public func request(_ message: Message) throws(ClientError) -> RequestHandle {
        let request = PendingRequest(destination: nil)
        let id = try enqueue(request)
        do {
            try connection.send(message, requestID: id)
        } catch {
            throw fail(id, error)
        }
        return RequestHandle(client: self, request: request)
    }

    /// Pushes a gradient for one shard; `gradient` is only read during this call (one `writev`).
    public func push(
        shard: Int, clock: UInt64, baseVersion: UInt64, gradient: UnsafeBufferPointer<Float>
    ) throws(ClientError) -> RequestHandle {
        let request = PendingRequest(destination: nil)
        let id = try enqueue(request)
        let prefix = PushPrefix(
            shard: UInt32(shard), count: UInt32(gradient.count), clock: clock, baseVersion: baseVersion)
        do {
            try connection.sendPush(.push, prefix: prefix, floats: gradient, requestID: id)
        } catch {
            throw fail(id, error)
        }
        return RequestHandle(client: self, request: request)
    }

    /// Pulls one shard's weights straight into `destination`, which must stay valid until `wait` returns.
    public func pull(
        shard: Int, clock: UInt64, into destination: UnsafeMutableBufferPointer<Float>
    ) throws(ClientError) -> RequestHandle {
        let request = PendingRequest(destination: UnsafeMutableRawBufferPointer(destination))
        let id = try enqueue(request)
        do {
            try connection.sendPull(Pull(shard: UInt32(shard), clock: clock), requestID: id)
        } catch {
            throw fail(id, error)
        }
        return RequestHandle(client: self, request: request)
    }

    /// Pushes a gradient and receives the shard's weights after it is applied, in one round trip.
    public func pushPull(
        shard: Int, clock: UInt64, baseVersion: UInt64, gradient: UnsafeBufferPointer<Float>,
        into destination: UnsafeMutableBufferPointer<Float>
    ) throws(ClientError) -> RequestHandle {
        let request = PendingRequest(destination: UnsafeMutableRawBufferPointer(destination))
        let id = try enqueue(request)
        let prefix = PushPrefix(
            shard: UInt32(shard), count: UInt32(gradient.count), clock: clock, baseVersion: baseVersion)
        do {
            try connection.sendPush(.pushPull, prefix: prefix, floats: gradient, requestID: id)
        } catch {
            throw fail(id, error)
        }
        return RequestHandle(client: self, request: request)
    }

    /// Sends a whole training step in one request (`exchange`): the flat gradient of step `clock` (every
    /// shard's slice, in layout order), the step's loss and samples, and each shard's base version; the reply,
    /// `.exchanged`, lands the weights for step `clock + 1` straight in `destination` once the server's mode lets
    /// them be read (BSP: when the barrier releases).
    ///
    /// A `.remote(.timeout)` error means the server took the gradient and the clock but the weights were not
    /// ready in time: pull them for step `clock + 1`.
    public func exchange(
        rank: Int, clock: UInt64, loss: Double, samples: UInt64, baseVersions: [UInt64],
        gradient: UnsafeBufferPointer<Float>, into destination: UnsafeMutableBufferPointer<Float>
    ) throws(ClientError) -> RequestHandle {
        let request = PendingRequest(destination: UnsafeMutableRawBufferPointer(destination))
        let id = try enqueue(request)
        let prefix = ExchangePrefix(
            rank: UInt32(max(rank, 0)), clock: clock, loss: loss, samples: samples, baseVersions: baseVersions,
            count: UInt32(gradient.count))
        do {
            try connection.sendExchange(prefix: prefix, floats: gradient, requestID: id)
        } catch {
            throw fail(id, error)
        }
        return RequestHandle(client: self, request: request)
    }

    /// Sends a whole training step like `exchange(rank:clock:loss:samples:baseVersions:gradient:into:)`, with the
    /// gradient of `count` values compressed as `encoding` in `body` (see `GradientCodec`); the reply's weights
    /// travel as `replyEncoding` (float32, fp16 or bf16) and land decoded in `destination`.
    public func exchange(
        rank: Int, clock: UInt64, loss: Double, samples: UInt64, baseVersions: [UInt64], count: Int,
        encoding: GradientEncoding, body: UnsafeRawBufferPointer, replyEncoding: GradientEncoding = .none,
        into destination: UnsafeMutableBufferPointer<Float>
    ) throws(ClientError) -> RequestHandle {
        let request = PendingRequest(destination: UnsafeMutableRawBufferPointer(destination))
        let id = try enqueue(request)
        let prefix = ExchangePrefix(
            rank: UInt32(max(rank, 0)), clock: clock, loss: loss, samples: samples, baseVersions: baseVersions,
            count: UInt32(count), encoding: encoding, replyEncoding: replyEncoding)
        do {
            try connection.sendExchange(prefix: prefix, body: body, requestID: id)
        } catch {
            throw fail(id, error)
        }
        return RequestHandle(client: self, request: request)
    }

    private func enqueue(_ request: PendingRequest) throws(ClientError) -> UInt64 {
        let id = nextRequestID.wrappingAdd(1, ordering: .relaxed).oldValue
        // Requests already in flight get their replies read in the background from now on: while this one is
        // sent, a server blocked writing big replies that nobody reads would stop reading it, and both sides would
        // wait in `send`. A lone request (one round trip at a time) wakes nobody.
        // The failure is checked under the table's lock: `failAll` records it before it empties the table, so a
        // request is either refused here or failed there, never left waiting for its deadline.
        let outcome = pending.withLock { table -> Result<Bool, TransportError> in
            if let error = failure.withLock({ $0 }) { return .failure(error) }
            var flagged = false
            for earlier in table.requests.values where earlier.flagForBackgroundRead() { flagged = true }
            table.requests[id] = request
            return .success(flagged)
        }
        switch outcome {
        case .failure(let error): throw .connectionLost("\(error)")
        case .success(let flagged): if flagged { wake.signal() }
        }
        return id
    }

    private func fail(_ id: UInt64, _ error: TransportError) -> ClientError {
        _ = pending.withLock { $0.requests.removeValue(forKey: id) }
        return .connectionLost("\(error)")
    }

    // MARK: Reader

    /// The reader thread. While no pending request is flagged for background reading (see `enqueue` and
    /// `RequestHandle.readInBackground()`) it sleeps until the peer hangs up or `wake` is signalled, without waking for replies (the waiting callers read those). Otherwise, and
    /// from the hang-up on, it reads whatever arrives while no caller is reading for itself (the replies of
    /// requests read in background, what precedes the end of stream), so the connection's failure is seen even
    /// when nobody waits. It waits for readability without the token, so a caller can take the token and read
    /// its own reply on its own thread.
    private func readLoop() {
        defer {
            // The reader is the last thread to touch the descriptor for reading, so it releases it.
            connection.close()
            readerDone.withLockAndBroadcast { $0 = true }
        }
        var hungUp = false
        while true {
            // Whether to look for bytes at once: the socket's readiness cannot show bytes already received.
            var lookNow = hungUp
            if !hungUp && !wantsBackgroundRead() {
                switch connection.wait(for: .hangUp, orWake: wake, milliseconds: 1_000) {
                case .woken:
                    wake.drain()
                    // A request now wants its reply read, which may already wait in the read-ahead.
                    guard wantsBackgroundRead() else { continue }
                    lookNow = true
                case .timedOut:
                    continue
                case .ready:
                    // Read what is left, up to the end of stream, which fails every request still pending.
                    hungUp = true
                    lookNow = true
                }
            }
            if !lookNow {
                // Data on the socket, or a wake: a caller let go of the token with bytes left in the read-ahead.
                switch connection.wait(for: .readable, orWake: wake, milliseconds: 1_000) {
                case .woken: wake.drain()
                case .ready, .timedOut: break
                }
            }
            let taken = readToken.wait(until: MonotonicClock.deadline(afterSeconds: 1), while: { $0 }) {
                held, timedOut -> Bool in
                if timedOut { return false }
                held = true
                return true
            }
            guard taken else { continue }
            // A caller may have read the frame in the meantime: read only when bytes are still there.
            guard connection.waitUntilReadable(milliseconds: 0) else {
                releaseReadToken()
                continue
            }
            do throws(TransportError) {
                try readNextFrame(deadline: .max)
            } catch {
                // Keeps the token: nothing reads this connection again.
                failAll(error)
                return
            }
            releaseReadToken()
        }
    }

    /// Whether some pending request's reply should be read by the reader thread.
    private func wantsBackgroundRead() -> Bool {
        pending.withLock { table in
            table.requests.values.contains { $0.readsInBackground.load(ordering: .acquiring) }
        }
    }

    private func releaseReadToken() {
        // Checked while the token is still held: only its holder may look at the read-ahead.
        let leftover = connection.hasBufferedBytes
        readToken.withLockAndBroadcast { $0 = false }
        // The reader thread polls the socket, which does not show bytes already received: wake it for them.
        if leftover && wantsBackgroundRead() { wake.signal() }
        // Callers waiting for their replies may take the token now.
        pending.withLockAndBroadcast { $0.tokenReleases &+= 1 }
    }

    /// Waits for `request`'s result until `deadline`, reading the socket on this thread whenever no other
    /// thread is: the reply then needs no hand-off from the reader thread. Nil when the deadline passed.
    func awaitResult(_ request: PendingRequest, deadline: UInt64) -> Result<Reply, TransportError>? {
        while true {
            let (result, seen) = pending.withLock { table in (request.result, table.tokenReleases) }
            if let result { return result }
            let mine = readToken.withLock { held -> Bool in
                if held { return false }
                held = true
                return true
            }
            guard mine else {
                // Another thread reads: sleep until this reply lands, the token is released, or the deadline.
                let woken = pending.wait(until: deadline) { table in
                    request.result == nil && table.tokenReleases == seen
                }
                guard woken else { return nil }
                continue
            }
            // The token's previous holder may have read this reply since the look above.
            if let result = pending.withLock({ _ in request.result }) {
                releaseReadToken()
                return result
            }
            let now = MonotonicClock.nanoseconds()
            guard now < deadline else {
                releaseReadToken()
                return nil
            }
            do throws(TransportError) {
                try readNextFrame(deadline: deadline)
            } catch .socket(.timedOut) {
                // No reply in time; a frame may be half read, so the caller abandons the connection.
                releaseReadToken()
                return nil
            } catch {
                // The stream is unusable: fail every request and let the reader thread see the end and stop.
                failAll(error)
                connection.shutdown()
            }
            releaseReadToken()
        }
    }

    /// Reads one frame and completes the request it answers (the caller holds the read token). Each blocked read
    /// wakes every `readTick` and gives up with a timeout once `deadline` has passed.
    private func readNextFrame(deadline: UInt64) throws(TransportError) {
        connection.setReadDeadline(deadline)
        guard let header = try connection.readHeader() else {
            throw .socket(.endOfStream(expected: WireProtocol.headerSize, received: 0))
        }
        let request = pending.withLock { $0.requests.removeValue(forKey: header.requestID) }
        do {
            try readBody(of: header, for: request)
        } catch {
            // Out of `pending` already, so `failAll` would miss it: its waiter learns now, not at its deadline.
            if let request { complete(request, .failure(error)) }
            throw error
        }
    }

    /// Reads the rest of the frame `header` started and completes `request` (nil: nobody waits for it).
    private func readBody(of header: FrameHeader, for request: PendingRequest?) throws(TransportError) {
        if header.type == .pullReply, let request, let destination = request.destination {
            try readPullReply(header: header, into: destination, request: request)
            return
        }
        if header.type == .exchangeReply, let request, let destination = request.destination {
            try readExchangeReply(header: header, into: destination, request: request)
            return
        }
        let payload = try connection.readPayload(length: Int(header.payloadLength))
        let message: Message
        do throws(WireError) {
            message = try MessageCodec.decodePayload(type: header.type, payload)
        } catch {
            throw TransportError.wire(error)
        }
        guard let request else { return }  // a reply nobody waits for any more
        if case .error(let error) = message {
            complete(request, .failure(.remote(code: error.code, message: error.message)))
        } else {
            complete(request, .success(.message(message)))
        }
    }

    private func readPullReply(
        header: FrameHeader, into destination: UnsafeMutableRawBufferPointer, request: PendingRequest
    ) throws(TransportError) {
        let length = Int(header.payloadLength)
        guard length >= PullReplyPrefix.size else {
            throw .wire(.payloadTooShort(type: .pullReply, minimum: PullReplyPrefix.size, got: length))
        }
        let prefixBytes = try connection.readPayload(length: PullReplyPrefix.size)
        let prefix: PullReplyPrefix
        do throws(WireError) {
            prefix = try PullReplyPrefix.decode(prefixBytes)
            try PullReplyPrefix.validate(prefix, payloadLength: length)
        } catch {
            throw .wire(error)
        }
        let floatBytes = length - PullReplyPrefix.size
        if floatBytes == destination.count {
            try connection.readPayload(into: destination)
            complete(request, .success(.pulled(shard: Int(prefix.shard), version: prefix.version)))
        } else {
            try connection.skipPayload(length: floatBytes)
            complete(
                request,
                .failure(
                    .remote(
                        code: .lengthMismatch,
                        message:
                            "shard \(prefix.shard) has \(prefix.count) floats but the destination holds "
                            + "\(destination.count / 4)")))
        }
    }

    /// Reads an exchange reply's prefix, then its floats straight into the request's destination.
    private func readExchangeReply(
        header: FrameHeader, into destination: UnsafeMutableRawBufferPointer, request: PendingRequest
    ) throws(TransportError) {
        let length = Int(header.payloadLength)
        let fixed = try connection.readPayload(length: ExchangeReplyPrefix.fixedSize)
        let shardCount: Int
        do throws(WireError) {
            shardCount = try ExchangeReplyPrefix.shardCount(fixed, payloadLength: length)
        } catch {
            throw .wire(error)
        }
        // The fixed part is decoded again together with the rest, so it is copied before the next read.
        var prefixBytes = [UInt8](UnsafeRawBufferPointer(fixed))
        prefixBytes += try connection.readPayload(length: 8 * shardCount + 8)
        let prefix: ExchangeReplyPrefix
        do throws(WireError) {
            let decoded = prefixBytes.withUnsafeBytes { bytes in
                Result { () throws(WireError) in try ExchangeReplyPrefix.decode(bytes) }
            }
            prefix = try decoded.get()
            try ExchangeReplyPrefix.validate(prefix, payloadLength: length)
        } catch {
            throw .wire(error)
        }
        let floatBytes = length - prefix.size
        if prefix.encoding != .none, 4 * Int(prefix.count) == destination.count {
            // fp16/bf16 weights: read into the connection's buffer, decoded into the destination.
            let body = try connection.readPayload(length: floatBytes)
            let floats = destination.bindMemory(to: Float.self)
            do throws(WireError) {
                try GradientCodec.decode(
                    prefix.encoding, body: body, shardSizes: [floats.count], into: floats, type: .exchangeReply)
            } catch {
                throw .wire(error)
            }
            complete(request, .success(.exchanged(prefix)))
        } else if prefix.encoding == .none, floatBytes == destination.count {
            try connection.readPayload(into: destination)
            complete(request, .success(.exchanged(prefix)))
        } else {
            try connection.skipPayload(length: floatBytes)
            complete(
                request,
                .failure(
                    .remote(
                        code: .lengthMismatch,
                        message: "the exchange reply has \(prefix.count) floats but the destination holds "
                            + "\(destination.count / 4)")))
        }
    }

    private func failAll(_ error: TransportError) {
        failure.withLock { if $0 == nil { $0 = error } }
        pending.withLockAndBroadcast { table in
            for request in table.requests.values where request.result == nil { request.result = .failure(error) }
            table.requests.removeAll()
        }
    }

    /// Stores `request`'s first result and wakes its waiter; a later result is dropped.
    private func complete(_ request: PendingRequest, _ value: Result<Reply, TransportError>) {
        pending.withLockAndBroadcast { _ in
            if request.result == nil { request.result = value }
        }
    }

    /// Called by a handle whose wait timed out: the connection is considered broken, so no reply can land in a
    /// destination its owner has given up on.
    func abandon() {
        connection.shutdown()
        wake.signal()
        waitForReader()
    }

    private func waitForReader() {
        readerDone.wait(until: MonotonicClock.deadline(afterSeconds: 30), while: { !$0 })
    }
}

/// What a request produced.
///
/// ```swift
/// if case .pulled(let shard, let version) = try handle.wait() { print("shard \(shard) at version \(version)") }
/// ```
public enum Reply: Sendable, CustomStringConvertible {
    /// A control reply or a push acknowledgement.
    case message(Message)
    /// A pull reply whose floats are now in the destination.
    case pulled(shard: Int, version: UInt64)
    /// An exchange reply's job state, slowest clock and shard versions; the weights are in the destination.
    case exchanged(ExchangeReplyPrefix)

    public var description: String {
        switch self {
        case .message(let message): return message.type.name
        case .pulled(let shard, let version): return "pulled shard \(shard) version \(version)"
        case .exchanged(let prefix): return "exchanged at versions \(prefix.versions)"
        }
    }
}

/// A request in flight; `wait` returns its reply or throws.
///
/// ```swift
/// let handles = try (0..<shardCount).map { shard in
///     try client.push(shard: shard, clock: step, baseVersion: 0, gradient: slices[shard])
/// }
/// for handle in handles { _ = try handle.wait(timeout: .seconds(30)) }   // all in flight before the first wait
/// ```
public struct RequestHandle: Sendable {
    let client: ParameterClient
    let request: PendingRequest

    /// Waits for the reply (default: the client's request timeout). On timeout the connection is closed.
    public func wait(timeout: Duration? = nil) throws(ClientError) -> Reply {
        let seconds = Self.seconds(timeout ?? client.requestTimeout)
        return try wait(deadline: MonotonicClock.deadline(afterSeconds: seconds), seconds: seconds)
    }

    /// Has the connection's reader thread read this reply as soon as it arrives, instead of leaving it in the
    /// socket until a caller waits for it: for a caller that waits on other connections first, so that several
    /// servers' replies arrive at once. Costs a wake-up of the reader thread; `waitAll` calls it where it helps.
    public func readInBackground() {
        if request.flagForBackgroundRead() { client.wake.signal() }
    }

    /// Waits for every handle's reply, in order, all within one `timeout` (default: the first client's request
    /// timeout). The replies of the handles after the first are read in the background meanwhile
    /// (`readInBackground()`), so a worker's requests to several servers are answered in parallel. When one throws,
    /// the others are still waited for (or their connections closed at the deadline) before the error is
    /// rethrown, so no reply lands in a destination after this returns.
    ///
    /// ```swift
    /// let handles = try servers.map { try $0.client.exchange(/* its part */) }
    /// let replies = try RequestHandle.waitAll(handles)
    /// ```
    public static func waitAll(_ handles: [RequestHandle], timeout: Duration? = nil) throws(ClientError) -> [Reply] {
        guard let first = handles.first else { return [] }
        for handle in handles.dropFirst() { handle.readInBackground() }
        let seconds = Self.seconds(timeout ?? first.client.requestTimeout)
        let deadline = MonotonicClock.deadline(afterSeconds: seconds)
        var replies: [Reply] = []
        replies.reserveCapacity(handles.count)
        var firstError: ClientError? = nil
        for handle in handles {
            do {
                replies.append(try handle.wait(deadline: deadline, seconds: seconds))
            } catch {
                firstError = firstError ?? error
            }
        }
        if let firstError { throw firstError }
        return replies
    }

    private static func seconds(_ duration: Duration) -> Double {
        let (seconds, attoseconds) = duration.components
        return Double(seconds) + Double(attoseconds) / 1e18
    }

    private func wait(deadline: UInt64, seconds: Double) throws(ClientError) -> Reply {
        guard let result = client.awaitResult(request, deadline: deadline) else {
            client.abandon()
            throw .timedOut("no reply within \(seconds) s")
        }
        switch result {
        case .success(let reply): return reply
        case .failure(.remote(let code, let message)): throw .remote(code: code, message: message)
        case .failure(let error): throw .connectionLost("\(error)")
        }
    }
}

/// One request's completion slot.
final class PendingRequest: @unchecked Sendable {
    // @unchecked Sendable: `result` is read and written only under the owning client's `pending` lock, and only
    // the thread holding the client's read token writes through `destination`, before it stores the result.
    let destination: UnsafeMutableRawBufferPointer?
    /// Set by `RequestHandle.readInBackground()` or a request sent behind this one: the reader thread reads this
    /// reply when it arrives.
    let readsInBackground = Atomic<Bool>(false)
    /// The reply or the failure, once known. Guarded by the client's `pending` lock.
    var result: Result<Reply, TransportError>? = nil

    /// Sets `readsInBackground`; true when it was not set before (the reader thread needs a wake-up).
    func flagForBackgroundRead() -> Bool {
        !readsInBackground.exchange(true, ordering: .acquiringAndReleasing)
    }

    init(destination: UnsafeMutableRawBufferPointer?) {
        self.destination = destination
    }
}

/// A client's requests in flight by request id, and how many times the read token was released (a caller asleep
/// while another thread read may take the token after each release).
struct RequestTable {
    var requests: [UInt64: PendingRequest] = [:]
    var tokenReleases = 0
}

/// Why a client call failed.
///
/// ```swift
/// do {
///     _ = try client.register(tensors)
/// } catch .remote(let code, let message) {
///     print("refused (\(code)): \(message)")   // names the tensor whose shape differs
/// }
/// ```
public enum ClientError: Error, CustomStringConvertible, Sendable, Equatable {
    case connect(String)
    case rejected(code: ErrorCode, reason: String)
    case remote(code: ErrorCode, message: String)
    case connectionLost(String)
    case timedOut(String)
    case protocolViolation(String)

    public var description: String {
        switch self {
        case .connect(let text): return text
        case .rejected(_, let reason): return "refused by the server: \(reason)"
        case .remote(_, let message): return message
        case .connectionLost(let text): return "connection lost: \(text)"
        case .timedOut(let text): return "timed out: \(text)"
        case .protocolViolation(let text): return "protocol violation: \(text)"
        }
    }
}
