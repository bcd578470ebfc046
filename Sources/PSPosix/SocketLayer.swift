/// A protocol layered over a connected socket's byte stream, such as TLS: once a ``Socket`` carries a layer
/// (``Socket/layered(_:)``), its reads and writes go through the layer instead of `recv` and `sendmsg`.
///
/// The layer never blocks: the socket's descriptor is non-blocking once layered, and a call that needs the
/// network answers ``SocketLayerProgress/wantRead`` or ``SocketLayerProgress/wantWrite``. The socket then waits
/// with `poll`, bounded by its receive or send timeout (`SO_RCVTIMEO` / `SO_SNDTIMEO`), so every deadline of the
/// plain socket holds unchanged. One thread may read while others write: the layer serialises its own state.
public protocol SocketLayer: AnyObject, Sendable {
    /// Reads up to `buffer.count` bytes: `.done(n)` with n > 0, `.done(0)` at the end of the stream.
    func read(into buffer: UnsafeMutableRawBufferPointer) throws(SocketError) -> SocketLayerProgress
    /// Writes up to `bytes.count` bytes: `.done(n)` with the number taken.
    func write(_ bytes: UnsafeRawBufferPointer) throws(SocketError) -> SocketLayerProgress
    /// Bytes the layer already holds for the reader, which `poll` on the descriptor cannot see.
    var bufferedByteCount: Int { get }
    /// Ends the layer (best effort, never blocks) and releases its state; later calls throw ``SocketError/closed``.
    func close()
}

/// What one call of a ``SocketLayer`` achieved.
public enum SocketLayerProgress: Sendable, Equatable {
    /// This many bytes were transferred (0 from a read: end of stream).
    case done(Int)
    /// Nothing yet: the layer needs the descriptor to become readable.
    case wantRead
    /// Nothing yet: the layer needs the descriptor to become writable.
    case wantWrite
}
