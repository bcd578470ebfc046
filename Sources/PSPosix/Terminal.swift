#if canImport(Glibc)
    import Glibc
#endif

/// Terminal queries.
public enum Terminal {
    /// Whether `fileDescriptor` refers to a terminal (`isatty`), e.g. to decide on progress output.
    public static func isTerminal(fileDescriptor: Int32) -> Bool {
        isatty(fileDescriptor) == 1
    }
}
