import PSPosix
import PSSecurity
import PSWire
import Synchronization  // Atomic

/// A TCP connection that carries PSWire frames, copy-free on the tensor path.
///
/// Reading is done by one thread at a time (the connection's reader, or threads that hand a lock between them,
/// which orders their reads); writing may come from any thread and is
/// serialised by a per-connection write lock, so a frame is never interleaved with another. Tensor frames are
/// written with one `writev` of header, prefix and the caller's float buffer, and read straight into a
/// caller-chosen destination or into a receive buffer that is reused across messages.
public final class FramedConnection: @unchecked Sendable {
    // @unchecked Sendable: `receiveBuffer`, `frameBudget`, `frameDeadline` and `keepWaitingWhenIdle` are touched
    // only by the one thread reading at a time (documented contract of the read* and setReadDeadlines methods);
    // every other stored property is immutable, a LockedValue or an Atomic.

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
    }

    deinit {
        receiveBuffer.deallocate()
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
        try withUnsafeTemporaryAllocation(byteCount: WireProtocol.headerSize, alignment: 8) {
            (bytes: UnsafeMutableRawBufferPointer) throws(TransportError) -> FrameHeader? in
            let complete: Bool
            do throws(SocketError) {
                if let keepWaitingWhenIdle {
                    complete = try socket.readStart(into: bytes, budget: frameBudget, keepWaiting: keepWaitingWhenIdle)
                    frameDeadline = frameBudget.map { MonotonicClock.nanoseconds() &+ $0 }
                } else {
                    complete = try socket.readExactlyOrEOF(into: bytes)
                }
            } catch {
                throw .socket(error)
            }
            guard complete else { return nil }
            do throws(WireError) {
                return try FrameHeader.decode(UnsafeRawBufferPointer(bytes), maxPayloadBytes: maxPayloadBytes)
            } catch {
                throw .wire(error)
            }
        }
    }

    /// Reads `length` payload bytes into the reusable receive buffer; the view is valid until the next read.
    public func readPayload(length: Int) throws(TransportError) -> UnsafeRawBufferPointer {
        precondition(length <= maxPayloadBytes, "payload length must be checked against the maximum first")
        if receiveBuffer.count < length {
            let newSize = max(length, receiveBuffer.count * 2)
            receiveBuffer.deallocate()
            receiveBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: newSize, alignment: 16)
        }
        let target = UnsafeMutableRawBufferPointer(rebasing: receiveBuffer[0..<length])
        do throws(SocketError) {
            try socket.readExactly(into: target, deadline: frameDeadline)
        } catch {
            throw .socket(error)
        }
        return UnsafeRawBufferPointer(target)
    }

    /// Reads exactly `destination.count` bytes straight into `destination` (a tensor's final buffer).
    public func readPayload(into destination: UnsafeMutableRawBufferPointer) throws(TransportError) {
        guard destination.count > 0 else { return }
        do throws(SocketError) {
            try socket.readExactly(into: destination, deadline: frameDeadline)
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
        let result: Result<Void, TransportError> = writeLock.withLock { framesWritten in
            // Checked under the lock: `close()` releases the descriptor under it too.
            guard !closed.load(ordering: .acquiring) else { return .failure(.closed) }
            framesWritten += 1
            return Result { () throws(SocketError) in try socket.writeAll(a, b, c) }.mapError { .socket($0) }
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

    /// Waits up to `milliseconds` for a frame's first byte (or end of stream); consumes nothing.
    public func waitUntilReadable(milliseconds: Int32) -> Bool {
        socket.waitUntilReadable(milliseconds: milliseconds)
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
