/// A checkpoint that cannot be written, found or trusted; the description names the file and what is wrong.
public struct CheckpointError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The file or directory at fault.
    public let file: String
    /// What is wrong with it, e.g. "CRC32C mismatch: manifest says 0x…, file has 0x…".
    public let message: String

    /// Creates an error about `file`.
    public init(file: String, message: String) {
        self.file = file
        self.message = message
    }

    public var description: String { "\(file): \(message)" }
}
