import Foundation
import PSPosix

/// One data file of a checkpoint being written: its slice, its `.npy` header and its manifest facts.
struct PlannedFile: Sendable {
    let slice: CheckpointSlice
    let flatOffset: Int
    let header: [UInt8]
    let fileName: String

    init(slice: CheckpointSlice, flatOffset: Int) {
        self.slice = slice
        self.flatOffset = flatOffset
        header = NPY.header(float32Shape: slice.shape)
        fileName = (slice.slot.map { "\(slice.name).\($0)" } ?? slice.name) + ".npy"
    }

    /// Runs `body` with the file's data bytes (little-endian float32), straight from the slice's storage.
    func withBody<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        #if _endian(little)
            let range = slice.range
            return try slice.storage.withUnsafeBytes { storage in
                try body(UnsafeRawBufferPointer(rebasing: storage[(range.lowerBound * 4)..<(range.upperBound * 4)]))
            }
        #else
            let swapped = slice.storage[slice.range].map { $0.bitPattern.littleEndian }
            return try swapped.withUnsafeBytes { try body($0) }
        #endif
    }

    /// The CRC-32C of the whole file (header, then data), computed in chunks so that `isCancelled` is checked
    /// every few MiB.
    func checksum(isCancelled: () -> Bool) -> UInt32? {
        var crc = header.withUnsafeBytes { CRC32C.checksum($0) }
        let finished: Bool = withBody { body in
            var offset = 0
            while offset < body.count {
                if isCancelled() { return false }
                let end = min(body.count, offset + OverlappedChecksums.chunkBytes)
                crc = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: body[offset..<end]), seed: crc)
                offset = end
            }
            return true
        }
        return finished ? crc : nil
    }
}

/// The CRC-32Cs of a checkpoint's data files, computed on a helper thread while the writer thread writes and
/// fsyncs the same files, so that the checksum costs (almost) no time on top of the disk's.
///
/// Both threads only read the slices' storage. The results are published through a `LockedValue`; the writer
/// waits for them with a deadline in ``results(root:)``.
final class OverlappedChecksums: Sendable {
    /// The CRC is computed and cancellation checked in pieces of this many bytes.
    static let chunkBytes = 4 << 20

    private struct Progress {
        /// One checksum per file, in order, once computed.
        var checksums: [UInt32] = []
        var cancelled = false
        var finished = false
    }

    private let progress = LockedValue(Progress())
    private let fileCount: Int
    private let byteCount: Int

    /// Starts the helper thread over `files`.
    init(_ files: [PlannedFile]) {
        fileCount = files.count
        byteCount = files.reduce(0) { $0 + $1.header.count + $1.slice.range.count * 4 }
        let thread = Thread { [progress] in
            for file in files {
                let crc = file.checksum(isCancelled: { progress.withLock { $0.cancelled } })
                guard let crc else { break }
                progress.withLockAndBroadcast { $0.checksums.append(crc) }
            }
            progress.withLockAndBroadcast { $0.finished = true }
        }
        thread.name = "psserver-checkpoint-crc"
        thread.start()
    }

    /// Asks the helper to stop at its next chunk (the write failed); results no longer matter.
    func cancel() {
        progress.withLockAndBroadcast { $0.cancelled = true }
    }

    /// Waits for every file's checksum. The deadline allows 10 MB/s of checksumming (at least a minute), far
    /// below any machine's speed, so that passing it means the helper is stuck.
    func results(root: String) throws -> [UInt32] {
        let seconds = max(60, Double(byteCount) / 10e6)
        let deadline = MonotonicClock.deadline(afterSeconds: seconds)
        let checksums = progress.wait(until: deadline, while: { !$0.finished }) { state, _ in state.checksums }
        guard checksums.count == fileCount else {
            throw CheckpointError(
                file: root,
                message:
                    "the CRC-32C of \(fileCount - checksums.count) data files was not computed within "
                    + "\(Int(seconds)) s")
        }
        return checksums
    }
}
