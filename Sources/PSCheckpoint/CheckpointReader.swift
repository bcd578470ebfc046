import Foundation
import PSPosix

/// A checkpoint read back and verified: its manifest and every tensor by name.
public struct LoadedCheckpoint: Sendable, Equatable {
    /// The checkpoint directory it was read from.
    public let directory: String
    /// The parsed manifest.
    public let manifest: CheckpointManifest
    /// The parameter tensors by name (`fc1.weight`), whole.
    public let tensors: [String: NPYArray]
    /// The optimizer state tensors by `tensor.slot` (`fc1.weight.adam_m`), whole.
    public let optimizerStates: [String: NPYArray]
}

/// Finds and verifies checkpoints written by `CheckpointWriter`.
public enum CheckpointReader {
    /// The checkpoint directory that `spec` names.
    ///
    /// `"latest"` reads the `latest` pointer in `root`; any other spec is a path taken as is, either a checkpoint
    /// directory (it holds `manifest.json`) or a checkpoint root (it holds `latest`, which is then followed).
    /// Leftover `.tmp-*` entries are never chosen.
    public static func resolve(root: String?, spec: String) throws -> String {
        if spec == "latest" {
            guard let root else {
                throw CheckpointError(
                    file: "latest", message: "'latest' needs a checkpoint root directory (--checkpoint-dir)")
            }
            return try followLatest(root: root)
        }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: spec, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw CheckpointError(file: spec, message: "no such checkpoint directory")
        }
        if FileManager.default.fileExists(atPath: CheckpointWriter.path(spec, CheckpointManifest.fileName)) {
            return spec
        }
        if FileManager.default.fileExists(atPath: CheckpointWriter.path(spec, CheckpointWriter.latestFileName)) {
            return try followLatest(root: spec)
        }
        throw CheckpointError(
            file: spec,
            message: "not a checkpoint: it has neither \(CheckpointManifest.fileName) nor a "
                + "'\(CheckpointWriter.latestFileName)' pointer")
    }

    private static func followLatest(root: String) throws -> String {
        let pointer = CheckpointWriter.path(root, CheckpointWriter.latestFileName)
        guard let data = FileManager.default.contents(atPath: pointer) else {
            throw CheckpointError(file: pointer, message: "no checkpoint yet: the pointer file does not exist")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw CheckpointError(file: pointer, message: "the pointer file is not text")
        }
        let lines = text.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
        let name = lines.first ?? ""
        guard CheckpointWriter.step(ofDirectoryName: name) != nil else {
            throw CheckpointError(
                file: pointer, message: "does not name a checkpoint directory (step-NNNNNNNNNN): '\(name)'")
        }
        let directory = CheckpointWriter.path(root, name)
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue
        else {
            // A crash while a checkpoint of the same step was replaced can leave `latest` dangling: fall back to
            // the newest complete checkpoint (one with a manifest) rather than refuse to restore.
            if let fallback = newestComplete(root: root) { return fallback }
            throw CheckpointError(
                file: directory, message: "'\(pointer)' points to this directory, which does not exist")
        }
        let prefix = CheckpointWriter.latestChecksumKey + " "
        if let line = lines.dropFirst().first(where: { $0.hasPrefix(prefix) }) {
            let expected = String(line.dropFirst(prefix.count))
            let manifestPath = CheckpointWriter.path(directory, CheckpointManifest.fileName)
            guard let manifest = FileManager.default.contents(atPath: manifestPath) else {
                throw CheckpointError(
                    file: manifestPath, message: "missing: the checkpoint 'latest' names is incomplete")
            }
            let actual = CheckpointWriter.hex(manifest.withUnsafeBytes { CRC32C.checksum($0) })
            guard actual == expected.lowercased() else {
                throw CheckpointError(
                    file: manifestPath,
                    message:
                        "manifest CRC32C mismatch: '\(pointer)' says \(expected), the manifest has \(actual) "
                        + "(edited or damaged after it was written)")
            }
        }
        return directory
    }

    /// The complete checkpoint (a `step-N` directory holding a manifest) with the highest step under `root`.
    private static func newestComplete(root: String) -> String? {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []
        return
            entries
            .compactMap { name in CheckpointWriter.step(ofDirectoryName: name).map { (name: name, step: $0) } }
            .sorted { $0.step > $1.step }
            .map { CheckpointWriter.path(root, $0.name) }
            .first { FileManager.default.fileExists(atPath: CheckpointWriter.path($0, CheckpointManifest.fileName)) }
    }

    /// Reads a checkpoint directory and verifies every file the manifest lists: present, CRC-32C equal, a
    /// float32 `.npy` of the listed shape. Any failure throws a `CheckpointError` naming the file.
    public static func load(directory: String) throws -> LoadedCheckpoint {
        let manifestPath = CheckpointWriter.path(directory, CheckpointManifest.fileName)
        let manifest = try loadManifest(directory: directory)
        var tensors: [String: NPYArray] = [:]
        for entry in manifest.tensors {
            guard entry.slot == nil, tensors[entry.name] == nil else {
                throw CheckpointError(file: manifestPath, message: "tensor entry '\(entry.key)' is invalid or repeated")
            }
            tensors[entry.name] = try loadEntry(entry, directory: directory, manifestPath: manifestPath)
        }
        let states = try loadOptimizerStates(directory: directory, manifest: manifest)
        return LoadedCheckpoint(directory: directory, manifest: manifest, tensors: tensors, optimizerStates: states)
    }

    /// Reads and verifies only the optimizer state files a manifest lists (by `tensor.slot`), as `load` does.
    public static func loadOptimizerStates(
        directory: String, manifest: CheckpointManifest
    ) throws -> [String: NPYArray] {
        let manifestPath = CheckpointWriter.path(directory, CheckpointManifest.fileName)
        var states: [String: NPYArray] = [:]
        for entry in manifest.optimizer.states {
            guard entry.slot != nil, states[entry.key] == nil else {
                throw CheckpointError(
                    file: manifestPath, message: "optimizer state entry '\(entry.key)' has no slot or is repeated")
            }
            states[entry.key] = try loadEntry(entry, directory: directory, manifestPath: manifestPath)
        }
        return states
    }

    /// Reads and decodes a checkpoint directory's manifest (the first step of `load`).
    public static func loadManifest(directory: String) throws -> CheckpointManifest {
        let manifestPath = CheckpointWriter.path(directory, CheckpointManifest.fileName)
        guard let manifestData = FileManager.default.contents(atPath: manifestPath) else {
            throw CheckpointError(
                file: manifestPath, message: "missing: not a checkpoint directory, or an incomplete one")
        }
        return try CheckpointManifest.decode(manifestData, file: manifestPath)
    }

    /// Reads one manifest entry's `.npy` file, checking its name, dtype, shape and CRC-32C against the entry
    /// (errors name `manifestPath` or the file).
    public static func loadEntry(_ entry: TensorEntry, directory: String, manifestPath: String) throws -> NPYArray {
        guard !entry.file.isEmpty, !entry.file.contains("/"), entry.file != ".", entry.file != ".." else {
            throw CheckpointError(file: manifestPath, message: "'\(entry.key)' names an invalid file '\(entry.file)'")
        }
        guard entry.dtype == "float32" else {
            throw CheckpointError(
                file: manifestPath, message: "'\(entry.key)' has dtype \(entry.dtype); only float32 is supported")
        }
        let file = CheckpointWriter.path(directory, entry.file)
        guard FileManager.default.fileExists(atPath: file) else {
            throw CheckpointError(
                file: file, message: "missing: listed in \(CheckpointManifest.fileName) as '\(entry.key)'")
        }
        if let array = readVerified(file: file, entry: entry) { return array }
        // Anything unusual (a damaged, truncated or foreign file): read it whole and say exactly what is wrong.
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: file))
        } catch {
            throw CheckpointError(file: file, message: "cannot read: \(error.localizedDescription)")
        }
        let crc = data.withUnsafeBytes { CRC32C.checksum($0) }
        let decoded: Result<NPYArray, NPYError> = data.withUnsafeBytes { bytes in
            Result { () throws(NPYError) -> NPYArray in try NPY.decode(bytes, file: file) }
        }
        guard crc == entry.crc32c else {
            var message =
                "CRC32C mismatch: manifest says \(hex(entry.crc32c)), file has \(hex(crc)) (\(data.count) bytes)"
            if case .failure(let error) = decoded { message += "; \(error.message)" }
            throw CheckpointError(file: file, message: message)
        }
        let array: NPYArray
        switch decoded {
        case .success(let value): array = value
        case .failure(let error): throw CheckpointError(file: file, message: error.message)
        }
        guard array.dtype == "<f4" else {
            throw CheckpointError(
                file: file, message: "dtype mismatch: manifest says float32 (<f4), file has \(array.dtype)")
        }
        guard array.shape == entry.shape else {
            throw CheckpointError(
                file: file, message: "shape mismatch: manifest says \(entry.shape), file has \(array.shape)")
        }
        return array
    }

    /// Reads one tensor file of a checkpoint sequentially into caller memory (for example straight into shard
    /// storage), piece by piece, computing its CRC-32C as it goes; once the last element is read it checks the
    /// CRC against the manifest and that the file ends there. Any difference throws; callers then read the
    /// checkpoint with `load(directory:)`, which names the precise problem.
    public final class TensorStream {
        private let input: OpenFile
        private let entry: TensorEntry
        private var crc: UInt32
        private var remaining: Int

        /// Opens `entry`'s file in `directory` and checks its header: float32, the listed shape, the right size.
        /// A tensor with no elements is verified here.
        public init(directory: String, entry: TensorEntry) throws {
            guard !entry.file.isEmpty, !entry.file.contains("/"), entry.file != ".", entry.file != "..",
                entry.dtype == "float32"
            else { throw CheckpointError(file: directory, message: "'\(entry.key)' is not a float32 tensor file") }
            let file = CheckpointWriter.path(directory, entry.file)
            let input = try OpenFile.openForReading(path: file)
            let header: [UInt8]
            let count: Int
            do {
                let size = try input.size()
                var preamble = [UInt8](repeating: 0, count: 10)
                guard try preamble.withUnsafeMutableBytes({ try input.read(into: $0) }) == 10, preamble[6] == 1 else {
                    throw CheckpointError(file: file, message: "not a version 1.0 .npy file")
                }
                var bytes = preamble + [UInt8](repeating: 0, count: Int(preamble[8]) | Int(preamble[9]) << 8)
                let dictBytes = bytes.count - 10
                guard
                    try bytes.withUnsafeMutableBytes({
                        try input.read(into: UnsafeMutableRawBufferPointer(rebasing: $0[10...]))
                    }) == dictBytes
                else { throw CheckpointError(file: file, message: "truncated header") }
                let parsed = try bytes.withUnsafeBytes { (raw) throws(NPYError) in try NPY.parseHeader(raw, file: file)
                }
                guard parsed.dtype == "<f4", parsed.shape == entry.shape, parsed.dataStart == bytes.count,
                    size - parsed.dataStart == parsed.count * 4
                else { throw CheckpointError(file: file, message: "not the float32 array the manifest lists") }
                header = bytes
                count = parsed.count
            } catch {
                try? input.close()
                throw error
            }
            self.input = input
            self.entry = entry
            crc = CRC32C.checksum(header)
            remaining = count * 4
            if remaining == 0 { try verify() }
        }

        deinit { try? input.close() }

        /// The bytes still to read.
        public var remainingBytes: Int { remaining }

        /// Reads the next `buffer.count` bytes of data into `buffer` (little-endian float32); after the last,
        /// verifies the CRC-32C.
        public func read(into buffer: UnsafeMutableRawBufferPointer) throws {
            let file = input.path
            guard buffer.count <= remaining else {
                throw CheckpointError(file: file, message: "asked for more bytes than the tensor has")
            }
            var offset = 0
            while offset < buffer.count {
                let end = min(buffer.count, offset + readChunkBytes)
                let chunk = UnsafeMutableRawBufferPointer(rebasing: buffer[offset..<end])
                guard try input.read(into: chunk) == chunk.count else {
                    throw CheckpointError(file: file, message: "truncated")
                }
                crc = CRC32C.checksum(UnsafeRawBufferPointer(chunk), seed: crc)
                offset = end
            }
            remaining -= buffer.count
            if remaining == 0 { try verify() }
        }

        private func verify() throws {
            var extra: UInt8 = 0
            guard try withUnsafeMutableBytes(of: &extra, { try input.read(into: $0) }) == 0, crc == entry.crc32c else {
                throw CheckpointError(file: input.path, message: "CRC32C mismatch or trailing bytes")
            }
        }
    }

    /// The bytes read (and checksummed) per `read` call on the fast path: small enough to still be in the
    /// cache when the CRC reads them back.
    static let readChunkBytes = 1 << 20

    /// The fast path of `loadEntry`: reads the header, then the data straight into the array it returns, one
    /// chunk at a time, computing the CRC-32C of each chunk right after reading it (one pass, no file-sized
    /// buffer, no decode copy). Returns nil unless the file is exactly what the manifest says (a float32 `.npy`
    /// of the listed shape, nothing more, the listed CRC); the caller then takes the slow path, which finds the
    /// same bytes and reports the precise problem.
    static func readVerified(file: String, entry: TensorEntry) -> NPYArray? {
        guard let input = try? OpenFile.openForReading(path: file) else { return nil }
        defer { try? input.close() }
        guard let size = try? input.size() else { return nil }
        // magic (6) + version (2) + length (2) + the dict: at most 10 + 65535 bytes for version 1.
        var preamble = [UInt8](repeating: 0, count: 10)
        guard (try? preamble.withUnsafeMutableBytes { try input.read(into: $0) }) == 10, preamble[6] == 1 else {
            return nil
        }
        var header = preamble + [UInt8](repeating: 0, count: Int(preamble[8]) | Int(preamble[9]) << 8)
        let dictBytes = header.count - 10
        guard
            (try? header.withUnsafeMutableBytes {
                try input.read(into: UnsafeMutableRawBufferPointer(rebasing: $0[10...]))
            }) == dictBytes
        else { return nil }
        let parsed = header.withUnsafeBytes { try? NPY.parseHeader($0, file: file) }
        guard let parsed, parsed.dtype == "<f4", parsed.shape == entry.shape, parsed.dataStart == header.count,
            size - parsed.dataStart == parsed.count * 4
        else { return nil }
        var crc = CRC32C.checksum(header)
        let count = parsed.count
        var complete = true
        let values = [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
            let bytes = UnsafeMutableRawBufferPointer(buffer)
            var offset = 0
            while offset < bytes.count {
                let end = min(bytes.count, offset + readChunkBytes)
                let chunk = UnsafeMutableRawBufferPointer(rebasing: bytes[offset..<end])
                guard (try? input.read(into: chunk)) == chunk.count else {
                    complete = false
                    break
                }
                crc = CRC32C.checksum(UnsafeRawBufferPointer(chunk), seed: crc)
                offset = end
            }
            if !complete { bytes.initializeMemory(as: UInt8.self, repeating: 0) }
            initialized = count
        }
        guard complete, crc == entry.crc32c else { return nil }
        #if _endian(little)
            return NPYArray(shape: parsed.shape, values: values, dtype: parsed.dtype)
        #else
            let host = values.map { Float(bitPattern: UInt32(littleEndian: $0.bitPattern)) }
            return NPYArray(shape: parsed.shape, values: host, dtype: parsed.dtype)
        #endif
    }

    private static func hex(_ value: UInt32) -> String {
        let digits = String(value, radix: 16, uppercase: true)
        return "0x" + String(repeating: "0", count: 8 - digits.count) + digits
    }
}
