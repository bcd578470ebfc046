import PSPosix

// Durability primitives for the checkpoint writer, through PSPosix (the only module that calls Glibc), with
// errors that name the checkpoint file.

/// Flushes a file's data and metadata to stable storage.
func fsyncFile(_ path: String) throws {
    do {
        try FileSystem.fsync(path: path)
    } catch {
        throw CheckpointError(file: path, message: "fsync failed: \(error)")
    }
}

/// Flushes a directory's entries (new, renamed, removed names) to stable storage.
func fsyncDirectory(_ path: String) throws {
    do {
        try FileSystem.fsyncDirectory(path: path)
    } catch {
        throw CheckpointError(file: path, message: "fsync of the directory failed: \(error)")
    }
}

/// Renames `from` to `to` with rename(2), atomically replacing a file (or an empty directory) at `to`.
func renameReplacing(_ from: String, _ to: String) throws {
    do {
        try FileSystem.renameReplacing(from: from, to: to)
    } catch {
        throw CheckpointError(file: to, message: "cannot rename \(from) to it: \(error)")
    }
}

/// Kills this process at once with SIGKILL, like a power cut, for crash tests.
func crashForTesting() -> Never {
    FileSystem.crashNowForTesting()
}
