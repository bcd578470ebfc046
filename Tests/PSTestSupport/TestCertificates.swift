import Foundation

/// A throw-away PKI made with the `openssl` command at test time: a CA, a server certificate for 127.0.0.1 and
/// localhost, a client certificate from the same CA, and a second CA that signed neither (P-256 keys, one day).
public final class TestCertificates: Sendable {
    public let directory: TemporaryDirectory
    public var caPath: String { directory.file("ca.pem").path }
    public var serverCertificatePath: String { directory.file("server.pem").path }
    public var serverKeyPath: String { directory.file("server.key").path }
    public var clientCertificatePath: String { directory.file("client.pem").path }
    public var clientKeyPath: String { directory.file("client.key").path }
    /// A CA that signed nothing here: trusting only it must fail verification.
    public var otherCAPath: String { directory.file("other-ca.pem").path }

    /// Makes the files; nil when no `openssl` command is installed (the caller skips its test).
    public static func make() throws -> TestCertificates? {
        guard
            let openssl = ["/usr/bin/openssl", "/usr/local/bin/openssl"].first(where: {
                FileManager.default.isExecutableFile(atPath: $0)
            })
        else { return nil }
        let certificates = TestCertificates(directory: try TemporaryDirectory(prefix: "swiftps-tls"))
        let script = """
            set -e
            key() { "$OPENSSL" genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
            key ca.key; key other-ca.key; key server.key; key client.key
            "$OPENSSL" req -x509 -new -key ca.key -out ca.pem -days 1 -subj /CN=swiftps-test-ca
            "$OPENSSL" req -x509 -new -key other-ca.key -out other-ca.pem -days 1 -subj /CN=swiftps-other-ca
            printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\nextendedKeyUsage=serverAuth,clientAuth\\n' > leaf.ext
            for who in server client; do
              "$OPENSSL" req -new -key $who.key -out $who.csr -subj /CN=swiftps-$who
              "$OPENSSL" x509 -req -in $who.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out $who.pem -days 1 \\
                -extfile leaf.ext 2>/dev/null
            done
            """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", script]
        process.currentDirectoryURL = certificates.directory.url
        process.environment = ["OPENSSL": openssl, "PATH": "/usr/bin:/bin"]
        let errors = Pipe()
        process.standardError = errors
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            let text = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            throw TestSupportError("openssl could not make the test certificates: \(text)")
        }
        return certificates
    }

    private init(directory: TemporaryDirectory) {
        self.directory = directory
    }
}
