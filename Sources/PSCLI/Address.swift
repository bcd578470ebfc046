/// Splits `host:port` (or `[v6-address]:port`) given to `flag`; the error names the flag and the text.
public func parseAddress(_ text: String, flag: String) throws(UsageError) -> (host: String, port: UInt16) {
    var host: Substring
    var portText: Substring
    if text.hasPrefix("[") {
        guard let close = text.firstIndex(of: "]") else {
            throw UsageError("Invalid value '\(text)' for '\(flag) <host:port>': missing ']'")
        }
        host = text[text.index(after: text.startIndex)..<close]
        let rest = text[text.index(after: close)...]
        guard rest.hasPrefix(":") else {
            throw UsageError("Invalid value '\(text)' for '\(flag) <host:port>': expected [address]:port")
        }
        portText = rest.dropFirst()
    } else {
        guard let colon = text.lastIndex(of: ":") else {
            throw UsageError(
                "Invalid value '\(text)' for '\(flag) <host:port>': expected host:port, e.g. 127.0.0.1:7000")
        }
        host = text[..<colon]
        portText = text[text.index(after: colon)...]
    }
    guard !host.isEmpty else { throw UsageError("Invalid value '\(text)' for '\(flag) <host:port>': empty host") }
    guard let port = UInt16(portText), port > 0 else {
        throw UsageError("Invalid value '\(text)' for '\(flag) <host:port>': '\(portText)' is not a port (1-65535)")
    }
    return (String(host), port)
}
