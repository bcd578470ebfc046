#if canImport(Glibc)
    import Glibc
#endif

/// Facts about this host and process.
public enum Host {
    /// The host name (`gethostname`), or `localhost` if it cannot be read.
    public static func name() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count - 1) == 0 else { return "localhost" }
        return buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }

    /// This process's id (`getpid`).
    public static func processID() -> Int32 {
        getpid()
    }

    /// The effective user id (`geteuid`); 0 for root.
    public static func effectiveUserID() -> UInt32 {
        geteuid()
    }
}
