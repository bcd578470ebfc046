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

    /// Physical memory in bytes (`sysconf(_SC_PHYS_PAGES) * sysconf(_SC_PAGESIZE)`), or nil if it cannot be read.
    public static func physicalMemoryBytes() -> Int? {
        let pages = sysconf(Int32(_SC_PHYS_PAGES))
        let pageSize = sysconf(Int32(_SC_PAGESIZE))
        guard pages > 0, pageSize > 0 else { return nil }
        let (bytes, overflow) = pages.multipliedReportingOverflow(by: pageSize)
        return overflow ? Int.max : bytes
    }

    /// Whether `bytes` of address space can be allocated now: `malloc`s that much and `free`s it at once.
    ///
    /// Swift traps when an array allocation fails; calling this before allocating large arrays turns an
    /// allocation refused by the system (`ulimit -v`, an exhausted address space) into a `false` instead. The
    /// memory is never touched, so the probe costs no resident memory; with overcommit it cannot foresee the
    /// OOM killer, which is what an explicit limit such as `psserver --max-model-bytes` is for.
    public static func canAllocate(bytes: Int) -> Bool {
        guard bytes > 0 else { return true }
        guard let pointer = malloc(bytes) else { return false }
        free(pointer)
        return true
    }
}
