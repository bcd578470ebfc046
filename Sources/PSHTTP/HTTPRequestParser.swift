/// Why a request head was refused; the server answers `400 Bad Request` and closes.
public enum HTTPParseError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The head grew past the limit before its blank line.
    case headTooLarge(limit: Int)
    /// More header fields than the limit.
    case tooManyHeaders(limit: Int)
    /// The request line is not `METHOD SP target SP HTTP/1.x`.
    case badRequestLine(String)
    /// A header line is not `name: value`.
    case badHeader(String)
    /// A byte that may not appear in a request head (NUL, other control bytes, a bare CR).
    case badByte(UInt8)

    public var description: String {
        switch self {
        case .headTooLarge(let limit): "request head larger than \(limit) bytes"
        case .tooManyHeaders(let limit): "more than \(limit) header fields"
        case .badRequestLine(let line): "malformed request line '\(line.prefix(80))'"
        case .badHeader(let line): "malformed header line '\(line.prefix(80))'"
        case .badByte(let byte): "byte 0x\(String(byte, radix: 16)) in the request head"
        }
    }
}

/// An incremental HTTP/1.x request-head parser: feed it bytes as they arrive, in pieces of any size.
///
/// ``feed(_:)`` returns nil while the head is incomplete, the request once its blank line arrived, and throws as
/// soon as the bytes cannot become a valid head within the limits, so a client that sends a header that never
/// ends costs at most `maxHeadBytes` of memory. Lines end with CRLF (a bare LF is accepted, as RFC 9112 allows);
/// empty lines before the request line are skipped. Bodies are not read.
public struct HTTPRequestParser: Sendable {
    /// Largest request head accepted, request line and headers together (default 8 KiB).
    public let maxHeadBytes: Int
    /// Most header fields accepted (default 64).
    public let maxHeaders: Int

    private var line: [UInt8] = []
    private var headBytes = 0
    private var requestLine: (method: String, target: String, version: String)? = nil
    private var headers: [HTTPRequest.Header] = []
    private var sawCR = false

    public init(maxHeadBytes: Int = 8192, maxHeaders: Int = 64) {
        self.maxHeadBytes = maxHeadBytes
        self.maxHeaders = maxHeaders
    }

    /// Consumes `bytes`; returns the request when its head is complete (bytes after it are ignored).
    public mutating func feed(_ bytes: some Sequence<UInt8>) throws(HTTPParseError) -> HTTPRequest? {
        for byte in bytes {
            if let request = try consume(byte) { return request }
        }
        return nil
    }

    private mutating func consume(_ byte: UInt8) throws(HTTPParseError) -> HTTPRequest? {
        headBytes += 1
        guard headBytes <= maxHeadBytes else { throw .headTooLarge(limit: maxHeadBytes) }
        if sawCR {
            guard byte == UInt8(ascii: "\n") else { throw .badByte(UInt8(ascii: "\r")) }
            sawCR = false
            return try endOfLine()
        }
        switch byte {
        case UInt8(ascii: "\r"):
            sawCR = true
            return nil
        case UInt8(ascii: "\n"):
            return try endOfLine()
        case UInt8(ascii: "\t"):
            line.append(byte)
            return nil
        case 0..<0x20, 0x7F:
            throw .badByte(byte)
        default:
            line.append(byte)
            return nil
        }
    }

    private mutating func endOfLine() throws(HTTPParseError) -> HTTPRequest? {
        let text = String(decoding: line, as: UTF8.self)
        line.removeAll(keepingCapacity: true)
        guard let requestLine else {
            if text.isEmpty { return nil }  // leading blank lines
            self.requestLine = try Self.parseRequestLine(text)
            return nil
        }
        if text.isEmpty {
            return HTTPRequest(
                method: requestLine.method, target: requestLine.target, version: requestLine.version,
                headers: headers)
        }
        guard headers.count < maxHeaders else { throw .tooManyHeaders(limit: maxHeaders) }
        headers.append(try Self.parseHeader(text))
        return nil
    }

    static func parseRequestLine(_ text: String) throws(HTTPParseError) -> (String, String, String) {
        let parts = text.split(separator: " ", omittingEmptySubsequences: false)
        guard parts.count == 3, !parts[0].isEmpty, parts[0].utf8.allSatisfy(isTokenByte),
            parts[1].first == "/" || parts[1] == "*",
            parts[1].utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }),
            parts[2] == "HTTP/1.1" || parts[2] == "HTTP/1.0"
        else { throw .badRequestLine(text) }
        return (String(parts[0]), String(parts[1]), String(parts[2]))
    }

    static func parseHeader(_ text: String) throws(HTTPParseError) -> HTTPRequest.Header {
        guard let colon = text.firstIndex(of: ":") else { throw .badHeader(text) }
        let name = text[..<colon]
        guard !name.isEmpty, name.utf8.allSatisfy(isTokenByte) else { throw .badHeader(text) }
        let value = text[text.index(after: colon)...].trimmingSpacesAndTabs()
        return HTTPRequest.Header(name: String(name), value: value)
    }

    /// RFC 9110 `tchar`.
    static func isTokenByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        default:
            return "!#$%&'*+-.^_`|~".utf8.contains(byte)
        }
    }
}

extension Substring {
    fileprivate func trimmingSpacesAndTabs() -> String {
        var slice = self[...]
        while let first = slice.first, first == " " || first == "\t" { slice = slice.dropFirst() }
        while let last = slice.last, last == " " || last == "\t" { slice = slice.dropLast() }
        return String(slice)
    }
}
