import Foundation
import PSTestSupport
import XCTest

@testable import PSPosix

#if canImport(Glibc)
    import Glibc
#endif

/// A socket with a ``SocketLayer`` reads and writes through it, with the plain socket's timeouts: tested with a
/// layer that XORs every byte with 0x5A over non-blocking `recv`/`send`.
final class SocketLayerTests: XCTestCase {
    /// XOR 0x5A over the descriptor; `pretendBuffered` makes `bufferedByteCount` report bytes poll cannot see.
    final class XORLayer: SocketLayer {
        let descriptor: Int32
        let pretendBuffered: Bool
        let reads = LockedValue(0)
        init(_ descriptor: Int32, pretendBuffered: Bool = false) {
            self.descriptor = descriptor
            self.pretendBuffered = pretendBuffered
        }

        func read(into buffer: UnsafeMutableRawBufferPointer) throws(SocketError) -> SocketLayerProgress {
            reads.withLock { $0 += 1 }
            let count = recv(descriptor, buffer.baseAddress, buffer.count, Int32(MSG_DONTWAIT))
            if count < 0 {
                if errno == EAGAIN { return .wantRead }
                throw .system(operation: "recv", errno: Errno(rawValue: errno))
            }
            for index in 0..<count { buffer[index] ^= 0x5A }
            return .done(count)
        }

        func write(_ bytes: UnsafeRawBufferPointer) throws(SocketError) -> SocketLayerProgress {
            let scrambled = bytes.map { $0 ^ 0x5A }
            let count = send(descriptor, scrambled, scrambled.count, Int32(MSG_DONTWAIT) | Int32(MSG_NOSIGNAL))
            if count < 0 {
                if errno == EAGAIN { return .wantWrite }
                throw .system(operation: "send", errno: Errno(rawValue: errno))
            }
            return .done(count)
        }

        var bufferedByteCount: Int { pretendBuffered ? 1 : 0 }
        func close() {}
    }

    private func connectedPair() throws -> (client: Socket, server: Socket) {
        let listener = try Socket.listen(host: "127.0.0.1", port: 0)
        defer { listener.close() }
        let client = try Socket.connect(host: "127.0.0.1", port: try listener.localPort(), timeout: .seconds(5))
        let (server, _) = try listener.accept()
        return (client, server)
    }

    func test_layeredSocket_readsAndWritesThroughTheLayer_bothWays() throws {
        Signals.ignoreSIGPIPE()
        let (plainClient, server) = try connectedPair()
        defer { server.close() }
        let client = try plainClient.layered(XORLayer(plainClient.fileDescriptor))
        defer { client.close() }
        try [UInt8]([1, 2, 3]).withUnsafeBytes { header in
            try [UInt8](repeating: 7, count: 1 << 20).withUnsafeBytes { try client.writeAll(header, $0) }
        }
        var seen = [UInt8](repeating: 0, count: 3 + (1 << 20))
        try seen.withUnsafeMutableBytes { try server.readExactly(into: $0) }
        XCTAssertEqual(Array(seen.prefix(3)), [1 ^ 0x5A, 2 ^ 0x5A, 3 ^ 0x5A])
        XCTAssertTrue(seen.dropFirst(3).allSatisfy { $0 == 7 ^ 0x5A })
        try [UInt8]([9 ^ 0x5A, 8 ^ 0x5A]).withUnsafeBytes { try server.writeAll($0) }
        var reply = [UInt8](repeating: 0, count: 2)
        try reply.withUnsafeMutableBytes { try client.readExactly(into: $0) }
        XCTAssertEqual(reply, [9, 8])
    }

    func test_layeredRead_withNothingToRead_timesOutAtTheReceiveTimeout() throws {
        let (plainClient, server) = try connectedPair()
        defer { server.close() }
        let client = try plainClient.layered(XORLayer(plainClient.fileDescriptor))
        defer { client.close() }
        try client.setReceiveTimeout(.milliseconds(200))
        let start = MonotonicClock.nanoseconds()
        var byte = [UInt8](repeating: 0, count: 1)
        XCTAssertThrowsError(try byte.withUnsafeMutableBytes { try client.readExactly(into: $0) }) {
            XCTAssertEqual($0 as? SocketError, .timedOut(operation: "read"))
        }
        let seconds = Double(MonotonicClock.nanoseconds() - start) / 1e9
        XCTAssertGreaterThanOrEqual(seconds, 0.15)
        XCTAssertLessThan(seconds, 5)
    }

    func test_waitUntilReadable_seesWhatTheLayerHolds() throws {
        let (plainClient, server) = try connectedPair()
        defer { server.close() }
        let plain = try plainClient.layered(XORLayer(plainClient.fileDescriptor))
        XCTAssertFalse(plain.waitUntilReadable(milliseconds: 10))
        let holding = Socket(fileDescriptor: plainClient.fileDescriptor)
        let buffered = try holding.layered(XORLayer(plainClient.fileDescriptor, pretendBuffered: true))
        XCTAssertTrue(buffered.waitUntilReadable(milliseconds: 10))
        plain.close()
    }
}
