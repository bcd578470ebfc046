import Foundation

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
        guard let manifestData = FileManager.default.contents(atPath: manifestPath) else {
            throw CheckpointError(
                file: manifestPath, message: "missing: not a checkpoint directory, or an incomplete one")
        }
        let manifest = try CheckpointManifest.decode(manifestData, file: manifestPath)
        var tensors: [String: NPYArray] = [:]
        for entry in manifest.tensors {
            guard entry.slot == nil, tensors[entry.name] == nil else {
                throw CheckpointError(file: manifestPath, message: "tensor entry '\(entry.key)' is invalid or repeated")
            }
            tensors[entry.name] = try loadEntry(entry, directory: directory, manifestPath: manifestPath)
        }
        var states: [String: NPYArray] = [:]
        for entry in manifest.optimizer.states {
            guard entry.slot != nil, states[entry.key] == nil else {
                throw CheckpointError(
                    file: manifestPath, message: "optimizer state entry '\(entry.key)' has no slot or is repeated")
            }
            states[entry.key] = try loadEntry(entry, directory: directory, manifestPath: manifestPath)
        }
        return LoadedCheckpoint(directory: directory, manifest: manifest, tensors: tensors, optimizerStates: states)
    }

    private static func loadEntry(_ entry: TensorEntry, directory: String, manifestPath: String) throws -> NPYArray {
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

    private static func hex(_ value: UInt32) -> String {
        let digits = String(value, radix: 16, uppercase: true)
        return "0x" + String(repeating: "0", count: 8 - digits.count) + digits
    }
}
