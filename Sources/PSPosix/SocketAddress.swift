#if canImport(Glibc)
    import Glibc
#endif

/// One resolved IPv4 or IPv6 socket address (a `sockaddr_storage` and its length).
struct SocketAddress: CustomStringConvertible {
    var storage = sockaddr_storage()
    var length = socklen_t(MemoryLayout<sockaddr_storage>.size)

    /// `AF_INET` or `AF_INET6`.
    var family: Int32 {
        Int32(storage.ss_family)
    }

    /// The port in host byte order (0 for another family).
    var port: UInt16 {
        withUnsafeBytes(of: storage) { raw in
            switch family {
            case AF_INET:
                return UInt16(bigEndian: raw.load(as: sockaddr_in.self).sin_port)
            case AF_INET6:
                return UInt16(bigEndian: raw.load(as: sockaddr_in6.self).sin6_port)
            default:
                return 0
            }
        }
    }

    /// The numeric host: `127.0.0.1` or `::1`.
    var host: String {
        var text = [CChar](repeating: 0, count: 64)
        let converted: Bool = withUnsafeBytes(of: storage) { raw in
            switch family {
            case AF_INET:
                var address = raw.load(as: sockaddr_in.self).sin_addr
                return inet_ntop(AF_INET, &address, &text, socklen_t(text.count)) != nil
            case AF_INET6:
                var address = raw.load(as: sockaddr_in6.self).sin6_addr
                return inet_ntop(AF_INET6, &address, &text, socklen_t(text.count)) != nil
            default:
                return false
            }
        }
        guard converted else { return "<address family \(family)>" }
        return text.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }

    /// `127.0.0.1:7000` or `[::1]:7000`.
    var description: String {
        family == AF_INET6 ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    /// Calls `body` with the address as a `sockaddr` pointer and its length.
    func withSockaddr<Result>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> Result) -> Result {
        withUnsafePointer(to: storage) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, length) }
        }
    }

    /// Calls `body` with a writable `sockaddr` pointer and length, as `accept` and `getsockname` want them.
    mutating func withMutableSockaddr<Result>(
        _ body: (UnsafeMutablePointer<sockaddr>, UnsafeMutablePointer<socklen_t>) -> Result
    ) -> Result {
        length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        return withUnsafeMutablePointer(to: &storage) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { address in
                withUnsafeMutablePointer(to: &length) { body(address, $0) }
            }
        }
    }

    /// Resolves `host` and `port` for a TCP stream socket with `getaddrinfo` (`AF_UNSPEC`, `SOCK_STREAM`).
    ///
    /// With `passive` set (for `listen`) IPv4 addresses come first, so that `localhost` binds 127.0.0.1 when
    /// it has both. Duplicate addresses are dropped.
    static func resolve(host: String, port: UInt16, passive: Bool) throws(SocketError) -> [SocketAddress] {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0)
        var list: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, String(port), &hints, &list)
        guard status == 0 else {
            throw .resolve(host: host, reason: String(cString: gai_strerror(status)))
        }
        defer { freeaddrinfo(list) }
        var addresses: [SocketAddress] = []
        var seen: Set<String> = []
        var entry = list
        while let info = entry?.pointee {
            entry = info.ai_next
            guard let source = info.ai_addr, info.ai_family == AF_INET || info.ai_family == AF_INET6 else { continue }
            var address = SocketAddress()
            let count = min(Int(info.ai_addrlen), MemoryLayout<sockaddr_storage>.size)
            withUnsafeMutableBytes(of: &address.storage) { target in
                target.copyMemory(from: UnsafeRawBufferPointer(start: source, count: count))
            }
            address.length = socklen_t(count)
            if seen.insert(address.description).inserted {
                addresses.append(address)
            }
        }
        guard !addresses.isEmpty else {
            throw .resolve(host: host, reason: "no IPv4 or IPv6 address")
        }
        if passive {
            addresses = addresses.filter { $0.family == AF_INET } + addresses.filter { $0.family != AF_INET }
        }
        return addresses
    }
}
