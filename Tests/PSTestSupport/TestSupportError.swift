/// A failure of a test helper: a missing binary, a timeout, a child that exited too early.
public struct TestSupportError: Error, CustomStringConvertible, Sendable {
    /// What went wrong, with the context needed to act on it.
    public let message: String

    /// Creates an error with `message`.
    public init(_ message: String) {
        self.message = message
    }

    /// The message.
    public var description: String {
        message
    }
}
