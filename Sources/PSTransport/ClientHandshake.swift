import PSSecurity
import PSWire

extension FramedConnection {
    /// The client side of the handshake (proto-docs/protocol.md, "hello"): sends `hello`; if the server answers
    /// with a `challenge`, answers it with `authenticate` carrying HMAC-SHA256(token, nonce); returns the
    /// server's answer to the handshake: `welcome`, `reject` or `error`, or nil when the server closed first.
    ///
    /// The token never travels: a captured handshake cannot log in again, since every connection gets a fresh
    /// nonce. Without a token, a challenge is answered locally with a `reject` (`unauthorized`) that says the
    /// server requires one, and nothing is sent. A token given to a server that has none is not used (the server
    /// welcomes without a challenge); the client does not authenticate the server (TLS with a CA does).
    /// Reads block up to the connection's receive timeout, which the caller sets.
    public func handshake(_ hello: Hello, token: String?, requestID: UInt64 = 0) throws(TransportError) -> Message? {
        try send(.hello(hello), requestID: requestID)
        guard let (_, reply) = try readMessage() else { return nil }
        guard case .challenge(let challenge) = reply else { return reply }
        guard let token, !token.isEmpty else {
            return .reject(
                Reject(
                    code: .unauthorized,
                    reason: "the server requires a token (--token or PS_TOKEN) and none was given"))
        }
        let mac = Crypto.hmacSHA256(token: token, message: challenge.nonce)
        try send(.authenticate(Authenticate(mac: mac)), requestID: requestID)
        return try readMessage()?.message
    }
}
