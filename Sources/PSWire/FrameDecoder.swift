/// Incremental decoder (swift-nio style): nil = need more bytes, throw = malformed. After a throw it stays failed.
///
/// Feed it bytes as they arrive, in chunks of any size, with `append`; call `next()` until it returns nil.
///
/// ```
/// +----------------------------- frame -----------------------------+
/// | header (24 bytes, payloadLength = n)   | payload (n bytes)       |
/// +----------------------------------------+-------------------------+
///   waitingForHeader: needs 24 bytes          waitingForPayload(header): needs n bytes
/// ```
///
/// The payload length is checked against `maxPayloadBytes` as soon as a header's 24 bytes have arrived, and `append`
/// buffers nothing past a header that fails the check, so an oversized or garbage length never makes it allocate.
/// An error inside a payload (a bad field, an unknown type) consumes that frame; `next()` then stays failed, while
/// `nextRawFrame()` lets a caller answer such a frame itself and keep going.
public struct FrameDecoder: Sendable {
    private enum State: Sendable {
        case waitingForHeader
        case waitingForPayload(FrameHeader)
    }

    /// The largest payload accepted; a longer frame fails with `frameTooLarge`.
    public let maxPayloadBytes: Int

    private var state = State.waitingForHeader
    private var buffer: [UInt8] = []
    /// The offset in `buffer` of the first byte `next()` has not consumed.
    private var readIndex = 0
    /// The offset in `buffer` of the next header `append` has not yet checked; `append` buffers at most up to its end.
    private var uncheckedHeaderOffset = 0
    /// Set when `append` found a bad header: input after it is dropped (`next()` reports the error when it gets there).
    private var inputStopped = false
    private var failure: WireError?

    /// Creates a decoder that refuses payloads longer than `maxPayloadBytes`.
    public init(maxPayloadBytes: Int = WireProtocol.defaultMaxPayloadBytes) {
        self.maxPayloadBytes = maxPayloadBytes
    }

    /// The number of bytes received and not yet consumed by `next()`.
    public var bufferedByteCount: Int { buffer.count - readIndex }

    /// Whether a previous call threw; every later `next()` throws the same error.
    public var hasFailed: Bool { failure != nil }

    /// Adds received bytes.
    public mutating func append(_ bytes: UnsafeRawBufferPointer) {
        guard failure == nil, !inputStopped else { return }
        compact()
        var offset = 0
        while offset < bytes.count, !inputStopped {
            let headerEnd = uncheckedHeaderOffset + WireProtocol.headerSize
            let take = min(bytes.count - offset, headerEnd - buffer.count)
            buffer.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[offset..<offset + take]))
            offset += take
            if buffer.count == headerEnd { checkUncheckedHeader() }
        }
    }

    /// Adds received bytes.
    public mutating func append(_ bytes: some Sequence<UInt8>) {
        let appended: Void? = bytes.withContiguousStorageIfAvailable { append(UnsafeRawBufferPointer($0)) }
        if appended == nil {
            Array(bytes).withUnsafeBytes { append($0) }
        }
    }

    /// The next complete frame with its message decoded, nil if more bytes are needed; throws on malformed input.
    public mutating func next() throws(WireError) -> Frame? {
        if let failure { throw failure }
        do throws(WireError) {
            guard let header = try nextHeaderWithPayload() else { return nil }
            let start = readIndex
            let end = start + Int(header.payloadLength)
            readIndex = end
            state = .waitingForHeader
            let message = try withBufferBytes(start..<end) { (payload) throws(WireError) in
                try MessageCodec.decodePayload(type: header.type, payload)
            }
            return Frame(header: header, message: message)
        } catch {
            fail(error)
            throw error
        }
    }

    /// The next complete frame's header and raw payload, nil if more bytes are needed; throws on a bad header.
    ///
    /// The payload is not decoded, so an unknown message type or a bad field does not fail the decoder: the caller
    /// decodes with `MessageCodec.decodePayload` and answers errors itself.
    public mutating func nextRawFrame() throws(WireError) -> (header: FrameHeader, payload: [UInt8])? {
        if let failure { throw failure }
        do throws(WireError) {
            guard let header = try nextHeaderWithPayload() else { return nil }
            let payload = Array(buffer[readIndex..<readIndex + Int(header.payloadLength)])
            readIndex += payload.count
            state = .waitingForHeader
            return (header, payload)
        } catch {
            fail(error)
            throw error
        }
    }

    /// Call when the stream has ended, after `next()` returned nil: throws if a frame was cut off.
    ///
    /// Throws `truncatedHeader` for a partial header, `truncatedBody` for a partial payload, or the earlier failure.
    public func finish() throws(WireError) {
        if let failure { throw failure }
        let available = buffer.count - readIndex
        switch state {
        case .waitingForHeader:
            guard available > 0 else { return }
            guard available >= WireProtocol.headerSize else { throw .truncatedHeader(got: available) }
            let length = buffer.withUnsafeBytes {
                ByteReader($0).getInteger(at: readIndex + 12, as: UInt32.self) ?? 0
            }
            let got = available - WireProtocol.headerSize
            if got < Int(length) { throw .truncatedBody(expected: Int(length), got: got) }
        case .waitingForPayload(let header):
            if available < Int(header.payloadLength) {
                throw .truncatedBody(expected: Int(header.payloadLength), got: available)
            }
        }
    }

    /// Moves through the two states; returns the header once its whole payload is buffered at `readIndex`.
    private mutating func nextHeaderWithPayload() throws(WireError) -> FrameHeader? {
        if case .waitingForHeader = state {
            guard buffer.count - readIndex >= WireProtocol.headerSize else { return nil }
            let start = readIndex
            let maximum = maxPayloadBytes
            let header = try withBufferBytes(start..<start + WireProtocol.headerSize) { (bytes) throws(WireError) in
                try FrameHeader.decode(bytes, maxPayloadBytes: maximum)
            }
            readIndex += WireProtocol.headerSize
            state = .waitingForPayload(header)
        }
        guard case .waitingForPayload(let header) = state,
            buffer.count - readIndex >= Int(header.payloadLength)
        else { return nil }
        return header
    }

    /// Validates the header ending at the end of `buffer`, then either skips ahead past its payload or stops input.
    private mutating func checkUncheckedHeader() {
        let start = uncheckedHeaderOffset
        let maximum = maxPayloadBytes
        let length = buffer.withUnsafeBytes { bytes -> Int? in
            let header = try? FrameHeader.decode(
                UnsafeRawBufferPointer(rebasing: bytes[start..<start + WireProtocol.headerSize]),
                maxPayloadBytes: maximum
            )
            return header.map { Int($0.payloadLength) }
        }
        if let length {
            uncheckedHeaderOffset += WireProtocol.headerSize + length
        } else {
            inputStopped = true
        }
    }

    /// Drops consumed bytes from the front of the buffer once that frees enough to be worth a move.
    private mutating func compact() {
        guard readIndex > 0 else { return }
        guard readIndex == buffer.count || (readIndex >= 4096 && readIndex * 2 >= buffer.count) else { return }
        buffer.removeSubrange(0..<readIndex)
        uncheckedHeaderOffset -= readIndex
        readIndex = 0
    }

    /// Calls `body` with a view of `buffer[range]`, keeping the error typed.
    private func withBufferBytes<Result>(
        _ range: Range<Int>,
        _ body: (UnsafeRawBufferPointer) throws(WireError) -> Result
    ) throws(WireError) -> Result {
        let outcome = buffer.withUnsafeBytes { bytes in
            Swift.Result { () throws(WireError) in try body(UnsafeRawBufferPointer(rebasing: bytes[range])) }
        }
        return try outcome.get()
    }

    private mutating func fail(_ error: WireError) {
        failure = error
        buffer = []
        readIndex = 0
        uncheckedHeaderOffset = 0
    }
}
