/// An HTTP response the server writes in one piece and then closes the connection (`Connection: close`).
public struct HTTPResponse: Sendable, Equatable {
    public var status: Int
    public var reason: String
    /// Extra header fields; `Content-Length`, `Connection` and `Cache-Control` are added by ``serialized(includeBody:)``.
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]

    public init(status: Int, reason: String, contentType: String, body: [UInt8], headers: [(String, String)] = []) {
        self.status = status
        self.reason = reason
        self.headers = [("Content-Type", contentType)] + headers.map { (name: $0.0, value: $0.1) }
        self.body = body
    }

    public static func == (lhs: HTTPResponse, rhs: HTTPResponse) -> Bool {
        lhs.status == rhs.status && lhs.reason == rhs.reason && lhs.body == rhs.body
            && lhs.headers.map(\.name) == rhs.headers.map(\.name)
            && lhs.headers.map(\.value) == rhs.headers.map(\.value)
    }

    /// `200 OK` with a text body of the given type.
    public static func ok(_ text: String, contentType: String) -> HTTPResponse {
        HTTPResponse(status: 200, reason: "OK", contentType: contentType, body: Array(text.utf8))
    }

    /// A plain-text error page.
    public static func error(_ status: Int, _ reason: String, _ message: String, headers: [(String, String)] = [])
        -> HTTPResponse
    {
        HTTPResponse(
            status: status, reason: reason, contentType: "text/plain; charset=utf-8",
            body: Array("\(status) \(reason): \(message)\n".utf8), headers: headers)
    }

    public static func notFound(_ path: String) -> HTTPResponse {
        .error(404, "Not Found", "no page at \(path.prefix(200)); try /, /metrics or /status.json")
    }

    public static func methodNotAllowed(_ method: String) -> HTTPResponse {
        .error(
            405, "Method Not Allowed", "\(method.prefix(40)) is not served; use GET", headers: [("Allow", "GET, HEAD")])
    }

    public static func badRequest(_ why: String) -> HTTPResponse {
        .error(400, "Bad Request", why)
    }

    /// The status line, the headers and (unless `includeBody` is false, for HEAD) the body.
    public func serialized(includeBody: Bool = true) -> [UInt8] {
        var head = "HTTP/1.1 \(status) \(reason)\r\n"
        for header in headers { head += "\(header.name): \(header.value)\r\n" }
        head += "Content-Length: \(body.count)\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n"
        return Array(head.utf8) + (includeBody ? body : [])
    }
}
