#if canImport(Glibc)
    import CGlibcGNU
    import Glibc
#endif

/// An open regular file for bulk data: gathered writes straight from the caller's buffers, `fsync` on the same
/// descriptor, and reads straight into the caller's memory (the checkpoint data path).
///
/// A thin wrapper over `open(2)`, `writev(2)`, `read(2)`, `fstat(2)`, `sync_file_range(2)`, `fsync(2)` and
/// `close(2)`; every call but the writeback hint goes through the package's system-call funnel (`EINTR` retried,
/// short reads and writes looped). The owner closes it exactly once with ``close()``.
public struct OpenFile: Sendable {
    /// The descriptor.
    public let descriptor: Int32
    /// The path it was opened with, for error messages.
    public let path: String

    /// Creates (or truncates) `path` for writing, mode 0666 before the umask, as Foundation's `Data.write` does.
    public static func create(path: String) throws(FileError) -> OpenFile {
        do {
            let descriptor = try valueOrErrno { open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o666) }
            return OpenFile(descriptor: descriptor, path: path)
        } catch {
            throw FileError(operation: "open", path: path, errno: error)
        }
    }

    /// Opens an existing file for reading.
    public static func openForReading(path: String) throws(FileError) -> OpenFile {
        do {
            let descriptor = try valueOrErrno { open(path, O_RDONLY | O_CLOEXEC) }
            return OpenFile(descriptor: descriptor, path: path)
        } catch {
            throw FileError(operation: "open", path: path, errno: error)
        }
    }

    /// Writes `a` then `b` with one `writev` per attempt, looping over short writes (a 1 GiB body takes one or
    /// two calls; Linux caps one call at just under 2 GiB). Empty buffers are skipped.
    public func writeAll(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) throws(FileError) {
        var vectors = (iovec(), iovec())
        try withUnsafeMutablePointer(to: &vectors) { (tuple) throws(FileError) in
            try tuple.withMemoryRebound(to: iovec.self, capacity: 2) { (iov) throws(FileError) in
                var count = 0
                for buffer in [a, b] where buffer.count > 0 {
                    iov[count] = iovec(
                        iov_base: UnsafeMutableRawPointer(mutating: buffer.baseAddress), iov_len: buffer.count)
                    count += 1
                }
                var first = 0
                while first < count {
                    let written: Int
                    do throws(Errno) {
                        written = try valueOrErrno { writev(descriptor, iov + first, Int32(count - first)) }
                    } catch {
                        throw FileError(operation: "write", path: path, errno: error)
                    }
                    first = advanceVectors(iov, first: first, count: count, by: written)
                }
            }
        }
    }

    /// Reads into `buffer` until it is full or the file ends; returns the number of bytes read.
    public func read(into buffer: UnsafeMutableRawBufferPointer) throws(FileError) -> Int {
        guard let base = buffer.baseAddress else { return 0 }
        var offset = 0
        while offset < buffer.count {
            let count: Int
            do {
                count = try valueOrErrno { Glibc.read(descriptor, base + offset, buffer.count - offset) }
            } catch {
                throw FileError(operation: "read", path: path, errno: error)
            }
            if count == 0 { break }
            offset += count
        }
        return offset
    }

    /// The file's size in bytes (`fstat`).
    public func size() throws(FileError) -> Int {
        var status = stat()
        do {
            try nothingOrErrno { fstat(descriptor, &status) }
        } catch {
            throw FileError(operation: "fstat", path: path, errno: error)
        }
        return Int(status.st_size)
    }

    /// Asks the kernel to start writing `count` bytes from `offset` back to the disk now, without waiting
    /// (`sync_file_range` with `SYNC_FILE_RANGE_WRITE`), so that the disk works while the caller writes the next
    /// part and a later ``synchronize()`` finds the data already on its way. Only a hint: it makes nothing durable
    /// (no metadata, no cache flush) and its failure (a file system without it) is ignored.
    public func startWriteback(offset: Int, count: Int) {
        #if os(Linux)
            _ = sync_file_range(descriptor, offset, count, CGLIBCGNU_SYNC_FILE_RANGE_WRITE)
        #endif
    }

    /// Flushes the file's data and metadata to stable storage (`fsync`).
    public func synchronize() throws(FileError) {
        do {
            try nothingOrErrno { Glibc.fsync(descriptor) }
        } catch {
            throw FileError(operation: "fsync", path: path, errno: error)
        }
    }

    /// Closes the descriptor (never retried after `EINTR`); an error here means written data may be lost.
    public func close() throws(FileError) {
        do {
            try nothingOrErrno(retryOnInterrupt: false) { Glibc.close(descriptor) }
        } catch {
            throw FileError(operation: "close", path: path, errno: error)
        }
    }
}
