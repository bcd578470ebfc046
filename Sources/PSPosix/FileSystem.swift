#if canImport(Glibc)
    import Glibc
#endif

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

    /// Creates `path` and any missing parents (`mkdir -p`, mode 0755); an existing directory is fine.
    public static func makeDirectories(path: String) throws(FileError) {
        var prefix = path.hasPrefix("/") ? "" : "."
        for component in path.split(separator: "/", omittingEmptySubsequences: true) {
            prefix += "/" + component
            do {
                try nothingOrErrno { mkdir(prefix, 0o755) }
            } catch {
                var status = stat()
                if error == .fileExists, stat(prefix, &status) == 0, status.st_mode & S_IFMT == S_IFDIR { continue }
                throw FileError(operation: "mkdir", path: prefix, errno: error)
            }
        }
    }

    /// Checks that files can be created in `directory`: creates (`O_CREAT | O_EXCL`) and removes a probe file.
    ///
    /// Used at start-up so that an unwritable checkpoint directory is an error then, not when the first
    /// checkpoint or the final weights cannot be written.
    public static func probeWritable(directory: String) throws(FileError) {
        let probe = directory + "/.swiftps-probe-\(getpid())"
        let descriptor: Int32
        do {
            descriptor = try valueOrErrno { open(probe, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0o600) }
        } catch {
            throw FileError(operation: "create", path: probe, errno: error)
        }
        _ = try? nothingOrErrno(retryOnInterrupt: false) { close(descriptor) }
        _ = unlink(probe)
    }

    /// Kills this process with `SIGKILL` at once, as a crash would: no cleanup, no buffered output flushed.
    ///
    /// Only for crash-recovery tests (for example a checkpoint writer interrupted half-way).
    public static func crashNowForTesting() -> Never {
        _ = Glibc.kill(getpid(), SIGKILL)
        _exit(137)
    }
}
