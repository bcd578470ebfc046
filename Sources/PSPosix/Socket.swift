#if canImport(Glibc)
    import Glibc
#endif

/// A blocking TCP socket: a file-descriptor holder with the few operations a framed protocol needs.
///
/// A `Socket` is a value: copies share the descriptor, and the owner calls ``close()`` exactly once. Reads and
/// writes loop until the whole buffer is transferred; `EINTR` is retried; `SIGPIPE` is never raised by a write
/// (`MSG_NOSIGNAL`), so writing to a closed peer throws instead. A socket may carry a ``SocketLayer`` (TLS):
/// every read and write below then goes through it, with the same timeouts and deadlines.
public struct Socket: Sendable, Hashable {
    /// The underlying file descriptor.
    public let fileDescriptor: Int32
    /// The protocol layered over the byte stream (TLS), or nil for plain TCP.
    public let layer: (any SocketLayer)?

    /// Adopts an open socket descriptor; the new value owns it.
    public init(fileDescriptor: Int32) {
        self.fileDescriptor = fileDescriptor
        layer = nil
    }

    private init(fileDescriptor: Int32, layer: any SocketLayer) {
        self.fileDescriptor = fileDescriptor
        self.layer = layer
    }

    /// This socket with `layer` over its byte stream; the descriptor becomes non-blocking (the waits are `poll`s
    /// bounded by the receive and send timeouts). Use only the returned value from then on.
    public func layered(_ layer: any SocketLayer) throws(SocketError) -> Socket {
        let flags = try systemCall("fcntl F_GETFL") { fcntl(fileDescriptor, F_GETFL) }
        try systemCall("fcntl O_NONBLOCK") { fcntl(fileDescriptor, F_SETFL, flags | O_NONBLOCK) }
        return Socket(fileDescriptor: fileDescriptor, layer: layer)
    }

    /// Sockets are the same when their descriptors are.
    public static func == (a: Socket, b: Socket) -> Bool { a.fileDescriptor == b.fileDescriptor }

    /// Hashes the descriptor.
    public func hash(into hasher: inout Hasher) { hasher.combine(fileDescriptor) }

    // MARK: - Creating sockets

    /// Creates a listening socket bound to `host` and `port` (`SO_REUSEADDR`, close-on-exec).
    ///
    /// `host` is resolved with `getaddrinfo`, so `"0.0.0.0"`, `"::"` (dual-stack), `"127.0.0.1"` and `"localhost"`
    /// all work; each address is tried in turn, IPv4 first. Port 0 binds an ephemeral port: see ``localPort()``.
    public static func listen(host: String, port: UInt16, backlog: Int32 = 512) throws(SocketError) -> Socket {
        var lastError = SocketError.resolve(host: host, reason: "no address")
        for address in try SocketAddress.resolve(host: host, port: port, passive: true) {
            do {
                return try bindAndListen(address, backlog: backlog)
            } catch {
                lastError = error
            }
        }
        throw lastError
    }

    private static func bindAndListen(_ address: SocketAddress, backlog: Int32) throws(SocketError) -> Socket {
        let socket = try makeSocket(family: address.family, nonBlocking: false, address: address)
        do throws(SocketError) {
            try socket.setIntegerOption(level: SOL_SOCKET, name: SO_REUSEADDR, value: 1, operation: "SO_REUSEADDR")
            try systemCall("bind \(address)") { address.withSockaddr { Glibc.bind(socket.fileDescriptor, $0, $1) } }
            try systemCall("listen \(address)") { Glibc.listen(socket.fileDescriptor, backlog) }
            return socket
        } catch {
            socket.close()
            throw error
        }
    }

    /// Connects to `host:port`, trying each address `getaddrinfo` returns until one answers.
    ///
    /// Each attempt is a non-blocking `connect` followed by `poll` until the overall `timeout` expires; the
    /// connected socket is then switched back to blocking mode and gets `TCP_NODELAY`. On failure the error of the
    /// last address tried is thrown: ``SocketError/connect(address:errno:)`` (such as `ECONNREFUSED`) or
    /// ``SocketError/connectTimedOut(address:seconds:)``.
    public static func connect(host: String, port: UInt16, timeout: Duration) throws(SocketError) -> Socket {
        let addresses = try SocketAddress.resolve(host: host, port: port, passive: false)
        let timeoutNanoseconds = timeout.saturatingNanoseconds
        let deadline = MonotonicClock.nanoseconds() &+ timeoutNanoseconds
        let seconds = Double(timeoutNanoseconds) / 1e9
        var lastError = SocketError.connectTimedOut(address: addresses[0].description, seconds: seconds)
        for address in addresses {
            do {
                return try connect(to: address, deadline: deadline, timeoutSeconds: seconds)
            } catch {
                lastError = error
            }
        }
        throw lastError
    }

    private static func connect(
        to address: SocketAddress,
        deadline: UInt64,
        timeoutSeconds: Double
    ) throws(SocketError) -> Socket {
        let socket = try makeSocket(family: address.family, nonBlocking: true, address: address)
        do throws(SocketError) {
            do {
                try nothingOrErrno(retryOnInterrupt: false) {
                    address.withSockaddr { Glibc.connect(socket.fileDescriptor, $0, $1) }
                }
            } catch  where error == .inProgress || error == .interrupted {
                try socket.waitUntilConnected(to: address, deadline: deadline, timeoutSeconds: timeoutSeconds)
            } catch {
                throw .connect(address: address.description, errno: error)
            }
            try socket.setBlocking(operation: "connect to \(address)")
            try socket.setNoDelay()
            return socket
        } catch {
            socket.close()
            throw error
        }
    }

    private func waitUntilConnected(
        to address: SocketAddress,
        deadline: UInt64,
        timeoutSeconds: Double
    ) throws(SocketError) {
        while true {
            let now = MonotonicClock.nanoseconds()
            guard now < deadline else {
                throw .connectTimedOut(address: address.description, seconds: timeoutSeconds)
            }
            let milliseconds = Int32(clamping: (deadline - now + 999_999) / 1_000_000)
            var request = pollfd(fd: fileDescriptor, events: Int16(POLLOUT), revents: 0)
            let ready: Int32
            do {
                ready = try valueOrErrno(retryOnInterrupt: false) { poll(&request, 1, milliseconds) }
            } catch  where error == .interrupted {
                continue
            } catch {
                throw .system(operation: "poll for connect to \(address)", errno: error)
            }
            if ready > 0 {
                break
            }
        }
        let pending = try integerOption(level: SOL_SOCKET, name: SO_ERROR, operation: "SO_ERROR")
        if pending != 0 {
            throw .connect(address: address.description, errno: Errno(rawValue: pending))
        }
    }

    private static func makeSocket(
        family: Int32,
        nonBlocking: Bool,
        address: SocketAddress
    ) throws(SocketError) -> Socket {
        var type = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        if nonBlocking {
            type |= Int32(SOCK_NONBLOCK.rawValue)
        }
        let descriptor = try systemCall("socket for \(address)") { Glibc.socket(family, type, 0) }
        return Socket(fileDescriptor: descriptor)
    }

    /// Accepts one connection; the new socket is close-on-exec and has `TCP_NODELAY` set.
    ///
    /// Returns the peer's address as `127.0.0.1:54321`. After ``shutdown()`` or ``close()`` of this listening
    /// socket from another thread, a blocked `accept` throws ``SocketError/closed``.
    public func accept() throws(SocketError) -> (socket: Socket, peer: String) {
        var peer = SocketAddress()
        var descriptor: Int32 = -1
        while descriptor < 0 {
            do {
                descriptor = try valueOrErrno { peer.withMutableSockaddr { Glibc.accept(fileDescriptor, $0, $1) } }
            } catch {
                switch error {
                case .connectionAborted:
                    continue
                case .invalidArgument, .badFileDescriptor:
                    throw .closed
                default:
                    throw .system(operation: "accept", errno: error)
                }
            }
        }
        let socket = Socket(fileDescriptor: descriptor)
        do throws(SocketError) {
            try systemCall("fcntl FD_CLOEXEC") { fcntl(descriptor, F_SETFD, FD_CLOEXEC) }
            try socket.setNoDelay()
        } catch {
            socket.close()
            throw error
        }
        return (socket, peer.description)
    }

    // MARK: - Addresses and options

    /// The local port this socket is bound to (the ephemeral one after `listen(host:port: 0)`).
    public func localPort() throws(SocketError) -> UInt16 {
        try localAddress().port
    }

    /// The local address as `127.0.0.1:7000` (`getsockname`).
    public func localAddressDescription() throws(SocketError) -> String {
        try localAddress().description
    }

    private func localAddress() throws(SocketError) -> SocketAddress {
        var address = SocketAddress()
        try systemCall("getsockname") { address.withMutableSockaddr { getsockname(fileDescriptor, $0, $1) } }
        return address
    }

    /// Sets `TCP_NODELAY` (Nagle's algorithm off); `connect` and `accept` already do.
    public func setNoDelay() throws(SocketError) {
        try setIntegerOption(level: Int32(IPPROTO_TCP), name: TCP_NODELAY, value: 1, operation: "TCP_NODELAY")
    }

    /// Whether `TCP_NODELAY` is set (`getsockopt`).
    public func isNoDelayEnabled() throws(SocketError) -> Bool {
        try integerOption(level: Int32(IPPROTO_TCP), name: TCP_NODELAY, operation: "TCP_NODELAY") != 0
    }

    /// Sets `SO_RCVTIMEO`: a read that waits longer throws ``SocketError/timedOut(operation:)``; nil waits forever.
    ///
    /// A timeout in the middle of ``readExactly(into:)`` leaves the stream at an unknown position: close the socket.
    public func setReceiveTimeout(_ timeout: Duration?) throws(SocketError) {
        try setTimeoutOption(SO_RCVTIMEO, timeout, operation: "SO_RCVTIMEO")
    }

    /// Sets `SO_SNDTIMEO`: a write that makes no progress for longer throws ``SocketError/timedOut(operation:)``
    /// (a peer that does not read its replies); nil waits forever.
    public func setSendTimeout(_ timeout: Duration?) throws(SocketError) {
        try setTimeoutOption(SO_SNDTIMEO, timeout, operation: "SO_SNDTIMEO")
    }

    private func setTimeoutOption(_ name: Int32, _ timeout: Duration?, operation: String) throws(SocketError) {
        var value = timeval(tv_sec: 0, tv_usec: 0)
        if let timeout {
            let nanoseconds = timeout.saturatingNanoseconds
            value.tv_sec = Int(nanoseconds / 1_000_000_000)
            value.tv_usec = Int(nanoseconds % 1_000_000_000 / 1000)
            if value.tv_sec == 0 && value.tv_usec == 0 {
                value.tv_usec = 1  // zero would mean "no timeout"
            }
        }
        try systemCall(operation) {
            setsockopt(fileDescriptor, SOL_SOCKET, name, &value, socklen_t(MemoryLayout<timeval>.size))
        }
    }

    private func setIntegerOption(level: Int32, name: Int32, value: Int32, operation: String) throws(SocketError) {
        var value = value
        try systemCall("setsockopt \(operation)") {
            setsockopt(fileDescriptor, level, name, &value, socklen_t(MemoryLayout<Int32>.size))
        }
    }

    private func integerOption(level: Int32, name: Int32, operation: String) throws(SocketError) -> Int32 {
        var value: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        try systemCall("getsockopt \(operation)") { getsockopt(fileDescriptor, level, name, &value, &length) }
        return value
    }

    private func setBlocking(operation: String) throws(SocketError) {
        let flags = try systemCall(operation) { fcntl(fileDescriptor, F_GETFL) }
        try systemCall(operation) { fcntl(fileDescriptor, F_SETFL, flags & ~O_NONBLOCK) }
    }

    // MARK: - Reading

    /// Reads some bytes into `buffer` (one `recv`); returns how many, 0 at end of stream.
    public func receive(into buffer: UnsafeMutableRawBufferPointer) throws(SocketError) -> Int {
        guard let base = buffer.baseAddress, buffer.count > 0 else { return 0 }
        guard let count = try receiveSome(base, buffer.count) else { throw .timedOut(operation: "read") }
        return count
    }

    /// Copies up to `buffer.count` waiting bytes without consuming them and without waiting (`MSG_PEEK`,
    /// `MSG_DONTWAIT`, on the descriptor itself, under any layer): the count (0 at end of stream), or nil when
    /// nothing has arrived yet.
    public func peek(into buffer: UnsafeMutableRawBufferPointer) throws(SocketError) -> Int? {
        guard let base = buffer.baseAddress, buffer.count > 0 else { return 0 }
        do {
            return try valueOrErrno { recv(fileDescriptor, base, buffer.count, Int32(MSG_PEEK) | Int32(MSG_DONTWAIT)) }
        } catch {
            if error == .wouldBlock { return nil }
            throw Socket.readError(error)
        }
    }

    /// One read of at most `count` bytes: the count (0 at end of stream), or nil when the receive timeout expired.
    private func receiveSome(_ base: UnsafeMutableRawPointer, _ count: Int) throws(SocketError) -> Int? {
        if let layer {
            while true {
                switch try layer.read(into: UnsafeMutableRawBufferPointer(start: base, count: count)) {
                case .done(let received): return received
                case .wantRead: guard try waitFor(Int16(POLLIN), timeout: SO_RCVTIMEO) else { return nil }
                case .wantWrite: guard try waitFor(Int16(POLLOUT), timeout: SO_SNDTIMEO) else { return nil }
                }
            }
        }
        do {
            return try valueOrErrno { recv(fileDescriptor, base, count, 0) }
        } catch {
            if error == .wouldBlock { return nil }
            throw Socket.readError(error)
        }
    }

    /// A layered socket's wait: polls for `events` for at most the socket's `timeout` option (`SO_RCVTIMEO` or
    /// `SO_SNDTIMEO`; unset waits without bound). Returns false when the time ran out; true when the descriptor is
    /// ready, hung up or interrupted (the caller's next layer call finds out which).
    private func waitFor(_ events: Int16, timeout option: Int32) throws(SocketError) -> Bool {
        var value = timeval(tv_sec: 0, tv_usec: 0)
        var length = socklen_t(MemoryLayout<timeval>.size)
        try systemCall("getsockopt timeout") { getsockopt(fileDescriptor, SOL_SOCKET, option, &value, &length) }
        let milliseconds =
            value.tv_sec == 0 && value.tv_usec == 0
            ? -1 : Int32(clamping: value.tv_sec * 1000 + (value.tv_usec + 999) / 1000)
        var entry = pollfd(fd: fileDescriptor, events: events, revents: 0)
        do {
            return try valueOrErrno(retryOnInterrupt: false) { poll(&entry, 1, milliseconds) } > 0
        } catch {
            if error == .interrupted { return true }
            throw .system(operation: "poll", errno: error)
        }
    }

    /// Fills `buffer` completely, looping over short reads.
    ///
    /// Throws ``SocketError/endOfStream(expected:received:)`` if the peer closes first (even before the first
    /// byte) and ``SocketError/timedOut(operation:)`` when a receive timeout expires.
    public func readExactly(into buffer: UnsafeMutableRawBufferPointer) throws(SocketError) {
        let received = try fill(buffer)
        if received < buffer.count {
            throw .endOfStream(expected: buffer.count, received: received)
        }
    }

    /// Like ``readExactly(into:)``, but a receive timeout only ends the read once `deadline` (monotonic
    /// nanoseconds, see `MonotonicClock`) has passed: the receive timeout is then how often the deadline is
    /// checked, and a peer that trickles bytes cannot keep the read going past it. A nil deadline behaves like
    /// ``readExactly(into:)``.
    public func readExactly(into buffer: UnsafeMutableRawBufferPointer, deadline: UInt64?) throws(SocketError) {
        let received = try fill(buffer, deadline: deadline)
        if received < buffer.count {
            throw .endOfStream(expected: buffer.count, received: received)
        }
    }

    /// Like ``readExactly(into:)``, but returns false on a clean end of stream before the first byte (the peer
    /// closed between frames); an end of stream after some bytes still throws.
    public func readExactlyOrEOF(into buffer: UnsafeMutableRawBufferPointer) throws(SocketError) -> Bool {
        let received = try fill(buffer)
        if received == 0 && buffer.count > 0 {
            return false
        }
        if received < buffer.count {
            throw .endOfStream(expected: buffer.count, received: received)
        }
        return true
    }

    /// Reads at least `minimum` bytes into `buffer`, and as many more as have already arrived, up to its size (a
    /// read-ahead: one `recv` usually brings a whole small frame). Returns the count, below `minimum` only when the
    /// stream ended first (0: before any byte).
    ///
    /// With `keepWaiting`, the read waits for the first byte as long as it answers true at each receive timeout
    /// (an idle peer; false throws ``SocketError/timedOut(operation:)`` with operation `idle`), then gets the rest
    /// within `budget` nanoseconds of the first byte. Without it, timeouts are as in
    /// ``readExactly(into:deadline:)``.
    public func readAtLeast(
        _ minimum: Int, into buffer: UnsafeMutableRawBufferPointer, deadline: UInt64?, budget: UInt64?,
        keepWaiting: (() -> Bool)?
    ) throws(SocketError) -> Int {
        precondition(minimum <= buffer.count, "the read-ahead buffer must hold the bytes asked for")
        return try fill(buffer, atLeast: minimum, deadline: deadline, budget: budget, keepWaiting: keepWaiting)
    }

    /// Reads until `buffer` holds `minimum` bytes (default: it is full) or the stream ends; returns the number of
    /// bytes read, which may exceed `minimum` when more had arrived.
    ///
    /// A receive timeout before the first byte asks `keepWaiting` (nil: throw); after it, the read goes on until
    /// `deadline`, or until `budget` nanoseconds after the first byte (both nil: throw at the first timeout).
    private func fill(
        _ buffer: UnsafeMutableRawBufferPointer, atLeast minimum: Int? = nil, deadline: UInt64? = nil,
        budget: UInt64? = nil, keepWaiting: (() -> Bool)? = nil
    ) throws(SocketError) -> Int {
        guard let base = buffer.baseAddress else { return 0 }
        let minimum = minimum ?? buffer.count
        var offset = 0
        var deadline = deadline
        while offset < minimum {
            guard let count = try receiveSome(base + offset, buffer.count - offset) else {
                // The receive timeout expired.
                if offset == 0, let keepWaiting {
                    if keepWaiting() { continue }
                    throw .timedOut(operation: "idle")
                }
                if let limit = deadline, MonotonicClock.nanoseconds() < limit { continue }
                throw .timedOut(operation: "read")
            }
            if offset == 0, count > 0, count < minimum, deadline == nil, let budget {
                deadline = MonotonicClock.nanoseconds() &+ budget
            }
            if count == 0 {
                break
            }
            offset += count
        }
        return offset
    }

    private static func readError(_ error: Errno) -> SocketError {
        switch error {
        case .wouldBlock: .timedOut(operation: "read")
        case .badFileDescriptor: .closed
        default: .system(operation: "recv", errno: error)
        }
    }

    // MARK: - Writing

    /// Writes all of `bytes`, looping over short writes (`send` with `MSG_NOSIGNAL`).
    public func writeAll(_ bytes: UnsafeRawBufferPointer) throws(SocketError) {
        guard let base = bytes.baseAddress else { return }
        if layer != nil { return try writeLayered(bytes) }
        var offset = 0
        while offset < bytes.count {
            do {
                offset += try valueOrErrno {
                    Glibc.send(fileDescriptor, base + offset, bytes.count - offset, Int32(MSG_NOSIGNAL))
                }
            } catch {
                throw Socket.writeError(error)
            }
        }
    }

    /// Writes `a`, `b` and `c` back to back with one gathering system call per attempt, looping on short writes
    /// (`writeAll(count:part:)` for three parts). Use it for a frame header, a fixed prefix and a payload.
    public func writeAll(
        _ a: UnsafeRawBufferPointer,
        _ b: UnsafeRawBufferPointer,
        _ c: UnsafeRawBufferPointer = .init(start: nil, count: 0)
    ) throws(SocketError) {
        try writeGathered(count: 3) { index in index == 0 ? a : (index == 1 ? b : c) }
    }

    /// Writes `part(0)`, …, `part(count - 1)` back to back with one gathering system call per attempt, looping on
    /// short writes: a frame whose bytes lie in several places (an exchange reply sent from each shard's weights).
    ///
    /// Each attempt is one `sendmsg` (a `writev` that takes `MSG_NOSIGNAL`) over an iovec array in a temporary
    /// allocation (on the stack for a few parts). Empty parts are skipped. Through a layer, a small frame goes as
    /// one record (one write); a large one's parts go in turn, its header in a small record of its own.
    public func writeAll(count: Int, part: (Int) -> UnsafeRawBufferPointer) throws(SocketError) {
        try writeGathered(count: count, part: part)
    }

    /// `writeAll(count:part:)`'s body, inlined into both writers so that the three-part one (every frame of the
    /// small-message path) pays no closure call per part.
    @inline(__always)
    private func writeGathered(count: Int, part: (Int) -> UnsafeRawBufferPointer) throws(SocketError) {
        if layer != nil {
            let total = (0..<count).reduce(0) { $0 + part($1).count }
            guard total <= Socket.coalescedWriteLimit else {
                for index in 0..<count { try writeLayered(part(index)) }
                return
            }
            try withUnsafeTemporaryAllocation(byteCount: total, alignment: 8) {
                (joined: UnsafeMutableRawBufferPointer) throws(SocketError) in
                var offset = 0
                for index in 0..<count {
                    let bytes = part(index)
                    UnsafeMutableRawBufferPointer(rebasing: joined[offset..<offset + bytes.count]).copyMemory(
                        from: bytes)
                    offset += bytes.count
                }
                try writeLayered(UnsafeRawBufferPointer(joined))
            }
            return
        }
        try withUnsafeTemporaryAllocation(of: iovec.self, capacity: max(count, 1)) { (iov) throws(SocketError) in
            var used = 0
            for index in 0..<count {
                let bytes = part(index)
                guard bytes.count > 0 else { continue }
                iov[used] = iovec(iov_base: UnsafeMutableRawPointer(mutating: bytes.baseAddress), iov_len: bytes.count)
                used += 1
            }
            try writeVectors(iov.baseAddress!, count: used)
        }
    }

    private func writeVectors(_ iov: UnsafeMutablePointer<iovec>, count: Int) throws(SocketError) {
        var first = 0
        while first < count {
            var message = msghdr()
            message.msg_iov = iov + first
            message.msg_iovlen = count - first
            let written: Int
            do {
                written = try valueOrErrno { sendmsg(fileDescriptor, &message, Int32(MSG_NOSIGNAL)) }
            } catch {
                throw Socket.writeError(error)
            }
            first = advanceVectors(iov, first: first, count: count, by: written)
        }
    }

    /// The largest frame a layered socket copies into one buffer, so that it travels as one TLS record.
    static let coalescedWriteLimit = 16 << 10

    /// Writes all of `bytes` through the layer, waiting (bounded by the send timeout) whenever it must.
    private func writeLayered(_ bytes: UnsafeRawBufferPointer) throws(SocketError) {
        guard let layer, let base = bytes.baseAddress else { return }
        var offset = 0
        while offset < bytes.count {
            switch try layer.write(UnsafeRawBufferPointer(start: base + offset, count: bytes.count - offset)) {
            case .done(0): throw .system(operation: "send", errno: .brokenPipe)  // a layer must not make no progress
            case .done(let written): offset += written
            case .wantWrite:
                guard try waitFor(Int16(POLLOUT), timeout: SO_SNDTIMEO) else { throw .timedOut(operation: "write") }
            case .wantRead:
                // Still the write's wait: the send timeout bounds it (the receive timeout may be a short tick).
                guard try waitFor(Int16(POLLIN), timeout: SO_SNDTIMEO) else { throw .timedOut(operation: "write") }
            }
        }
    }

    private static func writeError(_ error: Errno) -> SocketError {
        switch error {
        case .wouldBlock: .timedOut(operation: "write")
        case .badFileDescriptor: .closed
        default: .system(operation: "send", errno: error)
        }
    }

    // MARK: - Closing

    /// Shuts down both directions; wakes a thread blocked in a read or `accept` on this socket. Ignores errors.
    public func shutdown() {
        _ = Glibc.shutdown(fileDescriptor, Int32(SHUT_RDWR))
    }

    /// Shuts down only the receive side: a thread blocked reading wakes with end-of-stream, while replies can
    /// still be written. Ignores errors.
    public func shutdownReceive() {
        _ = Glibc.shutdown(fileDescriptor, Int32(SHUT_RD))
    }

    /// Shuts down only the send side: the peer reads end-of-stream after the bytes already sent, while this side
    /// can still read its replies. Ignores errors.
    public func shutdownSend() {
        _ = Glibc.shutdown(fileDescriptor, Int32(SHUT_WR))
    }

    /// Waits up to `milliseconds` for the socket to become readable (data, end of stream or an error), with
    /// `poll`; returns whether it did. Consumes nothing.
    public func waitUntilReadable(milliseconds: Int32) -> Bool {
        if let layer, layer.bufferedByteCount > 0 { return true }
        var entry = pollfd(fd: fileDescriptor, events: Int16(POLLIN), revents: 0)
        guard let ready = try? valueOrErrno({ poll(&entry, 1, milliseconds) }), ready > 0 else { return false }
        return entry.revents != 0
    }

    /// Waits up to `milliseconds` for `condition` on the descriptor itself (any layer's buffer is not looked at)
    /// or for `wake` to be signalled. Waiting for `.hangUp` asks `poll` for `POLLRDHUP` only, so data arriving does
    /// not wake the thread: how an idle connection's watcher waits without competing with the thread that reads.
    public func wait(for condition: SocketCondition, orWake wake: WakePipe, milliseconds: Int32) -> SocketWaitEvent {
        let pollReadHangUp: Int16 = 0x2000  // POLLRDHUP (Linux); see peerHasHungUp
        var entries = (
            pollfd(fd: fileDescriptor, events: condition == .readable ? Int16(POLLIN) : pollReadHangUp, revents: 0),
            pollfd(fd: wake.readDescriptor, events: Int16(POLLIN), revents: 0)
        )
        let ready = withUnsafeMutableBytes(of: &entries) { raw in
            let base = raw.baseAddress!.assumingMemoryBound(to: pollfd.self)
            return (try? valueOrErrno(retryOnInterrupt: false) { poll(base, 2, milliseconds) }) ?? 0
        }
        guard ready > 0 else { return .timedOut }
        // Readable includes end of stream and errors; a hang-up includes a reset or a failed connection.
        if entries.0.revents != 0 { return .ready }
        return entries.1.revents != 0 ? .woken : .timedOut
    }

    /// Whether a layer (TLS) holds decrypted bytes not read yet (the descriptor may then look idle).
    public var layerHasBufferedBytes: Bool { (layer?.bufferedByteCount ?? 0) > 0 }

    /// Whether the peer has closed or reset the connection, without consuming any byte (`poll` with
    /// `POLLRDHUP`, which reports a peer shutdown even while unread data is queued). Never blocks.
    public func peerHasHungUp() -> Bool {
        let pollReadHangUp: Int16 = 0x2000  // POLLRDHUP (Linux); the Glibc module is built without _GNU_SOURCE
        var entry = pollfd(fd: fileDescriptor, events: pollReadHangUp, revents: 0)
        guard let ready = try? valueOrErrno({ poll(&entry, 1, 0) }), ready > 0 else { return false }
        return entry.revents & (pollReadHangUp | Int16(POLLHUP) | Int16(POLLERR) | Int16(POLLNVAL)) != 0
    }

    /// Ends the layer, if any, then closes the descriptor (never retried after `EINTR`, as Linux releases it
    /// regardless). Ignores errors.
    public func close() {
        layer?.close()
        _ = try? nothingOrErrno(retryOnInterrupt: false) { Glibc.close(fileDescriptor) }
    }
}

/// Drops the first `written` bytes from the iovecs `iov[first..<count]`; returns the index of the first iovec that
/// still has bytes (`count` when all are written). Partly written iovecs are advanced in place.
func advanceVectors(_ iov: UnsafeMutablePointer<iovec>, first: Int, count: Int, by written: Int) -> Int {
    var remaining = written
    var index = first
    while index < count && remaining >= iov[index].iov_len {
        remaining -= iov[index].iov_len
        index += 1
    }
    if index < count && remaining > 0 {
        iov[index].iov_base = iov[index].iov_base.map { $0 + remaining }
        iov[index].iov_len -= remaining
    }
    return index
}

/// Runs one system call through the funnel and names `operation` in the error.
@discardableResult
@inline(__always)
func systemCall<I: FixedWidthInteger & SignedInteger>(
    _ operation: @autoclosure () -> String,
    _ body: () -> I
) throws(SocketError) -> I {
    do {
        return try valueOrErrno(body)
    } catch {
        throw .system(operation: operation(), errno: error)
    }
}

extension Duration {
    /// The duration in whole nanoseconds, clamped to `0...UInt64.max`.
    var saturatingNanoseconds: UInt64 {
        let (seconds, attoseconds) = components
        guard seconds >= 0 else { return 0 }
        let (whole, overflow) = UInt64(seconds).multipliedReportingOverflow(by: 1_000_000_000)
        let fraction = UInt64(max(0, attoseconds) / 1_000_000_000)
        let (total, carry) = whole.addingReportingOverflow(fraction)
        return overflow || carry ? .max : total
    }
}
