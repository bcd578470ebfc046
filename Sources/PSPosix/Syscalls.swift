#if canImport(Glibc)
    import Glibc
#endif

/// The one system-call funnel: runs `body`, retries it while it fails with `EINTR` (unless told not to), and turns
/// a `-1` result into the `Errno` the call left behind.
///
/// This is the only place in the package that reads C's `errno`. Calls that must not be retried after `EINTR`
/// (`close`, a non-blocking `connect`) pass `retryOnInterrupt: false` and handle ``Errno/interrupted`` themselves.
@inline(__always)
func valueOrErrno<I: FixedWidthInteger & SignedInteger>(
    retryOnInterrupt: Bool = true,
    _ body: () -> I
) throws(Errno) -> I {
    while true {
        let result = body()
        if result != -1 {
            return result
        }
        let error = Errno(rawValue: errno)
        if retryOnInterrupt && error == .interrupted {
            continue
        }
        throw error
    }
}

/// Like ``valueOrErrno(retryOnInterrupt:_:)`` for calls whose only success value is 0.
@inline(__always)
func nothingOrErrno<I: FixedWidthInteger & SignedInteger>(
    retryOnInterrupt: Bool = true,
    _ body: () -> I
) throws(Errno) {
    _ = try valueOrErrno(retryOnInterrupt: retryOnInterrupt, body)
}
