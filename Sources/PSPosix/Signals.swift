import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// The write end of the pipe the termination signal handler writes to (-1 before `handleTermination`).
private let terminationPipe = Atomic<Int32>(-1)

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

    /// Makes `SIGTERM` and `SIGINT` stop the process cleanly whichever thread the kernel delivers them to, and
    /// calls `handler(signalNumber)` on a dedicated thread each time one arrives.
    ///
    /// Blocking the signals in `main` is not enough: threads that started earlier (OpenBLAS starts its worker
    /// threads when the library is loaded, before `main`) do not inherit the mask, and a signal delivered to one
    /// of them would kill the process with the default action. So a `sigaction` handler is installed for the
    /// whole process: it only writes the signal number to a pipe (`write` is async-signal-safe), with
    /// `SA_RESTART` so an interrupted call elsewhere resumes; the dedicated thread reads the pipe and calls
    /// `handler`. The calling thread (and every thread it starts later) blocks the signals; only the dedicated
    /// thread and threads that predate the call can take them.
    public static func handleTermination(_ handler: @escaping @Sendable (Int32) -> Void) {
        var fds: [Int32] = [-1, -1]
        let piped = pipe(&fds)
        precondition(piped == 0, "pipe failed")
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        terminationPipe.store(fds[1], ordering: .releasing)
        var action = sigaction()
        action.__sigaction_handler.sa_handler = { signalNumber in
            var byte = UInt8(truncatingIfNeeded: signalNumber)
            let fd = terminationPipe.load(ordering: .acquiring)
            _ = write(fd, &byte, 1)
        }
        action.sa_flags = Int32(SA_RESTART)
        sigemptyset(&action.sa_mask)
        _ = sigaction(SIGTERM, &action, nil)
        _ = sigaction(SIGINT, &action, nil)
        var signals = terminationSignalSet()
        let status = pthread_sigmask(SIG_BLOCK, &signals, nil)
        precondition(status == 0, "pthread_sigmask failed with \(status)")
        let readEnd = fds[0]
        let thread = Thread {
            // This thread alone unblocks them, so that some thread always can take the signal (when no
            // early thread exists, e.g. OPENBLAS_NUM_THREADS=1, every other thread blocks them).
            var mine = terminationSignalSet()
            _ = pthread_sigmask(SIG_UNBLOCK, &mine, nil)
            while true {
                var byte: UInt8 = 0
                let count = read(readEnd, &byte, 1)
                if count == 1 {
                    handler(Int32(byte))
                } else if count < 0, errno == EINTR {
                    continue
                } else {
                    return
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

    /// Runs `body` with SIGTERM and SIGINT unblocked in the calling thread, then restores its mask.
    ///
    /// A child process inherits the mask of the thread that spawns it: one started from a thread that
    /// `handleTermination` made block the signals could not be stopped with SIGTERM or Ctrl-C. Spawning inside this
    /// call gives the child the default. A signal that arrives meanwhile runs the `handleTermination` handler as it
    /// would on any thread.
    public static func withTerminationSignalsUnblocked<Result>(_ body: () throws -> Result) rethrows -> Result {
        var signals = terminationSignalSet()
        var previous = sigset_t()
        _ = pthread_sigmask(SIG_UNBLOCK, &signals, &previous)
        defer { _ = pthread_sigmask(SIG_SETMASK, &previous, nil) }
        return try body()
    }

    /// Sends `signal` to the process `processID` (`kill(2)`).
    public static func send(_ signal: Int32, toProcess processID: Int32) throws(Errno) {
        try nothingOrErrno { Glibc.kill(processID, signal) }
    }
}
