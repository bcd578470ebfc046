import PSHTTP
import XCTest

final class HTTPRequestParserTests: XCTestCase {
    private let sample = "GET /history.json?since=5&x HTTP/1.1\r\nHost: 127.0.0.1:9100\r\nAccept:  */* \r\n\r\n"

    func test_feed_wholeHead_returnsRequest() throws {
        var parser = HTTPRequestParser()
        let request = try XCTUnwrap(parser.feed(Array(sample.utf8)))
        XCTAssertEqual(request.method, "GET")
        XCTAssertEqual(request.path, "/history.json")
        XCTAssertEqual(request.query, ["since": "5", "x": ""])
        XCTAssertEqual(request.version, "HTTP/1.1")
        XCTAssertEqual(request.header("host"), "127.0.0.1:9100")
        XCTAssertEqual(request.header("ACCEPT"), "*/*")
    }

    /// swift-nio's decoder verifier idea: the same bytes one at a time give the same request, and nil before the
    /// last byte.
    func test_feed_oneByteAtATime_returnsRequestOnlyAtTheLastByte() throws {
        var whole = HTTPRequestParser()
        let expected = try whole.feed(Array(sample.utf8))
        var parser = HTTPRequestParser()
        let bytes = Array(sample.utf8)
        for byte in bytes.dropLast() {
            XCTAssertNil(try parser.feed([byte]))
        }
        XCTAssertEqual(try parser.feed([bytes.last!]), expected)
    }

    func test_feed_bareLineFeedsAndLeadingBlankLines_areAccepted() throws {
        var parser = HTTPRequestParser()
        let request = try parser.feed(Array("\r\n\nHEAD / HTTP/1.0\nA: b\n\n".utf8))
        XCTAssertEqual(
            request,
            HTTPRequest(method: "HEAD", target: "/", version: "HTTP/1.0", headers: [.init(name: "A", value: "b")]))
    }

    func test_feed_malformedRequestLines_throwBadRequestLine() {
        let lines = [
            "GET /", "GET / HTTP/2.0", "GET  / HTTP/1.1", "GET http://x/ HTTP/1.1", "G(T / HTTP/1.1",
            "GET / HTTP/1.1 extra", " / HTTP/1.1",
        ]
        for line in lines {
            var parser = HTTPRequestParser()
            XCTAssertThrowsError(try parser.feed(Array((line + "\r\n\r\n").utf8)), line) { error in
                guard case .badRequestLine = error as? HTTPParseError else {
                    return XCTFail("\(line): \(error)")
                }
            }
        }
    }

    func test_feed_malformedHeaders_throwBadHeader() {
        for header in ["NoColon", ": empty name", "Bad Name: x", "Bad(Name: y"] {
            var parser = HTTPRequestParser()
            XCTAssertThrowsError(try parser.feed(Array("GET / HTTP/1.1\r\n\(header)\r\n\r\n".utf8))) { error in
                XCTAssertEqual(error as? HTTPParseError, .badHeader(header))
            }
        }
    }

    func test_feed_controlBytesAndBareCR_throwBadByte() {
        var parser = HTTPRequestParser()
        XCTAssertThrowsError(try parser.feed(Array("GET /\0 HTTP/1.1\r\n".utf8))) {
            XCTAssertEqual($0 as? HTTPParseError, .badByte(0))
        }
        parser = HTTPRequestParser()
        XCTAssertThrowsError(try parser.feed(Array("GET / HTTP/1.1\rX".utf8))) {
            XCTAssertEqual($0 as? HTTPParseError, .badByte(13))
        }
    }

    func test_feed_headerThatNeverEnds_throwsHeadTooLargeAtTheLimit() throws {
        var parser = HTTPRequestParser(maxHeadBytes: 1024)
        XCTAssertNil(try parser.feed(Array("GET / HTTP/1.1\r\nX-Long: ".utf8)))
        var fed = 25
        do {
            while true {
                _ = try parser.feed([UInt8](repeating: UInt8(ascii: "a"), count: 100))
                fed += 100
                XCTAssertLessThan(fed, 2000)
            }
        } catch {
            XCTAssertEqual(error, .headTooLarge(limit: 1024))
        }
    }

    func test_feed_tooManyHeaders_throws() {
        var parser = HTTPRequestParser(maxHeaders: 3)
        let head = "GET / HTTP/1.1\r\n" + String(repeating: "A: b\r\n", count: 4) + "\r\n"
        XCTAssertThrowsError(try parser.feed(Array(head.utf8))) {
            XCTAssertEqual($0 as? HTTPParseError, .tooManyHeaders(limit: 3))
        }
    }

    /// Random bytes never crash the parser and never produce a request without a request line.
    func test_feed_randomBytes_neverCrash() {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<500 {
            var parser = HTTPRequestParser(maxHeadBytes: 256)
            let bytes = (0..<Int.random(in: 0..<300, using: &generator)).map { _ in
                UInt8.random(in: 0...255, using: &generator)
            }
            if let request = try? parser.feed(bytes) {
                XCTAssertFalse(request.method.isEmpty)
            }
        }
    }

    func test_response_serialized_hasLengthAndClose() {
        let response = HTTPResponse.ok("hi", contentType: "text/plain")
        XCTAssertEqual(
            String(decoding: response.serialized(), as: UTF8.self),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nCache-Control: no-store\r\n"
                + "Connection: close\r\n\r\nhi")
        XCTAssertFalse(String(decoding: response.serialized(includeBody: false), as: UTF8.self).hasSuffix("hi"))
    }
}
