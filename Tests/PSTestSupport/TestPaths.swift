import Foundation

/// Locations tests need: the package root and the built executables.
public enum TestPaths {
    /// The package root (the directory holding Package.swift), found from this file's path.
    public static let packageRoot: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent()  // PSTestSupport
        .deletingLastPathComponent()  // Tests
        .deletingLastPathComponent()

    /// The directories searched for built executables: the directory of the running test bundle first.
    public static var buildDirectories: [URL] {
        var directories: [URL] = []
        if let first = CommandLine.arguments.first {
            directories.append(URL(fileURLWithPath: first).deletingLastPathComponent())
        }
        directories.append(Bundle.main.bundleURL)
        directories.append(packageRoot.appendingPathComponent(".build/debug"))
        var seen: Set<String> = []
        return directories.filter { seen.insert($0.standardizedFileURL.path).inserted }
    }

    /// The URL of the built executable `name` (e.g. `psserver`), next to the running test bundle.
    ///
    /// Throws an error naming the directories searched if it is missing (build with `swift build` first).
    public static func binary(named name: String) throws -> URL {
        let directories = buildDirectories
        for directory in directories {
            let candidate = directory.appendingPathComponent(name)
            if FileManager.default.isExecutableFile(atPath: candidate.path) {
                return candidate
            }
        }
        let searched = directories.map(\.path).joined(separator: ", ")
        throw TestSupportError(
            "executable '\(name)' not found in \(searched); run `swift build` (or `swift build --build-tests`) first"
        )
    }
}

/// A fresh directory under `NSTemporaryDirectory()`, removed by ``remove()`` or when the value is released.
public final class TemporaryDirectory: Sendable {
    /// The directory.
    public let url: URL

    /// Creates `<tmp>/<prefix>-<UUID>`.
    public init(prefix: String = "swiftps-test") throws {
        url = URL(fileURLWithPath: NSTemporaryDirectory())
            .appendingPathComponent("\(prefix)-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    /// The directory's path.
    public var path: String {
        url.path
    }

    /// The URL of `name` inside the directory.
    public func file(_ name: String) -> URL {
        url.appendingPathComponent(name)
    }

    /// Removes the directory and everything in it; safe to call more than once.
    public func remove() {
        try? FileManager.default.removeItem(at: url)
    }

    deinit {
        remove()
    }
}
