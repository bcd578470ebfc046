#if canImport(Glibc)
    import Glibc
#endif

/// A non-blocking pipe one thread writes to so that another, asleep in `poll` on it and something else, wakes up.
///
/// Writes never block (a full pipe already wakes the poller) and reads drain it; both descriptors are closed only
/// by `close()`, which the owner calls once no thread can use the pipe any more.
///
/// ```swift
/// let wake = try WakePipe()
/// wake.signal()                         // from any thread
/// if socket.wait(for: .hangUp, orWake: wake, milliseconds: 1_000) == .woken { wake.drain() }
/// ```
public final class WakePipe: Sendable {
    /// The end `poll` waits on.
    let readDescriptor: Int32
    private let writeDescriptor: Int32

    /// Opens the pipe (both ends non-blocking and close-on-exec).
    public init() throws(SocketError) {
        var descriptors: [Int32] = [-1, -1]
        try systemCall("pipe") { pipe(&descriptors) }  // pipe2 needs _GNU_SOURCE, which the Glibc module lacks
        for descriptor in descriptors {
            _ = fcntl(descriptor, F_SETFD, FD_CLOEXEC)
            _ = fcntl(descriptor, F_SETFL, fcntl(descriptor, F_GETFL) | O_NONBLOCK)
        }
        readDescriptor = descriptors[0]
        writeDescriptor = descriptors[1]
    }

    /// Wakes the thread polling the pipe (or its next poll); ignores a full pipe, which is already readable.
    public func signal() {
        var byte: UInt8 = 1
        _ = try? valueOrErrno { write(writeDescriptor, &byte, 1) }
    }

    /// Reads every pending wake-up byte without blocking.
    public func drain() {
        var bytes = (UInt64(0), UInt64(0))
        while let count = try? valueOrErrno({ read(readDescriptor, &bytes, MemoryLayout.size(ofValue: bytes)) }),
            count > 0
        {}
    }

    /// Closes both ends; call once, when no thread can signal, drain or poll it any more.
    public func close() {
        _ = try? nothingOrErrno(retryOnInterrupt: false) { Glibc.close(readDescriptor) }
        _ = try? nothingOrErrno(retryOnInterrupt: false) { Glibc.close(writeDescriptor) }
    }
}

/// What a ``Socket/wait(for:orWake:milliseconds:)`` waits for on the socket.
public enum SocketCondition: Sendable, Equatable {
    /// Data, end of stream or an error can be read.
    case readable
    /// The peer closed or reset the connection, or it failed (unread data may still be queued before the end).
    case hangUp
}

/// What ended a ``Socket/wait(for:orWake:milliseconds:)``.
public enum SocketWaitEvent: Sendable, Equatable {
    /// The socket condition holds.
    case ready
    /// The wake pipe was signalled.
    case woken
    /// The time ran out (or a signal interrupted the wait).
    case timedOut
}
