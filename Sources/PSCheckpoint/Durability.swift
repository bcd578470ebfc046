// TODO(integration): route through PSPosix.FileSystem (fsync(path:), fsyncDirectory(path:),
// renameReplacing(from:to:), crashNowForTesting()) and drop this file's Glibc import.
import Foundation
import Glibc

/// Flushes a file's data and metadata to stable storage.
func fsyncFile(_ path: String) throws {
    guard let handle = FileHandle(forUpdatingAtPath: path) else {
        throw CheckpointError(file: path, message: "cannot open to fsync")
    }
    defer { try? handle.close() }
    do {
        try handle.synchronize()
    } catch {
        throw CheckpointError(file: path, message: "fsync failed: \(error.localizedDescription)")
    }
}

/// Flushes a directory's entries (new, renamed, removed names) to stable storage; best effort where the file
/// system cannot fsync a directory.
func fsyncDirectory(_ path: String) throws {
    guard let handle = FileHandle(forReadingAtPath: path) else {
        throw CheckpointError(file: path, message: "cannot open directory to fsync")
    }
    defer { try? handle.close() }
    // Some file systems refuse fsync on a directory (EINVAL); the entries are then as durable as they get.
    try? handle.synchronize()
}

/// Renames `from` to `to` with rename(2), atomically replacing a file (or an empty directory) at `to`.
func renameReplacing(_ from: String, _ to: String) throws {
    guard Glibc.rename(from, to) == 0 else {
        let code = errno
        throw CheckpointError(file: to, message: "cannot rename \(from) to it: \(String(cString: strerror(code)))")
    }
}

/// Kills this process at once with SIGKILL, like a power cut, for crash tests.
func crashForTesting() -> Never {
    _ = kill(getpid(), SIGKILL)
    abort()
}
