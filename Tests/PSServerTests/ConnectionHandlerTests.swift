import Foundation
import PSPosix
import PSTransport
import XCTest

@testable import PSServer

/// A connection's handler, connection and session are released once the connection ends (no reference cycle
/// through the closures the connection keeps).
final class ConnectionHandlerTests: XCTestCase {
    func test_closedConnection_isReleased() throws {
        let harness = try ServerHarness(shards: 1)
        let listener = try Socket.listen(host: "127.0.0.1", port: 0)
        defer { listener.close() }
        let client = try Socket.connect(host: "127.0.0.1", port: try listener.localPort(), timeout: .seconds(5))
        let accepted = try listener.accept()
        weak var released: FramedConnection?
        do {
            let connection = FramedConnection(socket: accepted.socket, peer: accepted.peer)
            released = connection
            let handler = ConnectionHandler(server: harness.server, connection: connection, id: 999)
            client.close()  // the handler reads end-of-stream and returns
            handler.run()
            connection.close()
        }
        XCTAssertNil(released, "the connection outlived its handler")
    }
}
