import COpenSSL

/// The handshake's cryptography, from Debian's OpenSSL (libcrypto): HMAC-SHA256, random bytes and a comparison
/// whose time does not depend on where two byte strings differ.
/// Whether OpenSSL initialised, without its atexit cleanup (`psssl_init`); done once, before any other call.
let openSSLReady: Bool = psssl_init() == 1

public enum Crypto {
    /// The size of an HMAC-SHA256 tag and of a handshake nonce, in bytes.
    public static let tagSize = 32

    /// HMAC-SHA256 of `message` under `key` (RFC 2104): 32 bytes.
    public static func hmacSHA256(key: [UInt8], message: [UInt8]) -> [UInt8] {
        precondition(openSSLReady, "OpenSSL failed to initialise")
        var tag = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        let done = key.withUnsafeBytes { keyBytes in
            message.withUnsafeBufferPointer { messageBytes in
                tag.withUnsafeMutableBufferPointer { out in
                    // A zero-length key or message still needs a valid pointer.
                    HMAC(
                        EVP_sha256(), keyBytes.baseAddress ?? UnsafeRawPointer(out.baseAddress!), Int32(key.count),
                        messageBytes.baseAddress ?? UnsafePointer(out.baseAddress!), message.count, out.baseAddress,
                        &length) != nil
                }
            }
        }
        // HMAC with SHA-256 cannot fail short of the library being unusable; then no tag may ever match.
        precondition(done && length == UInt32(tagSize), "OpenSSL HMAC-SHA256 failed")
        return Array(tag.prefix(tagSize))
    }

    /// HMAC-SHA256 of `message` under the UTF-8 bytes of `token`.
    public static func hmacSHA256(token: String, message: [UInt8]) -> [UInt8] {
        hmacSHA256(key: Array(token.utf8), message: message)
    }

    /// `count` bytes from OpenSSL's CSPRNG (`RAND_bytes`, seeded from the kernel's getrandom).
    public static func randomBytes(count: Int) -> [UInt8] {
        precondition(openSSLReady, "OpenSSL failed to initialise")
        var bytes = [UInt8](repeating: 0, count: count)
        let done = bytes.withUnsafeMutableBufferPointer { RAND_bytes($0.baseAddress, Int32(count)) }
        // A predictable nonce would make the challenge replayable: never go on without randomness.
        precondition(done == 1, "OpenSSL RAND_bytes failed")
        return bytes
    }

    /// Whether `a` and `b` are equal, in time that depends only on their lengths (`CRYPTO_memcmp`).
    public static func constantTimeEquals(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        precondition(openSSLReady, "OpenSSL failed to initialise")
        guard a.count == b.count else { return false }
        guard !a.isEmpty else { return true }
        return a.withUnsafeBytes { x in b.withUnsafeBytes { y in CRYPTO_memcmp(x.baseAddress, y.baseAddress, a.count) }
        }
            == 0
    }
}
