/// One parsed HTTP/1.x request head (the server reads no bodies: it serves only GET and HEAD).
public struct HTTPRequest: Sendable, Equatable {
    /// The method as sent, such as `GET`.
    public var method: String
    /// The request target as sent, such as `/history.json?since=10`.
    public var target: String
    /// `HTTP/1.0` or `HTTP/1.1`.
    public var version: String
    /// Header fields in order; names as sent.
    public var headers: [Header]

    /// One header field.
    public struct Header: Sendable, Equatable {
        public var name: String
        public var value: String

        public init(name: String, value: String) {
            self.name = name
            self.value = value
        }
    }

    public init(method: String, target: String, version: String, headers: [Header] = []) {
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
    }

    /// The target's path, without the query.
    public var path: String {
        target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
    }

    /// The query's `name=value` pairs (no percent-decoding: the server's parameters are plain numbers).
    public var query: [String: String] {
        let parts = target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2 else { return [:] }
        var result: [String: String] = [:]
        for pair in parts[1].split(separator: "&") {
            let nameAndValue = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            result[String(nameAndValue[0])] = nameAndValue.count == 2 ? String(nameAndValue[1]) : ""
        }
        return result
    }

    /// The first header with `name` (case-insensitive).
    public func header(_ name: String) -> String? {
        let lowered = name.lowercased()
        return headers.first { $0.name.lowercased() == lowered }?.value
    }
}
