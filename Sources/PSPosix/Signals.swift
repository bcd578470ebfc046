import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Process signals: ignoring `SIGPIPE`, handling `SIGTERM`/`SIGINT` on a dedicated thread, sending signals.
public enum Signals {
    /// `SIGINT` (Ctrl-C).
    public static let interrupt: Int32 = SIGINT
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

/// File-system operations that Foundation does not offer: `fsync` of files and directories, atomic rename.
public enum FileSystem {
    /// Flushes the file at `path` to stable storage (open, `fsync`, close).
    public static func fsync(path: String) throws(FileError) {
        try synchronize(path: path, flags: O_RDONLY | O_CLOEXEC)
    }

    /// Flushes the directory at `path` (its entries: created, renamed or removed files) to stable storage.
    public static func fsyncDirectory(path: String) throws(FileError) {
        try synchronize(path: path, flags: O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    }

    private static func synchronize(path: String, flags: Int32) throws(FileError) {
        let descriptor: Int32
        do {
            descriptor = try valueOrErrno { open(path, flags) }
        } catch {
            throw FileError(operation: "open", path: path, errno: error)
        }
        defer { _ = try? nothingOrErrno(retryOnInterrupt: false) { close(descriptor) } }
        do {
            try nothingOrErrno { Glibc.fsync(descriptor) }
        } catch {
            throw FileError(operation: "fsync", path: path, errno: error)
        }
    }

    /// Renames `source` to `destination` with `rename(2)`, atomically replacing a file already there.
    ///
    /// Both must be on the same file system; call ``fsyncDirectory(path:)`` on the parent afterwards to make the
    /// rename durable.
    public static func renameReplacing(from source: String, to destination: String) throws(FileError) {
        do {
            try nothingOrErrno { rename(source, destination) }
        } catch {
            throw FileError(operation: "rename", path: source, destination: destination, errno: error)
        }
    }

    /// Kills this process with `SIGKILL` at once, as a crash would: no cleanup, no buffered output flushed.
    ///
    /// Only for crash-recovery tests (for example a checkpoint writer interrupted half-way).
    public static func crashNowForTesting() -> Never {
        _ = Glibc.kill(getpid(), SIGKILL)
        _exit(137)
    }
}

/// A failed file-system operation, naming the path(s) and the error number.
public struct FileError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The system call: `open`, `fsync` or `rename`.
    public let operation: String
    /// The file or directory operated on (the source of a rename).
    public let path: String
    /// The destination of a rename; nil otherwise.
    public let destination: String?
    /// The error number the call failed with.
    public let errno: Errno

    /// Describes a failure of `operation` on `path`.
    public init(operation: String, path: String, destination: String? = nil, errno: Errno) {
        self.operation = operation
        self.path = path
        self.destination = destination
        self.errno = errno
    }

    /// `fsync '/data/ckpt/step-1/w.npy' failed: EIO (Input/output error)`.
    public var description: String {
        if let destination {
            return "\(operation) '\(path)' to '\(destination)' failed: \(errno)"
        }
        return "\(operation) '\(path)' failed: \(errno)"
    }
}

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

/// A clock that never jumps: `CLOCK_MONOTONIC`.
public enum MonotonicClock {
    /// Nanoseconds since an arbitrary fixed point (boot); only differences are meaningful.
    public static func nanoseconds() -> UInt64 {
        var time = timespec()
        _ = clock_gettime(CLOCK_MONOTONIC, &time)
        return UInt64(time.tv_sec) &* 1_000_000_000 &+ UInt64(time.tv_nsec)
    }
}

/// Terminal queries.
public enum Terminal {
    /// Whether `fileDescriptor` refers to a terminal (`isatty`), e.g. to decide on progress output.
    public static func isTerminal(fileDescriptor: Int32) -> Bool {
        isatty(fileDescriptor) == 1
    }
}
