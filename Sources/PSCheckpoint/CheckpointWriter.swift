import Foundation
import PSPosix

/// A parameter tensor to store in a checkpoint, whole (not per shard).
public struct CheckpointTensor: Sendable, Equatable {
    /// The tensor's name; also its file name stem (`fc1.weight` → `fc1.weight.npy`).
    public var name: String
    /// The shape, outermost dimension first.
    public var shape: [Int]
    /// The elements in C order.
    public var values: [Float]

    /// Creates a tensor; `values.count` must equal the product of `shape`.
    public init(name: String, shape: [Int], values: [Float]) {
        self.name = name
        self.shape = shape
        self.values = values
    }
}

/// One optimizer state tensor (a slot such as `adam_m`) of one parameter tensor, stored whole.
public struct CheckpointStateTensor: Sendable, Equatable {
    /// The parameter tensor it belongs to.
    public var tensor: String
    /// The slot name (`momentum`, `adam_m`, `adam_v`, `adagrad_sum`).
    public var slot: String
    /// The shape (the parameter tensor's shape).
    public var shape: [Int]
    /// The elements in C order.
    public var values: [Float]

    /// Creates a state tensor; `values.count` must equal the product of `shape`.
    public init(tensor: String, slot: String, shape: [Int], values: [Float]) {
        self.tensor = tensor
        self.slot = slot
        self.shape = shape
        self.values = values
    }
}

/// One data file of a checkpoint given as a range of a (shared, not copied) float array: a parameter tensor
/// (`slot` nil) or one optimizer state tensor of it. The checkpoint writer writes it straight from `storage`.
public struct CheckpointSlice: Sendable {
    /// The parameter tensor's name.
    public var name: String
    /// The optimizer state slot (`adam_m`…), or nil for the parameter tensor itself.
    public var slot: String?
    /// The shape, outermost dimension first.
    public var shape: [Int]
    /// The array holding the elements (for example a snapshot's flat weights); only `range` is written.
    public var storage: [Float]
    /// The elements of `storage` that make up the tensor, in C order.
    public var range: Range<Int>

    /// Creates a slice; `range.count` must equal the product of `shape` and lie within `storage`.
    public init(name: String, slot: String? = nil, shape: [Int], storage: [Float], range: Range<Int>) {
        self.name = name
        self.slot = slot
        self.shape = shape
        self.storage = storage
        self.range = range
    }
}

/// Writes checkpoints atomically: a crash at any point leaves the previous checkpoint and `latest` intact.
///
/// Layout under `root`:
///
///     root/
///       latest                       text: the name of the newest complete checkpoint directory
///       step-0000000200/
///         manifest.json              written last; lists every file below with its CRC-32C
///         fc1.weight.npy             one .npy per tensor (float32, C order)
///         fc1.weight.adam_m.npy      one .npy per optimizer state tensor
///       .tmp-…                       an interrupted write; removed by the next write, ignored by readers
///
/// Steps: files go into `root/.tmp-step-N-<pid>/`: the data files first, each written in chunks with the disk's
/// writeback started as each chunk lands, then each fsynced, then the manifest (written and fsynced); the
/// directory is fsynced, renamed to `step-N` and the root fsynced; then `latest` is replaced the same way
/// (temporary file, fsync, rename, fsync root); last, older checkpoints are pruned to `keepLast`. One writer per
/// root at a time.
public enum CheckpointWriter {
    /// The name of the pointer file in the root.
    public static let latestFileName = "latest"
    /// The key of `latest`'s second line, which carries the manifest's CRC-32C.
    public static let latestChecksumKey = "manifest-crc32c"

    /// `0x` and eight lower-case hex digits.
    static func hex(_ value: UInt32) -> String {
        let digits = String(value, radix: 16)
        return "0x" + String(repeating: "0", count: max(0, 8 - digits.count)) + digits
    }
    /// The prefix of temporary entries in the root (interrupted writes).
    public static let temporaryPrefix = ".tmp-"
    /// Test hook: when set to n, the process kills itself (SIGKILL) after writing n files of a checkpoint (0: right
    /// after creating the temporary directory; the manifest is the last file).
    public static let crashAfterFilesVariable = "PS_TEST_CRASH_AFTER_CHECKPOINT_FILES"

    /// The directory name of the checkpoint taken after `step` completed steps: `step-` and 10 digits.
    public static func directoryName(step: UInt64) -> String {
        let digits = String(step)
        return "step-" + String(repeating: "0", count: max(0, 10 - digits.count)) + digits
    }

    /// The step of a checkpoint directory name (`step-0000000200` → 200), or nil for any other name.
    public static func step(ofDirectoryName name: String) -> UInt64? {
        guard name.hasPrefix("step-") else { return nil }
        let digits = name.dropFirst(5)
        guard digits.count >= 10, digits.allSatisfy(\.isASCII), digits.allSatisfy(\.isNumber) else { return nil }
        return UInt64(digits)
    }

    /// Writes a checkpoint and returns its directory's path.
    ///
    /// `manifest` supplies the metadata (step, mode, job, clocks, optimizer name and hyper-parameters…); its
    /// `tensors` and `optimizer.states` are replaced by entries for the files written, with their CRC-32C, and an
    /// empty `createdAt` is set to the current time. `keepLast` (values below 1 count as 1) prunes older `step-*`
    /// directories, never the new one; nil keeps them all. Pruning is best effort.
    @discardableResult
    public static func write(
        root: String, manifest: CheckpointManifest, tensors: [CheckpointTensor],
        optimizerStates: [CheckpointStateTensor] = [], keepLast: Int? = nil
    ) throws -> String {
        try write(
            root: root, manifest: manifest, tensors: tensors, optimizerStates: optimizerStates, keepLast: keepLast,
            afterFileWritten: crashHookFromEnvironment())
    }

    /// Writes a checkpoint whose files are ranges of shared arrays (a snapshot's flat buffers), with no
    /// per-tensor copy; the files, manifest and layout are the same as `write(root:manifest:tensors:…)` would
    /// write for the same values. Slices with a nil `slot` are the parameter tensors, in order; the others are
    /// optimizer state tensors, each naming one of them.
    @discardableResult
    public static func write(
        root: String, manifest: CheckpointManifest, slices: [CheckpointSlice], keepLast: Int? = nil
    ) throws -> String {
        try write(
            root: root, manifest: manifest, slices: slices, keepLast: keepLast,
            afterFileWritten: crashHookFromEnvironment())
    }

    /// `write` with the crash hook injected: `afterFileWritten(n)` runs once the temporary directory exists
    /// (n = 0) and after each file is written (n = 1, 2, …, the manifest last; the data files are fsynced after
    /// the last of them is written, the manifest as soon as it is).
    static func write(
        root: String, manifest template: CheckpointManifest, tensors: [CheckpointTensor],
        optimizerStates: [CheckpointStateTensor], keepLast: Int?, afterFileWritten: (Int) throws -> Void
    ) throws -> String {
        let slices =
            tensors.map {
                CheckpointSlice(name: $0.name, shape: $0.shape, storage: $0.values, range: 0..<$0.values.count)
            }
            + optimizerStates.map {
                CheckpointSlice(
                    name: $0.tensor, slot: $0.slot, shape: $0.shape, storage: $0.values, range: 0..<$0.values.count)
            }
        return try write(
            root: root, manifest: template, slices: slices, keepLast: keepLast, afterFileWritten: afterFileWritten)
    }

    /// The slice form of `write` with the crash hook injected.
    static func write(
        root: String, manifest template: CheckpointManifest, slices: [CheckpointSlice], keepLast: Int?,
        afterFileWritten: (Int) throws -> Void
    ) throws -> String {
        let tensors = slices.filter { $0.slot == nil }
        let optimizerStates = slices.filter { $0.slot != nil }
        try validate(tensors: tensors, optimizerStates: optimizerStates, root: root)
        let files = FileManager.default
        do {
            try files.createDirectory(atPath: root, withIntermediateDirectories: true)
        } catch {
            throw CheckpointError(
                file: root, message: "cannot create checkpoint directory: \(error.localizedDescription)")
        }
        removeTemporaryEntries(root: root)

        let name = directoryName(step: template.step)
        let target = path(root, name)
        let pid = ProcessInfo.processInfo.processIdentifier
        let temporary = path(root, "\(temporaryPrefix)\(name)-\(pid)")
        do {
            try files.createDirectory(atPath: temporary, withIntermediateDirectories: false)
        } catch {
            throw CheckpointError(file: temporary, message: "cannot create: \(error.localizedDescription)")
        }
        var written = 0
        var manifestChecksum: UInt32 = 0
        do {
            try afterFileWritten(written)
            var manifest = template
            manifest.formatVersion = CheckpointManifest.currentFormatVersion
            if manifest.createdAt.isEmpty { manifest.createdAt = ISO8601DateFormatter().string(from: Date()) }
            manifest.tensors = []
            manifest.optimizer.states = []
            // Every data file in write order, with its header; a helper thread computes their CRC-32Cs while
            // this thread writes and fsyncs them (the manifest, written last, needs them all).
            var offsets: [String: Int] = [:]
            var flatOffset = 0
            var files: [PlannedFile] = []
            for tensor in tensors {
                files.append(PlannedFile(slice: tensor, flatOffset: flatOffset))
                offsets[tensor.name] = flatOffset
                flatOffset += tensor.range.count
            }
            for state in optimizerStates {
                files.append(PlannedFile(slice: state, flatOffset: offsets[state.name] ?? 0))
            }
            let checksums = OverlappedChecksums(files)
            defer { checksums.cancel() }
            // Each file's writeback is under way once it is written; fsyncing them only after the last one is
            // written lets the disk write one file while this thread copies the next (a bounded number open).
            var unsynced: [OpenFile] = []
            defer { for file in unsynced { try? file.close() } }
            for file in files {
                unsynced.append(try writeDataFile(file, directory: temporary))
                written += 1
                try afterFileWritten(written)
                if unsynced.count > maximumUnsyncedFiles { try synchronizeAndClose(unsynced.removeFirst()) }
            }
            while !unsynced.isEmpty { try synchronizeAndClose(unsynced.removeFirst()) }
            let crcs = try checksums.results(root: root)
            for (file, crc) in zip(files, crcs) {
                let entry = TensorEntry(
                    name: file.slice.name, slot: file.slice.slot, shape: file.slice.shape, file: file.fileName,
                    crc32c: crc, flatOffset: file.flatOffset)
                if file.slice.slot == nil {
                    manifest.tensors.append(entry)
                } else {
                    manifest.optimizer.states.append(entry)
                }
            }
            let manifestPath = path(temporary, CheckpointManifest.fileName)
            let manifestData: Data
            do {
                manifestData = try manifest.encoded()
            } catch {
                throw CheckpointError(file: manifestPath, message: "cannot encode the manifest: \(error)")
            }
            try writeDurably(manifestData, to: manifestPath)
            manifestChecksum = manifestData.withUnsafeBytes { CRC32C.checksum($0) }
            written += 1
            try afterFileWritten(written)
            try fsyncDirectory(temporary)
            try moveIntoPlace(temporary, root: root, name: name, pid: pid)
        } catch {
            try? files.removeItem(atPath: temporary)
            throw error
        }
        try fsyncDirectory(root)
        try updateLatest(root: root, name: name, manifestChecksum: manifestChecksum, pid: pid)
        if let keepLast { prune(root: root, keepLast: max(1, keepLast), keeping: name) }
        return target
    }

    private static func crashHookFromEnvironment() -> (Int) throws -> Void {
        guard let text = ProcessInfo.processInfo.environment[crashAfterFilesVariable], let limit = Int(text) else {
            return { _ in }
        }
        return { written in
            if written == limit { crashForTesting() }
        }
    }

    private static func validate(
        tensors: [CheckpointSlice], optimizerStates: [CheckpointSlice], root: String
    ) throws {
        for slice in tensors + optimizerStates {
            guard slice.range.lowerBound >= 0, slice.range.upperBound <= slice.storage.count else {
                throw CheckpointError(
                    file: root,
                    message: "'\(slice.name)' covers elements \(slice.range) of an array of \(slice.storage.count)")
            }
        }
        var names = Set<String>()
        for tensor in tensors {
            try checkFileNameStem(tensor.name, root: root)
            try checkCount(tensor.range.count, shape: tensor.shape, what: "tensor '\(tensor.name)'", root: root)
            guard names.insert(tensor.name).inserted else {
                throw CheckpointError(file: root, message: "tensor '\(tensor.name)' is listed twice")
            }
        }
        var keys = Set<String>()
        for state in optimizerStates {
            let slot = state.slot ?? ""
            try checkFileNameStem(slot, root: root)
            let what = "optimizer state '\(state.name).\(slot)'"
            guard names.contains(state.name) else {
                throw CheckpointError(file: root, message: "\(what) belongs to no tensor of the checkpoint")
            }
            try checkCount(state.range.count, shape: state.shape, what: what, root: root)
            guard keys.insert("\(state.name).\(slot)").inserted,
                !names.contains("\(state.name).\(slot)")
            else {
                throw CheckpointError(file: root, message: "\(what) is listed twice or clashes with a tensor name")
            }
        }
    }

    private static func checkFileNameStem(_ stem: String, root: String) throws {
        guard !stem.isEmpty, !stem.hasPrefix("."), !stem.contains("/"), !stem.contains("\0") else {
            throw CheckpointError(file: root, message: "'\(stem)' cannot be used in a file name")
        }
    }

    private static func checkCount(_ count: Int, shape: [Int], what: String, root: String) throws {
        guard shape.allSatisfy({ $0 >= 0 }), shape.reduce(1, *) == count else {
            throw CheckpointError(file: root, message: "\(what) has \(count) values, which does not fit shape \(shape)")
        }
    }

    /// The most data files written but not yet fsynced (each holds a descriptor).
    static let maximumUnsyncedFiles = 32
    /// The bytes of data written per `writev` before the file's writeback is started for them.
    static let writebackChunkBytes = 8 << 20

    /// Writes one `.npy` file straight from its slice's storage (the header with the first chunk of data, then
    /// chunks of `writebackChunkBytes`), starting the disk's writeback of each chunk once it is written, and
    /// returns the file still open and not yet fsynced.
    private static func writeDataFile(_ file: PlannedFile, directory: String) throws -> OpenFile {
        try create(path(directory, file.fileName)) { output in
            try file.header.withUnsafeBytes { header in
                try file.withBody { body in
                    var offset = 0
                    var fileOffset = 0
                    repeat {
                        let end = min(body.count, offset + writebackChunkBytes)
                        let head = offset == 0 ? header : UnsafeRawBufferPointer(start: nil, count: 0)
                        try output.writeAll(head, UnsafeRawBufferPointer(rebasing: body[offset..<end]))
                        let written = head.count + end - offset
                        output.startWriteback(offset: fileOffset, count: written)
                        fileOffset += written
                        offset = end
                    } while offset < body.count
                }
            }
        }
    }

    /// Writes a small file (the manifest, the `latest` pointer) and fsyncs it once, on the same descriptor.
    private static func writeDurably(_ data: Data, to file: String) throws {
        let output = try create(file) { output in
            try data.withUnsafeBytes { try output.writeAll($0, UnsafeRawBufferPointer(start: nil, count: 0)) }
        }
        try synchronizeAndClose(output)
    }

    /// Creates (or truncates) `file` and fills it with `write`; returns it open, or closes it and throws a
    /// `CheckpointError` naming the file.
    private static func create(_ file: String, write: (OpenFile) throws -> Void) throws -> OpenFile {
        do {
            let output = try OpenFile.create(path: file)
            do {
                try write(output)
            } catch {
                try? output.close()
                throw error
            }
            return output
        } catch {
            throw CheckpointError(file: file, message: "cannot write: \(error)")
        }
    }

    /// Fsyncs and closes a file that `create` returned (closing it even when the fsync fails).
    private static func synchronizeAndClose(_ file: OpenFile) throws {
        do {
            do {
                try file.synchronize()
            } catch {
                try? file.close()
                throw error
            }
            try file.close()
        } catch {
            throw CheckpointError(file: file.path, message: "cannot write: \(error)")
        }
    }

    /// Renames the finished temporary directory to `root/name`; an existing checkpoint of the same step is moved
    /// aside first and removed after.
    private static func moveIntoPlace(_ temporary: String, root: String, name: String, pid: Int32) throws {
        let target = path(root, name)
        guard FileManager.default.fileExists(atPath: target) else {
            return try renameReplacing(temporary, target)
        }
        let replaced = path(root, "\(temporaryPrefix)replaced-\(name)-\(pid)")
        try renameReplacing(target, replaced)
        try renameReplacing(temporary, target)
        try? FileManager.default.removeItem(atPath: replaced)
    }

    /// `latest` holds the directory name on its first line and the CRC-32C of that checkpoint's manifest on the
    /// second (`manifest-crc32c 0x1a2b3c4d`), so an edited manifest is refused when restoring from `latest`.
    private static func updateLatest(root: String, name: String, manifestChecksum: UInt32, pid: Int32) throws {
        let temporary = path(root, "\(temporaryPrefix)\(latestFileName)-\(pid)")
        let text = name + "\n" + latestChecksumKey + " " + hex(manifestChecksum) + "\n"
        try writeDurably(Data(text.utf8), to: temporary)
        try renameReplacing(temporary, path(root, latestFileName))
        try fsyncDirectory(root)
    }

    /// Removes `.tmp-*` entries left by interrupted writes.
    private static func removeTemporaryEntries(root: String) {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []
        for entry in entries where entry.hasPrefix(temporaryPrefix) {
            try? FileManager.default.removeItem(atPath: path(root, entry))
        }
    }

    private static func prune(root: String, keepLast: Int, keeping newest: String) {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []
        let checkpoints = entries.compactMap { name in step(ofDirectoryName: name).map { (name: name, step: $0) } }
            .sorted { $0.step < $1.step }
        for old in checkpoints.dropLast(keepLast) where old.name != newest {
            try? FileManager.default.removeItem(atPath: path(root, old.name))
        }
    }

    static func path(_ directory: String, _ name: String) -> String {
        directory.hasSuffix("/") ? directory + name : directory + "/" + name
    }
}
