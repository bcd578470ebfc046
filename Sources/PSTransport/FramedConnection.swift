import PSPosix
import PSSecurity
import PSWire
import Synchronization  // Atomic

/// A TCP connection that carries PSWire frames, copy-free on the tensor path.
///
/// Reading is done by one thread at a time (the connection's reader, or threads that hand a lock between them,
/// which orders their reads); writing may come from any thread and is
/// serialised by a per-connection write lock, so a frame is never interleaved with another. Tensor frames are
/// written with one `writev` of header, prefix and the caller's float buffer. Reads go through a read-ahead
/// buffer (one `recv` usually brings a small frame's header, prefix and body at once); payloads of
/// `directReadBytes` or more are read straight into a caller-chosen destination or into a receive buffer that is
/// reused across messages.
public final class FramedConnection: @unchecked Sendable {
    // @unchecked Sendable: `receiveBuffer`, the read-ahead (`readAhead`, `readStart`, `readEnd`), `frameBudget`,
    // `frameDeadline`, `readDeadline` and `keepWaitingWhenIdle` are touched only by the one thread reading at a
    // time (documented contract of the read* and set*Deadline* methods); every other stored property is
    // immutable, a LockedValue or an Atomic.

    /// The socket; owned by this connection, closed by `close()`, never handed out.
    private let socket: Socket
    /// The peer's address, for logs and errors.
    public let peer: String
    /// The largest payload this side accepts; checked before anything is allocated.
    public let maxPayloadBytes: Int

    /// Serialises writers (a frame is never interleaved with another) and counts the frames written.
    private let writeLock = LockedValue<UInt64>(0)
    private let closed = Atomic<Bool>(false)
    private var receiveBuffer: UnsafeMutableRawBufferPointer
    /// Bytes received ahead of what the frame parser has consumed: `readAhead[readStart..<readEnd]`.
    private let readAhead: UnsafeMutableRawBufferPointer
    private var readStart = 0
    private var readEnd = 0
    /// A read of at least this many bytes goes straight from the socket into its destination (after whatever the
    /// read-ahead already holds); smaller ones are served from the read-ahead, refilled with one `recv`.
    public static let directReadBytes = 8 << 10
    /// The read-ahead's capacity (twice the direct-read threshold, so a frame just under it fits with its header).
    static let readAheadBytes = 16 << 10
    /// When every read must be complete (nil: a receive timeout ends it); see `setReadDeadline`.
    private var readDeadline: UInt64? = nil
    /// How long a frame may take once its first byte arrived (nil: no bound beyond the receive timeout).
    private var frameBudget: UInt64? = nil
    /// When the frame being read must be complete (set by `readHeader` from `frameBudget`).
    private var frameDeadline: UInt64? = nil
    /// Asked at each receive timeout while no frame has started; nil: an idle timeout is an error.
    private var keepWaitingWhenIdle: (() -> Bool)? = nil

    /// Wraps a connected socket.
    public init(socket: Socket, peer: String, maxPayloadBytes: Int = WireProtocol.defaultMaxPayloadBytes) {
        self.socket = socket
        self.peer = peer
        self.maxPayloadBytes = maxPayloadBytes
        receiveBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 16)
        readAhead = UnsafeMutableRawBufferPointer.allocate(byteCount: Self.readAheadBytes, alignment: 16)
    }

    deinit {
        receiveBuffer.deallocate()
        readAhead.deallocate()
    }

    /// Connects to `host:port`, with a deadline for the TCP handshake; with `tls`, over TLS (the TLS handshake runs
    /// on the first write, within the connection's timeouts, and checks that the certificate names `host`).
    public static func connect(
        host: String, port: UInt16, timeout: Duration, maxPayloadBytes: Int = WireProtocol.defaultMaxPayloadBytes,
        tls: TLSContext? = nil
    ) throws(SocketError) -> FramedConnection {
        var socket = try Socket.connect(host: host, port: port, timeout: timeout)
        if let tls {
            do {
                socket = try tls.secure(socket, serverName: host)
            } catch {
                socket.close()
                throw error
            }
        }
        return FramedConnection(socket: socket, peer: "\(host):\(port)", maxPayloadBytes: maxPayloadBytes)
    }

    /// Whether the connection runs over TLS.
    public var isTLS: Bool { socket.layer != nil }

    // MARK: Reading (one thread at a time)

    /// Reads the next frame header; nil when the peer closed the connection cleanly between frames.
    public func readHeader() throws(TransportError) -> FrameHeader? {
        let size = WireProtocol.headerSize
        if readEnd - readStart < size {
            // Too few bytes ahead: move them to the front and receive the rest of the header, and whatever follows.
            let buffered = readEnd - readStart
            if buffered > 0, readStart > 0 {
                readAhead.baseAddress!.copyMemory(from: readAhead.baseAddress! + readStart, byteCount: buffered)
            }
            readStart = 0
            readEnd = buffered
            let space = UnsafeMutableRawBufferPointer(rebasing: readAhead[buffered...])
            let received: Int
            do throws(SocketError) {
                if let keepWaitingWhenIdle, buffered == 0 {
                    // Idle between frames: wait while the server says so, then the frame budget runs.
                    received = try socket.readAtLeast(
                        size, into: space, deadline: nil, budget: frameBudget, keepWaiting: keepWaitingWhenIdle)
                } else {
                    // Part of this header arrived with the previous frame: the frame has started.
                    let deadline =
                        keepWaitingWhenIdle != nil
                        ? frameBudget.map { MonotonicClock.nanoseconds() &+ $0 } : readDeadline
                    received = try socket.readAtLeast(
                        size - buffered, into: space, deadline: deadline, budget: nil, keepWaiting: nil)
                }
            } catch {
                throw .socket(error)
            }
            readEnd += received
            if readEnd == 0 { return nil }
            if readEnd < size {
                throw .socket(.endOfStream(expected: size, received: readEnd))
            }
        }
        if keepWaitingWhenIdle != nil {
            frameDeadline = frameBudget.map { MonotonicClock.nanoseconds() &+ $0 }
        }
        let bytes = UnsafeRawBufferPointer(rebasing: readAhead[readStart..<(readStart + size)])
        readStart += size
        do throws(WireError) {
            return try FrameHeader.decode(bytes, maxPayloadBytes: maxPayloadBytes)
        } catch {
            throw .wire(error)
        }
    }

    /// Reads `length` payload bytes and returns a view of them, 16-byte aligned, valid until the next read (the
    /// caller may write through it, as the server does when it scales a gradient in place).
    ///
    /// A payload that already sits in the read-ahead at an aligned address is returned where it lies (a 4 KiB
    /// push arrives whole with its header, and copying it out cost more than the rest of its parsing); otherwise
    /// it is read into the reusable receive buffer.
    public func readPayload(length: Int) throws(TransportError) -> UnsafeRawBufferPointer {
        precondition(length <= maxPayloadBytes, "payload length must be checked against the maximum first")
        if length > 0, readEnd - readStart >= length {
            let start = readAhead.baseAddress! + readStart
            if UInt(bitPattern: start) % 16 == 0 {
                readStart += length
                return UnsafeRawBufferPointer(start: start, count: length)
            }
        }
        if receiveBuffer.count < length {
            let newSize = max(length, receiveBuffer.count * 2)
            receiveBuffer.deallocate()
            receiveBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: newSize, alignment: 16)
        }
        let target = UnsafeMutableRawBufferPointer(rebasing: receiveBuffer[0..<length])
        try read(into: target)
        return UnsafeRawBufferPointer(target)
    }

    /// Reads exactly `destination.count` bytes straight into `destination` (a tensor's final buffer).
    public func readPayload(into destination: UnsafeMutableRawBufferPointer) throws(TransportError) {
        try read(into: destination)
    }

    /// Whether bytes already received wait in the read-ahead or a TLS layer (the socket itself may then look
    /// idle); reading thread only.
    public var hasBufferedBytes: Bool { readEnd > readStart || socket.layerHasBufferedBytes }

    /// Fills `target` from the read-ahead, then from the socket: straight into `target` when at least
    /// `directReadBytes` are missing, otherwise through the read-ahead (one `recv` that may bring more).
    private func read(into target: UnsafeMutableRawBufferPointer) throws(TransportError) {
        guard let base = target.baseAddress, target.count > 0 else { return }
        let fromBuffer = min(readEnd - readStart, target.count)
        if fromBuffer > 0 {
            base.copyMemory(from: readAhead.baseAddress! + readStart, byteCount: fromBuffer)
            readStart += fromBuffer
        }
        let missing = target.count - fromBuffer
        guard missing > 0 else { return }
        // The read-ahead is empty here: every byte it held went into `target`.
        readStart = 0
        readEnd = 0
        let deadline = frameDeadline ?? readDeadline
        do throws(SocketError) {
            if missing >= Self.directReadBytes {
                do {
                    try socket.readExactly(
                        into: UnsafeMutableRawBufferPointer(rebasing: target[fromBuffer...]), deadline: deadline)
                } catch .endOfStream(_, let received) {
                    // Counted over the whole read, as when it goes through the read-ahead.
                    throw .endOfStream(expected: target.count, received: fromBuffer + received)
                }
                return
            }
            let received = try socket.readAtLeast(
                missing, into: readAhead, deadline: deadline, budget: nil, keepWaiting: nil)
            guard received >= missing else {
                throw SocketError.endOfStream(expected: target.count, received: fromBuffer + received)
            }
            (base + fromBuffer).copyMemory(from: readAhead.baseAddress!, byteCount: missing)
            readStart = missing
            readEnd = received
        } catch {
            throw .socket(error)
        }
    }

    /// Reads and discards `length` bytes (the payload of a frame we reject but can step over).
    public func skipPayload(length: Int) throws(TransportError) {
        var remaining = length
        while remaining > 0 {
            let chunk = min(remaining, 1 << 20)
            _ = try readPayload(length: chunk)
            remaining -= chunk
        }
    }

    /// Reads a whole frame's payload and decodes it as a message (the control path; allocates).
    public func readMessage() throws(TransportError) -> (header: FrameHeader, message: Message)? {
        guard let header = try readHeader() else { return nil }
        let payload = try readPayload(length: Int(header.payloadLength))
        do throws(WireError) {
            return (header, try MessageCodec.decodePayload(type: header.type, payload))
        } catch {
            throw .wire(error)
        }
    }

    // MARK: Writing (any thread)

    /// Sends a control message as one frame.
    public func send(_ message: Message, requestID: UInt64) throws(TransportError) {
        let frame = MessageCodec.encodeFrame(message, requestID: requestID)
        let empty = UnsafeRawBufferPointer(start: nil, count: 0)
        let result = frame.withUnsafeBytes { bytes in
            Result { () throws(TransportError) in try write(bytes, empty, empty) }
        }
        try result.get()
    }

    /// Sends an error frame echoing `requestID`.
    public func sendError(_ code: ErrorCode, _ text: String, requestID: UInt64) throws(TransportError) {
        try send(.error(ErrorMessage(code: code, message: text)), requestID: requestID)
    }

    /// Sends a push or push-pull frame: header, 24-byte prefix and the gradient floats in one `writev`.
    public func sendPush(
        _ type: MessageType, prefix: PushPrefix, floats: UnsafeBufferPointer<Float>, requestID: UInt64
    ) throws(TransportError) {
        precondition(Int(prefix.count) == floats.count, "push prefix count must match the float count")
        let payloadLength = PushPrefix.size + floats.count * 4
        // Clamped, not converted: a length past 4 GiB fails sendTensorFrame's maximum check instead of trapping here.
        try sendTensorFrame(
            header: FrameHeader(
                type: type, flags: [], payloadLength: UInt32(clamping: payloadLength), requestID: requestID),
            prefixSize: PushPrefix.size, encodePrefix: { prefix.encode(into: $0) }, floats: floats)
    }

    /// Sends a pull reply: header, 16-byte prefix and the shard's floats in one `writev`.
    public func sendPullReply(
        prefix: PullReplyPrefix, floats: UnsafeBufferPointer<Float>, requestID: UInt64
    ) throws(TransportError) {
        precondition(Int(prefix.count) == floats.count, "pull reply prefix count must match the float count")
        let payloadLength = PullReplyPrefix.size + floats.count * 4
        try sendTensorFrame(
            header: FrameHeader(
                type: .pullReply, flags: .reply, payloadLength: UInt32(clamping: payloadLength), requestID: requestID),
            prefixSize: PullReplyPrefix.size, encodePrefix: { prefix.encode(into: $0) }, floats: floats)
    }

    /// Sends an exchange: header, the prefix (clock report and base versions) and the flat gradient in one
    /// `writev`.
    public func sendExchange(
        prefix: ExchangePrefix, floats: UnsafeBufferPointer<Float>, requestID: UInt64
    ) throws(TransportError) {
        precondition(Int(prefix.count) == floats.count, "exchange prefix count must match the float count")
        try sendTensorFrame(
            header: FrameHeader(
                type: .exchange, flags: [], payloadLength: UInt32(prefix.size + floats.count * 4),
                requestID: requestID),
            prefixSize: prefix.size, encodePrefix: { prefix.encode(into: $0) }, floats: floats)
    }

    /// Sends a compressed exchange: header, the prefix (whose `encoding` says how) and the encoded gradient
    /// `body` in one `writev`.
    public func sendExchange(
        prefix: ExchangePrefix, body: UnsafeRawBufferPointer, requestID: UInt64
    ) throws(TransportError) {
        precondition(prefix.encoding != .none, "a compressed exchange names its encoding")
        try sendTensorFrame(
            header: FrameHeader(
                type: .exchange, flags: [], payloadLength: UInt32(prefix.size + body.count), requestID: requestID),
            prefixSize: prefix.size, encodePrefix: { prefix.encode(into: $0) }, body: body)
    }

    /// Sends an exchange reply: header, the prefix (job state and versions) and the flat weights in one `writev`.
    public func sendExchangeReply(
        prefix: ExchangeReplyPrefix, floats: UnsafeBufferPointer<Float>, requestID: UInt64
    ) throws(TransportError) {
        precondition(Int(prefix.count) == floats.count, "exchange reply prefix count must match the float count")
        try sendTensorFrame(
            header: FrameHeader(
                type: .exchangeReply, flags: .reply, payloadLength: UInt32(prefix.size + floats.count * 4),
                requestID: requestID),
            prefixSize: prefix.size, encodePrefix: { prefix.encode(into: $0) }, floats: floats)
    }

    /// Sends an exchange reply whose weights are `parts` back to back (each owned shard's weights where they lie,
    /// no copy into one buffer): header, prefix and every part in one gathering write.
    public func sendExchangeReply(
        prefix: ExchangeReplyPrefix, parts: [UnsafeBufferPointer<Float>], requestID: UInt64
    ) throws(TransportError) {
        let count = parts.reduce(0) { $0 + $1.count }
        precondition(Int(prefix.count) == count, "exchange reply prefix count must match the parts' float count")
        let header = FrameHeader(
            type: .exchangeReply, flags: .reply, payloadLength: UInt32(prefix.size + count * 4), requestID: requestID)
        guard Int(header.payloadLength) <= maxPayloadBytes else {
            throw .wire(.frameTooLarge(length: Int(header.payloadLength), maximum: maxPayloadBytes))
        }
        try withUnsafeTemporaryAllocation(byteCount: WireProtocol.headerSize + prefix.size, alignment: 8) {
            (head: UnsafeMutableRawBufferPointer) throws(TransportError) in
            header.encode(into: UnsafeMutableRawBufferPointer(rebasing: head[0..<WireProtocol.headerSize]))
            prefix.encode(into: UnsafeMutableRawBufferPointer(rebasing: head[WireProtocol.headerSize...]))
            try writeFrame { () throws(SocketError) in
                try socket.writeAll(count: parts.count + 1) { index in
                    index == 0 ? UnsafeRawBufferPointer(head) : UnsafeRawBufferPointer(parts[index - 1])
                }
            }
        }
    }

    /// Sends an exchange reply whose weights travel compressed (`prefix.encoding` fp16 or bf16) in `body`.
    public func sendExchangeReply(
        prefix: ExchangeReplyPrefix, body: UnsafeRawBufferPointer, requestID: UInt64
    ) throws(TransportError) {
        precondition(prefix.encoding != .none, "a compressed exchange reply names its encoding")
        try sendTensorFrame(
            header: FrameHeader(
                type: .exchangeReply, flags: .reply, payloadLength: UInt32(prefix.size + body.count),
                requestID: requestID),
            prefixSize: prefix.size, encodePrefix: { prefix.encode(into: $0) }, body: body)
    }

    /// Sends a push acknowledgement from a stack buffer: no allocation on the small-message reply path.
    public func sendPushAck(_ ack: PushAck, requestID: UInt64) throws(TransportError) {
        try sendTensorFrame(
            header: FrameHeader(
                type: .pushAck, flags: .reply, payloadLength: UInt32(PushAck.size), requestID: requestID),
            prefixSize: PushAck.size, encodePrefix: { ack.encode(into: $0) },
            floats: UnsafeBufferPointer(start: nil, count: 0))
    }

    /// Sends a pull request from a stack buffer, with no allocation.
    public func sendPull(_ pull: Pull, requestID: UInt64) throws(TransportError) {
        try sendTensorFrame(
            header: FrameHeader(type: .pull, flags: [], payloadLength: UInt32(Pull.size), requestID: requestID),
            prefixSize: Pull.size, encodePrefix: { pull.encode(into: $0) },
            floats: UnsafeBufferPointer(start: nil, count: 0))
    }

    private func sendTensorFrame(
        header: FrameHeader, prefixSize: Int, encodePrefix: (UnsafeMutableRawBufferPointer) -> Void,
        floats: UnsafeBufferPointer<Float>
    ) throws(TransportError) {
        try sendTensorFrame(
            header: header, prefixSize: prefixSize, encodePrefix: encodePrefix, body: UnsafeRawBufferPointer(floats))
    }

    private func sendTensorFrame(
        header: FrameHeader, prefixSize: Int, encodePrefix: (UnsafeMutableRawBufferPointer) -> Void,
        body: UnsafeRawBufferPointer
    ) throws(TransportError) {
        guard Int(header.payloadLength) <= maxPayloadBytes else {
            throw .wire(.frameTooLarge(length: Int(header.payloadLength), maximum: maxPayloadBytes))
        }
        try withUnsafeTemporaryAllocation(byteCount: WireProtocol.headerSize + prefixSize, alignment: 8) {
            (head: UnsafeMutableRawBufferPointer) throws(TransportError) in
            header.encode(into: UnsafeMutableRawBufferPointer(rebasing: head[0..<WireProtocol.headerSize]))
            encodePrefix(UnsafeMutableRawBufferPointer(rebasing: head[WireProtocol.headerSize...]))
            try write(UnsafeRawBufferPointer(head), body, UnsafeRawBufferPointer(start: nil, count: 0))
        }
    }

    private func write(
        _ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer, _ c: UnsafeRawBufferPointer
    ) throws(TransportError) {
        try writeFrame { () throws(SocketError) in try socket.writeAll(a, b, c) }
    }

    /// Runs `writeAll`, the writes of one whole frame, under the write lock, so no other frame comes between them.
    private func writeFrame(_ writeAll: () throws(SocketError) -> Void) throws(TransportError) {
        let result: Result<Void, TransportError> = writeLock.withLock { framesWritten in
            // Checked under the lock: `close()` releases the descriptor under it too.
            guard !closed.load(ordering: .acquiring) else { return .failure(.closed) }
            framesWritten += 1
            return Result { () throws(SocketError) in try writeAll() }.mapError { .socket($0) }
        }
        try result.get()
    }

    // MARK: Lifetime

    /// Wakes a thread blocked reading this connection (it sees end-of-stream) without releasing the descriptor.
    public func shutdown() {
        socket.shutdown()
    }

    /// Half-closes the receiving side: a blocked or later read sees end-of-stream, while replies can still be sent.
    public func shutdownReceive() {
        socket.shutdownReceive()
    }

    /// Half-closes the sending side: the peer sees end-of-stream after the frames already sent, while replies can
    /// still be read.
    public func shutdownSend() {
        socket.shutdownSend()
    }

    /// Whether the peer has closed its side or reset the connection (a non-blocking `poll`); used by waits that
    /// must not outlive their peer.
    public func peerHasHungUp() -> Bool {
        socket.peerHasHungUp()
    }

    /// Waits up to `milliseconds` for a frame's first byte (or end of stream); consumes nothing. True at once when
    /// the read-ahead or a TLS layer holds bytes. Reading thread only (it looks at the read-ahead).
    public func waitUntilReadable(milliseconds: Int32) -> Bool {
        readEnd > readStart || socket.waitUntilReadable(milliseconds: milliseconds)
    }

    /// Waits up to `milliseconds` for `condition` on the socket itself or for `wake` to be signalled (see
    /// `Socket.wait(for:orWake:milliseconds:)`); consumes nothing. Unlike the read methods, any thread may call it
    /// while another reads: it looks neither at the read-ahead nor at a TLS layer's buffer (the reading thread
    /// checks ``hasBufferedBytes`` before it lets go).
    public func wait(for condition: SocketCondition, orWake wake: WakePipe, milliseconds: Int32) -> SocketWaitEvent {
        socket.wait(for: condition, orWake: wake, milliseconds: milliseconds)
    }

    /// Sets when the reads that follow must be complete (monotonic nanoseconds; nil: none), for a connection whose
    /// receive timeout is a short tick: a read then goes on past each tick until the deadline (reading thread
    /// only). Not used with ``setReadDeadlines(tick:frame:keepWaiting:)``, whose frame budget takes its place.
    public func setReadDeadline(_ deadline: UInt64?) {
        readDeadline = deadline
    }

    /// Bounds how long one read may block (nil: no bound); a read past it throws a timeout.
    public func setReceiveTimeout(_ timeout: Duration?) throws(TransportError) {
        do throws(SocketError) {
            try socket.setReceiveTimeout(timeout)
        } catch {
            throw .socket(error)
        }
    }

    /// Bounds reading (reader thread only): `tick` is the receive timeout (`SO_RCVTIMEO`), how often an idle
    /// wait asks `keepWaiting` whether to go on (false: the read throws a `timedOut("idle")` socket error); once a
    /// frame's first byte arrived, the whole frame must arrive within `frame` or the read throws a timeout.
    public func setReadDeadlines(
        tick: Duration, frame: Duration, keepWaiting: @escaping () -> Bool
    ) throws(TransportError) {
        try setReceiveTimeout(tick)
        setFrameBudget(frame)
        keepWaitingWhenIdle = keepWaiting
    }

    /// Changes the frame budget set by ``setReadDeadlines(tick:frame:keepWaiting:)`` (reader thread only).
    public func setFrameBudget(_ frame: Duration) {
        let seconds = UInt64(clamping: frame.components.seconds)
        frameBudget =
            seconds > UInt64.max / 2_000_000_000
            ? UInt64.max / 2
            : seconds * 1_000_000_000 + UInt64(clamping: frame.components.attoseconds / 1_000_000_000)
    }

    /// Bounds how long one write may make no progress (`SO_SNDTIMEO`): a peer that does not read its replies
    /// makes the send throw a timeout instead of blocking forever.
    public func setSendTimeout(_ timeout: Duration?) throws(TransportError) {
        do throws(SocketError) {
            try socket.setSendTimeout(timeout)
        } catch {
            throw .socket(error)
        }
    }

    /// Writes raw bytes, bypassing the framing: only for tests that must send malformed frames.
    public func writeRawForTesting(_ bytes: UnsafeRawBufferPointer) throws(TransportError) {
        try write(bytes, UnsafeRawBufferPointer(start: nil, count: 0), UnsafeRawBufferPointer(start: nil, count: 0))
    }

    /// Releases the descriptor once; later calls do nothing.
    ///
    /// Call it only when no thread can still be reading (from the reader thread itself, or after it ended):
    /// a descriptor number is reused by the next socket the process opens, so a read racing a close could
    /// steal another connection's bytes. Writers are safe: the descriptor is closed under the write lock and
    /// later writes throw `.closed`.
    public func close() {
        if !closed.exchange(true, ordering: .acquiringAndReleasing) {
            socket.shutdown()
            writeLock.withLock { _ in socket.close() }
        }
    }

    /// Whether `close()` has been called.
    public var isClosed: Bool { closed.load(ordering: .acquiring) }
}

/// Why a framed connection failed: the socket (peer gone, timeout) or the bytes (malformed frame).
public enum TransportError: Error, CustomStringConvertible, Sendable, Equatable {
    case socket(SocketError)
    case wire(WireError)
    case closed
    /// The peer answered with an error frame.
    case remote(code: ErrorCode, message: String)
    /// The peer sent something the protocol does not allow at this point.
    case protocolViolation(String)

    public var description: String {
        switch self {
        case .socket(let error): return "\(error)"
        case .wire(let error): return "malformed frame: \(error)"
        case .closed: return "connection closed"
        case .remote(let code, let message): return "\(message) (\(code))"
        case .protocolViolation(let text): return "protocol violation: \(text)"
        }
    }
}
