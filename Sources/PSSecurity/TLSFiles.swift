import PSPosix

/// The `--tls-cert`, `--tls-key` and `--tls-ca` flags that psserver, psworker and psctl share, as file paths.
///
/// A server speaks TLS when it has a certificate and a key; `--tls-ca` on a server turns on mutual TLS (every
/// client must present a certificate that chains to it). A client speaks TLS when it has `--tls-ca` (the CA the
/// server's certificate must chain to) or a certificate of its own (mutual TLS; without `--tls-ca` the server is
/// checked against the system's CA store).
public struct TLSFiles: Sendable, Equatable {
    /// PEM certificate chain, leaf first (`--tls-cert`).
    public var certificate: String?
    /// PEM private key of that certificate (`--tls-key`).
    public var key: String?
    /// PEM CA certificate(s) that the peer's certificate must chain to (`--tls-ca`).
    public var ca: String?

    /// Creates the set; empty strings count as absent.
    public init(certificate: String? = nil, key: String? = nil, ca: String? = nil) {
        self.certificate = certificate.flatMap { $0.isEmpty ? nil : $0 }
        self.key = key.flatMap { $0.isEmpty ? nil : $0 }
        self.ca = ca.flatMap { $0.isEmpty ? nil : $0 }
    }

    /// Whether a server with these files speaks TLS.
    public var enablesServer: Bool { certificate != nil && key != nil }
    /// Whether a client with these files speaks TLS.
    public var enablesClient: Bool { ca != nil || certificate != nil }

    /// What is wrong with the combination (a usage error), or nil.
    public func problem(server: Bool) -> String? {
        if (certificate == nil) != (key == nil) { return "--tls-cert and --tls-key go together" }
        if server && ca != nil && certificate == nil {
            return "--tls-ca on psserver turns on mutual TLS and needs --tls-cert and --tls-key"
        }
        return nil
    }

    /// The server's context, or nil without TLS. `plaintextRefusal` is sent, in clear, to a plaintext client.
    public func serverContext(plaintextRefusal: [UInt8] = []) throws(SocketError) -> TLSContext? {
        guard let certificate, let key else { return nil }
        return try TLSContext.server(
            certificate: certificate, key: key, clientCA: ca, plaintextRefusal: plaintextRefusal)
    }

    /// The client's context, or nil without TLS.
    public func clientContext() throws(SocketError) -> TLSContext? {
        guard enablesClient else { return nil }
        return try TLSContext.client(certificate: certificate, key: key, ca: ca)
    }
}
