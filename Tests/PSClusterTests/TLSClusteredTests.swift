import Foundation
import PSTestSupport
import XCTest

/// The real binaries with `--tls-cert`, `--tls-key` and `--tls-ca` (mutual TLS) and a token: a job trains over
/// TLS, psctl reaches the server over TLS, and peers without TLS or without a client certificate are refused.
final class TLSClusteredTests: XCTestCase {
    func test_mutualTLSJob_trains_andPeersWithoutTLSOrCertificateAreRefused() throws {
        guard let pki = try TestCertificates.make() else { throw XCTSkip("no openssl command") }
        let serverTLS = [
            "--tls-cert", pki.serverCertificatePath, "--tls-key", pki.serverKeyPath, "--tls-ca", pki.caPath,
        ]
        let clientTLS = [
            "--tls-cert", pki.clientCertificatePath, "--tls-key", pki.clientKeyPath, "--tls-ca", pki.caPath,
        ]
        let cluster = try LocalCluster()
        try cluster.startServer(
            [
                "--shards", "2", "--workers", "1", "--model", "softmax", "--data", "digits", "--batch", "64",
                "--epochs", "1", "--token", "s3cret", "--keep-running",
            ] + serverTLS)
        try cluster.startWorker(name: "w0", ["--quiet", "--token", "s3cret"] + clientTLS)
        guard let server = cluster.server else { return XCTFail("no server") }
        _ = try server.waitForLine(matching: "event=job-finished", in: .standardError, timeout: .seconds(120))

        let status = try cluster.psctl(["status", "--token", "s3cret"] + clientTLS)
        XCTAssertEqual(status.code, 0, status.output)
        let plaintext = try cluster.psctl(["status", "--token", "s3cret"])
        XCTAssertEqual(plaintext.code, 1, plaintext.output)
        XCTAssertTrue(plaintext.output.contains("requires TLS"), plaintext.output)
        let noCertificate = try cluster.psctl(["status", "--token", "s3cret", "--tls-ca", pki.caPath])
        XCTAssertEqual(noCertificate.code, 1, noCertificate.output)
        XCTAssertTrue(noCertificate.output.contains("TLS") || noCertificate.output.contains("closed"))
        let usage = try cluster.psctl(["status", "--tls-cert", pki.clientCertificatePath])
        XCTAssertEqual(usage.code, 64, usage.output)

        let shutdown = try cluster.psctl(["shutdown", "--token", "s3cret"] + clientTLS)
        XCTAssertEqual(shutdown.code, 0, shutdown.output)
        cluster.waitForJob()
    }

    func test_twoServerJob_overMutualTLS_trainsToTheEnd() throws {
        guard let pki = try TestCertificates.make() else { throw XCTSkip("no openssl command") }
        let serverTLS = [
            "--tls-cert", pki.serverCertificatePath, "--tls-key", pki.serverKeyPath, "--tls-ca", pki.caPath,
        ]
        let cluster = try LocalCluster()
        try cluster.startServer(
            [
                "--servers", "2", "--shards", "2", "--workers", "1", "--model", "softmax", "--data", "digits",
                "--batch", "64", "--epochs", "1", "--token", "t",
            ] + serverTLS)
        // The joined server registers and links to the coordinator over TLS (its certificate as the client's);
        // the worker reaches both servers over TLS, from the welcome's shard map.
        let joined = try ChildProcess(
            binary: "psserver",
            arguments: [
                "--host", "127.0.0.1", "--port", "0", "--join", "127.0.0.1:\(cluster.port)", "--shards", "1",
                "--token", "t", "--log-level", "info",
            ] + serverTLS)
        defer { _ = joined.terminateAndWait() }
        let line = try joined.waitForLine(matching: "event=joined", in: .standardError, timeout: .seconds(60))
        XCTAssertTrue(line.contains("index=1"), line)
        try cluster.startWorker(
            name: "w0",
            [
                "--quiet", "--token", "t", "--tls-cert", pki.clientCertificatePath, "--tls-key", pki.clientKeyPath,
                "--tls-ca", pki.caPath,
            ])
        cluster.waitForJob()
        XCTAssertTrue(cluster.server?.standardError.contains("servers=2") ?? false)
    }
}
