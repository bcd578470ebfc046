import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Process signals: ignoring `SIGPIPE`, handling `SIGTERM`/`SIGINT` on a dedicated thread, sending signals.
public enum Signals {
    /// `SIGTERM`, the polite request to stop.
    public static let terminate: Int32 = SIGTERM
    /// `SIGKILL`, which cannot be caught.
    public static let kill: Int32 = SIGKILL

    /// Ignores `SIGPIPE`, so that writing to a closed socket returns `EPIPE` instead of killing the process.
    public static func ignoreSIGPIPE() {
        _ = signal(SIGPIPE, SIG_IGN)
    }

    /// Blocks `SIGTERM` and `SIGINT` in the calling thread and starts a dedicated thread that waits for them
    /// (`sigwait`) and calls `handler(signalNumber)` each time one arrives.
    ///
    /// Call it first thing in `main`, before any other thread starts: threads inherit the signal mask, so the
    /// signals then reach only the waiting thread, and never interrupt a blocking call elsewhere.
    public static func handleTermination(_ handler: @escaping @Sendable (Int32) -> Void) {
        var signals = terminationSignalSet()
        let status = pthread_sigmask(SIG_BLOCK, &signals, nil)
        precondition(status == 0, "pthread_sigmask failed with \(status)")
        let thread = Thread {
            var waitedFor = terminationSignalSet()
            while true {
                var received: Int32 = 0
                if sigwait(&waitedFor, &received) == 0 {
                    handler(received)
                }
            }
        }
        thread.name = "signal-handler"
        thread.start()
    }

    private static func terminationSignalSet() -> sigset_t {
        var signals = sigset_t()
        sigemptyset(&signals)
        sigaddset(&signals, SIGTERM)
        sigaddset(&signals, SIGINT)
        return signals
    }

    /// Sends `signal` to the process `processID` (`kill(2)`).
    public static func send(_ signal: Int32, toProcess processID: Int32) throws(Errno) {
        try nothingOrErrno { Glibc.kill(processID, signal) }
    }
}
