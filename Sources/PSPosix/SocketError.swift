/// A failure of a socket operation, naming the address or operation involved.
public enum SocketError: Error, Equatable, Sendable, CustomStringConvertible {
    /// `getaddrinfo` could not resolve `host`; `reason` is its message (`gai_strerror`).
    case resolve(host: String, reason: String)
    /// No connection to `address` (such as `127.0.0.1:7000`) was established within `seconds`.
    case connectTimedOut(address: String, seconds: Double)
    /// Connecting to `address` failed with `errno` (for example ``Errno/connectionRefused``).
    case connect(address: String, errno: Errno)
    /// The peer closed the connection after `received` of the `expected` bytes of one read.
    case endOfStream(expected: Int, received: Int)
    /// A receive or send timeout set on the socket expired during `operation` (`"read"` or `"write"`).
    case timedOut(operation: String)
    /// Another system call failed: `operation` names it and the address where one is involved.
    case system(operation: String, errno: Errno)
    /// The socket was shut down or closed while the operation was in progress (or before it started).
    case closed
    /// The TLS layer failed: a handshake refused (certificate, protocol) or a corrupt record; `reason` says which.
    case tls(String)

    /// A sentence naming the address, the counts or the error number.
    public var description: String {
        switch self {
        case .resolve(let host, let reason):
            return "cannot resolve host '\(host)': \(reason)"
        case .connectTimedOut(let address, let seconds):
            return "connect to \(address) timed out after \(seconds) s"
        case .connect(let address, let errno):
            return "connect to \(address) failed: \(errno)"
        case .endOfStream(let expected, let received):
            return "connection closed by the peer after \(received) of \(expected) bytes"
        case .timedOut(let operation):
            return "socket \(operation) timed out"
        case .system(let operation, let errno):
            return "\(operation) failed: \(errno)"
        case .closed:
            return "the socket is closed"
        case .tls(let reason):
            return "TLS: \(reason)"
        }
    }
}
