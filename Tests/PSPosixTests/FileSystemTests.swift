import Foundation
import PSPosix
import PSTestSupport
import XCTest

final class FileSystemTests: XCTestCase {
    func test_fsync_existingFileAndDirectory_succeed() throws {
        let directory = try TemporaryDirectory()
        let file = directory.file("a.bin")
        try Data([1, 2, 3]).write(to: file)
        try FileSystem.fsync(path: file.path)
        try FileSystem.fsyncDirectory(path: directory.path)
    }

    func test_fsync_missingFile_throwsNamingPathAndErrno() throws {
        let directory = try TemporaryDirectory()
        let path = directory.file("missing").path
        XCTAssertThrowsError(try FileSystem.fsync(path: path)) {
            XCTAssertEqual($0 as? FileError, FileError(operation: "open", path: path, errno: .noSuchFileOrDirectory))
            XCTAssertEqual("\($0)", "open '\(path)' failed: ENOENT (No such file or directory)")
        }
    }

    func test_fsyncDirectory_onAFile_throwsNotDirectory() throws {
        let directory = try TemporaryDirectory()
        let file = directory.file("plain")
        try Data().write(to: file)
        XCTAssertThrowsError(try FileSystem.fsyncDirectory(path: file.path)) {
            XCTAssertEqual(($0 as? FileError)?.errno, .notDirectory)
        }
    }

    func test_renameReplacing_replacesExistingFile() throws {
        let directory = try TemporaryDirectory()
        let source = directory.file("latest.tmp")
        let destination = directory.file("latest")
        try Data("old".utf8).write(to: destination)
        try Data("new".utf8).write(to: source)
        try FileSystem.renameReplacing(from: source.path, to: destination.path)
        XCTAssertEqual(try String(contentsOf: destination, encoding: .utf8), "new")
        XCTAssertFalse(FileManager.default.fileExists(atPath: source.path))
    }

    func test_renameReplacing_missingSource_namesBothPaths() throws {
        let directory = try TemporaryDirectory()
        let source = directory.file("nope").path
        let destination = directory.file("there").path
        XCTAssertThrowsError(try FileSystem.renameReplacing(from: source, to: destination)) {
            XCTAssertEqual(
                "\($0)",
                "rename '\(source)' to '\(destination)' failed: ENOENT (No such file or directory)"
            )
        }
    }

    func test_temporaryDirectory_remove_deletesEverything() throws {
        let directory = try TemporaryDirectory()
        try Data([0]).write(to: directory.file("x"))
        directory.remove()
        XCTAssertFalse(FileManager.default.fileExists(atPath: directory.path))
    }
}

final class HostTests: XCTestCase {
    func test_host_nameAndProcessID() {
        XCTAssertFalse(Host.name().isEmpty)
        XCTAssertEqual(Host.processID(), ProcessInfo.processInfo.processIdentifier)
    }

    func test_monotonicClock_increasesAcrossASleep() {
        let start = MonotonicClock.nanoseconds()
        Thread.sleep(forTimeInterval: 0.01)
        let end = MonotonicClock.nanoseconds()
        XCTAssertGreaterThanOrEqual(end - start, 10_000_000)
    }

    func test_terminal_invalidDescriptorAndPipe_areNotTerminals() {
        XCTAssertFalse(Terminal.isTerminal(fileDescriptor: -1))
        let pipe = Pipe()
        XCTAssertFalse(Terminal.isTerminal(fileDescriptor: pipe.fileHandleForReading.fileDescriptor))
    }
}
