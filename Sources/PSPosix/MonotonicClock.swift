#if canImport(Glibc)
    import Glibc
#endif

/// A clock that never jumps: `CLOCK_MONOTONIC`.
public enum MonotonicClock {
    /// Nanoseconds since an arbitrary fixed point (boot); only differences are meaningful.
    public static func nanoseconds() -> UInt64 {
        clockNanoseconds(CLOCK_MONOTONIC)
    }
}

/// The calling thread's CPU time: `CLOCK_THREAD_CPUTIME_ID`.
///
/// For single-thread compute benchmarks on a shared machine: unlike wall time it does not count the time the
/// thread waited for a core.
public enum ThreadCPUClock {
    /// Nanoseconds of CPU time the calling thread has used; only differences are meaningful.
    public static func nanoseconds() -> UInt64 {
        clockNanoseconds(CLOCK_THREAD_CPUTIME_ID)
    }
}

/// CPU time of the whole process (every thread, user and kernel), for benchmarks.
public enum ProcessCPUClock {
    /// Nanoseconds of CPU time the process has used; only differences are meaningful.
    public static func nanoseconds() -> UInt64 {
        clockNanoseconds(CLOCK_PROCESS_CPUTIME_ID)
    }
}

/// `clock_gettime(clock)` in nanoseconds.
@inline(__always)
private func clockNanoseconds(_ clock: clockid_t) -> UInt64 {
    var time = timespec()
    _ = clock_gettime(clock, &time)
    return UInt64(time.tv_sec) &* 1_000_000_000 &+ UInt64(time.tv_nsec)
}
