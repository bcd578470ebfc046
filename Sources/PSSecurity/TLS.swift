import COpenSSL
import PSPosix

#if canImport(Glibc)
    import Glibc  // errno after SSL_ERROR_SYSCALL
#endif

/// Optional TLS from Debian's OpenSSL (libssl), layered over SwiftPS's blocking sockets (``TLSStream``).
///
/// A server context holds the server's certificate chain and key and, for mutual TLS, the CA that client
/// certificates must chain to (a client without one is refused during the handshake). A client context holds the
/// CA that the server's certificate must chain to (or the system's CA store) and, for mutual TLS, the client's own
/// certificate and key. TLS 1.2 is the minimum; no session tickets; renegotiation off.
public final class TLSContext: @unchecked Sendable {
    // @unchecked Sendable: `context` is configured in the initialiser and only read afterwards (SSL_new, which
    // OpenSSL allows from any thread); it is freed in deinit.
    private let context: OpaquePointer
    /// Whether this is a server context.
    public let isServer: Bool
    /// What a server writes, in clear, to a peer whose first byte is not a TLS handshake (a plaintext client):
    /// a frame of the wire protocol that says TLS is required. Empty: close without a word.
    private let plaintextRefusal: [UInt8]

    private init(context: OpaquePointer, isServer: Bool, plaintextRefusal: [UInt8]) {
        self.context = context
        self.isServer = isServer
        self.plaintextRefusal = plaintextRefusal
    }

    deinit {
        SSL_CTX_free(context)
    }

    /// A server context: `certificate` (PEM chain, leaf first) and `key` (PEM); with `clientCA`, every client must
    /// present a certificate that chains to it (mutual TLS). `plaintextRefusal` is sent to a plaintext client.
    public static func server(
        certificate: String, key: String, clientCA: String?, plaintextRefusal: [UInt8] = []
    ) throws(SocketError) -> TLSContext {
        let context = try makeContext(server: true)
        let tls = TLSContext(context: context, isServer: true, plaintextRefusal: plaintextRefusal)
        try tls.useCertificate(certificate, key: key)
        if let clientCA {
            try tls.trust(clientCA)
            SSL_CTX_set_verify(context, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nil)
        }
        return tls
    }

    /// A client context: verifies the server's certificate against `ca` (PEM; nil: the system's CA store) and
    /// its name against the host dialled; presents `certificate` and `key` when given (mutual TLS).
    public static func client(certificate: String?, key: String?, ca: String?) throws(SocketError) -> TLSContext {
        let context = try makeContext(server: false)
        let tls = TLSContext(context: context, isServer: false, plaintextRefusal: [])
        if let certificate, let key {
            try tls.useCertificate(certificate, key: key)
        } else if certificate != nil || key != nil {
            throw .tls("a client certificate needs both --tls-cert and --tls-key")
        }
        if let ca {
            try tls.trust(ca)
        } else if SSL_CTX_set_default_verify_paths(context) != 1 {
            throw .tls("cannot load the system's CA certificates: \(TLSContext.errorQueue())")
        }
        SSL_CTX_set_verify(context, SSL_VERIFY_PEER, nil)
        return tls
    }

    /// A server context with a fresh self-signed certificate for 127.0.0.1 and a client context that trusts it
    /// (and nothing else): for benchmarks and tests that need TLS without files.
    public static func selfSignedPair() throws(SocketError) -> (server: TLSContext, client: TLSContext) {
        let server = TLSContext(context: try makeContext(server: true), isServer: true, plaintextRefusal: [])
        let client = TLSContext(context: try makeContext(server: false), isServer: false, plaintextRefusal: [])
        ERR_clear_error()
        guard psssl_self_signed_pair(server.context, client.context) == 1 else {
            throw .tls("cannot make a self-signed certificate: \(errorQueue())")
        }
        SSL_CTX_set_verify(client.context, SSL_VERIFY_PEER, nil)
        return (server, client)
    }

    private static func makeContext(server: Bool) throws(SocketError) -> OpaquePointer {
        // OpenSSL writes with write(2), not send(MSG_NOSIGNAL): a peer that went away would raise SIGPIPE. Every
        // SwiftPS binary ignores it already; a library user who turns TLS on gets the same.
        Signals.ignoreSIGPIPE()
        guard openSSLReady else { throw .tls("OpenSSL failed to initialise") }
        ERR_clear_error()
        guard let context = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method()) else {
            throw .tls("cannot create a TLS context: \(errorQueue())")
        }
        _ = psssl_set_min_tls12(context)
        _ = psssl_ignore_unexpected_eof(context)
        _ = SSL_CTX_set_num_tickets(context, 0)
        psssl_read_ahead(context)
        return context
    }

    private func useCertificate(_ certificate: String, key: String) throws(SocketError) {
        ERR_clear_error()
        guard SSL_CTX_use_certificate_chain_file(context, certificate) == 1 else {
            throw .tls("cannot load the certificate \(certificate): \(TLSContext.errorQueue())")
        }
        guard SSL_CTX_use_PrivateKey_file(context, key, psssl_filetype_pem()) == 1 else {
            throw .tls("cannot load the private key \(key): \(TLSContext.errorQueue())")
        }
        guard SSL_CTX_check_private_key(context) == 1 else {
            throw .tls("the private key \(key) does not match the certificate \(certificate)")
        }
    }

    private func trust(_ ca: String) throws(SocketError) {
        ERR_clear_error()
        guard SSL_CTX_load_verify_locations(context, ca, nil) == 1 else {
            throw .tls("cannot load the CA certificate \(ca): \(TLSContext.errorQueue())")
        }
    }

    /// Layers TLS over a connected `socket`: the server side of the handshake for a server context, the client
    /// side (checking that the certificate names `serverName`, a host name or an IP address) for a client
    /// context. The handshake itself runs on the first read or write, within that call's timeouts.
    public func secure(_ socket: Socket, serverName: String? = nil) throws(SocketError) -> Socket {
        try socket.layered(TLSStream(context: self, socket: socket, serverName: serverName))
    }

    fileprivate func newSession(descriptor: Int32, serverName: String?) throws(SocketError) -> OpaquePointer {
        ERR_clear_error()
        guard let ssl = SSL_new(context) else { throw .tls("cannot create a TLS session: \(TLSContext.errorQueue())") }
        guard SSL_set_fd(ssl, descriptor) == 1 else {
            SSL_free(ssl)
            throw .tls("cannot attach TLS to the socket: \(TLSContext.errorQueue())")
        }
        if isServer {
            SSL_set_accept_state(ssl)
        } else {
            if let serverName, !serverName.isEmpty {
                let isAddress = serverName.contains(":") || serverName.allSatisfy { $0.isNumber || $0 == "." }
                let named =
                    isAddress
                    ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), serverName)
                    : SSL_set1_host(ssl, serverName)
                if !isAddress { _ = psssl_set_host_name(ssl, serverName) }
                guard named == 1 else {
                    SSL_free(ssl)
                    throw .tls("cannot verify against the name '\(serverName)'")
                }
            }
            SSL_set_connect_state(ssl)
        }
        return ssl
    }

    fileprivate var refusal: [UInt8] { plaintextRefusal }

    /// OpenSSL's error queue of this thread as one line (and clears it).
    static func errorQueue() -> String {
        var reasons: [String] = []
        while case let code = ERR_get_error(), code != 0 {
            var buffer = [CChar](repeating: 0, count: 256)
            ERR_error_string_n(code, &buffer, buffer.count)
            reasons.append(String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        return reasons.isEmpty ? "unknown error" : reasons.joined(separator: "; ")
    }
}

/// One TLS session over one socket: the ``SocketLayer`` that `Socket` reads and writes through.
///
/// OpenSSL's `SSL` object must not be used by two threads at once, while a SwiftPS connection is read by one
/// thread and written by others: every call on it holds `session`'s lock. The calls never block (the descriptor
/// is non-blocking), so the lock is held for one record's work, never for a wait on the network.
final class TLSStream: SocketLayer {
    /// The `SSL` object; nil once closed.
    private let session: LockedValue<OpaquePointer?>
    private let context: TLSContext
    /// The plain socket underneath (no layer): for the server's plaintext check before the handshake.
    private let plain: Socket
    /// Whether the first byte was checked to start a TLS record (server side; plaintext clients are refused).
    private let checkedFirstByte: LockedValue<Bool>

    init(context: TLSContext, socket: Socket, serverName: String?) throws(SocketError) {
        self.context = context
        plain = Socket(fileDescriptor: socket.fileDescriptor)
        session = LockedValue(try context.newSession(descriptor: socket.fileDescriptor, serverName: serverName))
        checkedFirstByte = LockedValue(!context.isServer)
    }

    deinit {
        // Not `close()`: no close_notify from here, since the descriptor may already be closed (and its number
        // reused by another connection). Socket.close() ends the layer before it closes the descriptor.
        session.withLock { ssl in ssl.map { SSL_free($0) } }
    }

    func read(into buffer: UnsafeMutableRawBufferPointer) throws(SocketError) -> SocketLayerProgress {
        if !checkedFirstByte.withLock({ $0 }) {
            if let early = try checkFirstByte() { return early }
        }
        let count = Int32(clamping: buffer.count)
        return try call { ssl in SSL_read(ssl, buffer.baseAddress, count) }
    }

    func write(_ bytes: UnsafeRawBufferPointer) throws(SocketError) -> SocketLayerProgress {
        let count = Int32(clamping: bytes.count)
        let progress = try call { ssl in SSL_write(ssl, bytes.baseAddress, count) }
        // The end of the stream is no answer to a write: the peer is gone (without this, a writer would retry
        // a zero-byte write for ever).
        if progress == .done(0), count > 0 { throw .system(operation: "TLS write", errno: .brokenPipe) }
        return progress
    }

    var bufferedByteCount: Int {
        // With read-ahead, received records may wait undecrypted in OpenSSL's buffer (SSL_has_pending).
        session.withLock { ssl in ssl.map { max(Int(SSL_pending($0)), Int(SSL_has_pending($0))) } ?? 0 }
    }

    func close() {
        let ssl = session.withLock { ssl -> OpaquePointer? in
            defer { ssl = nil }
            return ssl
        }
        guard let ssl else { return }
        // close_notify, best effort: the descriptor is non-blocking, so this never waits for the peer.
        if SSL_is_init_finished(ssl) == 1 { _ = SSL_shutdown(ssl) }
        ERR_clear_error()
        SSL_free(ssl)
    }

    /// Server side, before the handshake: a first byte that does not open a TLS handshake record (0x16) is a
    /// plaintext peer; it gets the context's refusal in clear, and the read fails. Nil: go on with TLS.
    private func checkFirstByte() throws(SocketError) -> SocketLayerProgress? {
        var first: UInt8 = 0
        let peeked = withUnsafeMutableBytes(of: &first) { byte in
            Result { () throws(SocketError) in try plain.peek(into: byte) }
        }
        guard let count = try peeked.get() else { return .wantRead }
        if count == 0 { return .done(0) }
        if first != 0x16 {
            // Small, into an empty send buffer: written at once or not at all (the descriptor is non-blocking).
            let refusal = context.refusal
            _ = refusal.withUnsafeBytes { bytes in Result { () throws(SocketError) in try plain.writeAll(bytes) } }
            throw .tls("the peer did not start a TLS handshake (a plaintext client?); refused")
        }
        checkedFirstByte.withLock { $0 = true }
        return nil
    }

    /// One non-blocking `SSL_read` or `SSL_write` under the lock, classified.
    private func call(_ body: (OpaquePointer) -> Int32) throws(SocketError) -> SocketLayerProgress {
        let outcome: Result<SocketLayerProgress, SocketError> = session.withLock { ssl in
            guard let ssl else { return .failure(.closed) }
            ERR_clear_error()
            let result = body(ssl)
            if result > 0 { return .success(.done(Int(result))) }
            let code = SSL_get_error(ssl, result)
            switch code {
            case SSL_ERROR_WANT_READ: return .success(.wantRead)
            case SSL_ERROR_WANT_WRITE: return .success(.wantWrite)
            case SSL_ERROR_ZERO_RETURN: return .success(.done(0))
            case SSL_ERROR_SYSCALL:
                let number = errno
                if number == 0 { return .success(.done(0)) }  // end of stream without close_notify
                return .failure(.system(operation: "TLS", errno: Errno(rawValue: number)))
            default:
                let verify = SSL_get_verify_result(ssl)
                var reason = TLSContext.errorQueue()
                if verify != X509_V_OK {
                    reason += " (certificate: \(String(cString: X509_verify_cert_error_string(verify))))"
                }
                return .failure(.tls(reason))
            }
        }
        return try outcome.get()
    }
}
