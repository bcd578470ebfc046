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
