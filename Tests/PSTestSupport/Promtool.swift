import Foundation
import XCTest

/// Debian's `promtool` (package `prometheus`): the reference linter of the exposition format.
public enum Promtool {
    public static var path: String? {
        ["/usr/bin/promtool", "/usr/local/bin/promtool"].first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// Runs `promtool check metrics` on `text`; skips the test when promtool is not installed.
    public static func check(_ text: String, stage: String) throws {
        guard let path else {
            throw XCTSkip("promtool is not installed (apt-get install --no-install-recommends prometheus)")
        }
        let directory = try TemporaryDirectory(prefix: "swiftps-promtool")
        defer { directory.remove() }
        let file = directory.path + "/metrics.txt"
        try text.write(toFile: file, atomically: true, encoding: .utf8)
        let process = try ChildProcess(
            executable: URL(fileURLWithPath: "/bin/sh"), arguments: ["-c", "\"\(path)\" check metrics < \(file)"])
        let code = process.wait(timeout: .seconds(30))
        XCTAssertEqual(
            code, 0, "promtool check metrics \(stage): \(process.standardOutput)\(process.standardError)")
    }
}
