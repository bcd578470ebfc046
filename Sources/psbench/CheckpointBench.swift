import Foundation
import PSCheckpoint
import PSMath
import PSPosix
import PSServer
import PSWire

/// `psbench checkpoint`: checkpoint write and restore times for models of 16 MiB, 256 MiB and 1 GiB against a
/// plain sequential write + fsync (and read) of the same bytes in the same run, and the pause a checkpoint imposes
/// on training (the in-memory copy under all shard locks) against one memcpy of the model.
enum CheckpointBench {
    static func run(quick: Bool, directory: String?) throws -> [BenchRow] {
        let root = (directory ?? NSTemporaryDirectory()) + "/psbench-checkpoint-\(getpid())"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        var rows: [BenchRow] = []
        let sizes = quick ? [16 << 20, 64 << 20] : [16 << 20, 256 << 20, 1 << 30]
        for size in sizes {
            rows += try measure(bytes: size, root: root, repeats: size >= 1 << 30 ? 2 : 3)
        }
        return rows
    }

    /// One model of `bytes` (4 float32 tensors, SGD so the checkpoint holds exactly the weights), 4 shards.
    static func measure(bytes: Int, root: String, repeats: Int) throws -> [BenchRow] {
        let count = bytes / 4 / 4
        let memcpy = memcpyTime(bytes: bytes, repeats: repeats)
        // Peak resident memory from here to the end of the first checkpoint write, as a multiple of the model.
        let residentBefore = resetPeakResident()
        let store = ShardStore(
            shardCount: 4, optimizer: OptimizerConfig(kind: .sgd, learningRate: 0.1), workerSlots: 1,
            keepsSnapshotBuffers: true)
        try store.register(
            (0..<4).map { TensorSpec(name: "t\($0)", shape: [count], initializer: .uniform(low: -1, high: 1, seed: 1)) }
        )
        let label = formatBytes(bytes)

        // The pause: ShardStore.snapshot (what completeStep does under the locks) vs one memcpy of the model. As in
        // the server, the previous snapshot's buffers go back to the store (the checkpoint writer recycles them).
        var pauses: [UInt64] = []
        var snapshot: ModelSnapshot? = nil
        for _ in 0..<repeats {
            if let previous = snapshot { store.recycle(previous) }
            snapshot = nil
            let start = MonotonicClock.nanoseconds()
            snapshot = store.snapshot()
            pauses.append(MonotonicClock.nanoseconds() - start)
        }
        guard let snapshot else { throw BenchError("no model to snapshot") }

        // As the server's writer thread does: each file written straight from a range of the snapshot's buffer.
        let slices = snapshot.tensors.enumerated().map { index, tensor in
            CheckpointSlice(
                name: tensor.name, shape: tensor.shape, storage: snapshot.weights, range: snapshot.tensorRange(index))
        }
        let manifest = CheckpointManifest(
            step: 1, mode: "bsp", shardCount: 4, shardVersions: snapshot.shardVersions,
            optimizer: OptimizerEntry(name: "sgd"))
        var writes: [UInt64] = []
        var reads: [UInt64] = []
        var written = ""
        var peakGrowth: Double? = nil
        // Baselines: the same bytes written sequentially to one file and fsynced, then read back. Each is run
        // next to the checkpoint operation it is the baseline of, in alternating order, so that both see the same
        // moment of this (shared, virtual) disk.
        var plainWrites: [UInt64] = []
        var plainReads: [UInt64] = []
        let file = root + "/plain.bin"
        for round in 0..<repeats {
            let checkpointFirst = round % 2 == 0
            if !checkpointFirst { plainWrites.append(try plainWrite(snapshot.weights, to: file)) }
            let start = MonotonicClock.nanoseconds()
            written = try CheckpointWriter.write(root: root + "/ckpt", manifest: manifest, slices: slices, keepLast: 1)
            writes.append(MonotonicClock.nanoseconds() - start)
            if peakGrowth == nil, let residentBefore, let peak = residentKiB(field: "VmHWM") {
                peakGrowth = Double(max(peak - residentBefore, 0)) * 1024
            }
            if checkpointFirst { plainWrites.append(try plainWrite(snapshot.weights, to: file)) }

            if !checkpointFirst { plainReads.append(try plainRead(file, bytes: bytes)) }
            let readStart = MonotonicClock.nanoseconds()
            // As psserver --restore does: the manifest, then each file read straight into the shards' storage.
            let restoreStore = ShardStore(
                shardCount: 4, optimizer: OptimizerConfig(kind: .sgd, learningRate: 0.1), workerSlots: 1)
            try restoreStore.installCheckpoint(
                directory: written, manifest: try CheckpointReader.loadManifest(directory: written),
                optimizerSlots: [:],
                version: 1)
            reads.append(MonotonicClock.nanoseconds() - readStart)
            if checkpointFirst { plainReads.append(try plainRead(file, bytes: bytes)) }
        }
        try? FileManager.default.removeItem(atPath: root + "/ckpt")
        try? FileManager.default.removeItem(atPath: file)

        var rows: [BenchRow] = []
        if let peakGrowth {
            rows.append(
                BenchRow(
                    name: "server peak RSS growth \(label) (store, snapshot buffers, first checkpoint write)",
                    value: peakGrowth / 1_048_576, unit: "MiB", baseline: Double(bytes) / 1_048_576,
                    baselineName: "model bytes", lowerIsBetter: true))
        }
        return rows + [
            BenchRow(
                name: "checkpoint write \(label) (4 .npy + manifest, CRC, fsyncs, renames)",
                value: median(writes) / 1e6,
                unit: "ms", baseline: median(plainWrites) / 1e6, baselineName: "one write + fsync",
                lowerIsBetter: true),
            BenchRow(
                name: "restore \(label) (read, CRC, decode, install)", value: median(reads) / 1e6, unit: "ms",
                baseline: median(plainReads) / 1e6, baselineName: "one sequential read", lowerIsBetter: true),
            BenchRow(
                name: "training pause \(label) (copy under the shard locks)", value: median(pauses) / 1e6, unit: "ms",
                baseline: memcpy / 1e6, baselineName: "one memcpy", lowerIsBetter: true),
        ]
    }

    /// One sequential write of `values` to `file` (64 MiB per call) and one fsync; the time in nanoseconds.
    static func plainWrite(_ values: [Float], to file: String) throws -> UInt64 {
        let start = MonotonicClock.nanoseconds()
        try values.withUnsafeBytes { raw in
            let fd = open(file, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
            guard fd >= 0 else { throw BenchError("cannot create \(file)") }
            defer { _ = close(fd) }
            var offset = 0
            while offset < raw.count {
                let n = write(fd, raw.baseAddress! + offset, min(raw.count - offset, 64 << 20))
                guard n > 0 else { throw BenchError("write to \(file) failed") }
                offset += n
            }
            guard fsync(fd) == 0 else { throw BenchError("fsync of \(file) failed") }
        }
        return MonotonicClock.nanoseconds() - start
    }

    /// One read of the whole of `file` into new memory; the time in nanoseconds.
    static func plainRead(_ file: String, bytes: Int) throws -> UInt64 {
        let start = MonotonicClock.nanoseconds()
        let data = try Data(contentsOf: URL(fileURLWithPath: file))
        guard data.count == bytes else { throw BenchError("read back \(data.count) of \(bytes) bytes") }
        return MonotonicClock.nanoseconds() - start
    }

    /// Resets the kernel's peak-RSS mark (`/proc/self/clear_refs`, "5") and returns the current RSS in KiB,
    /// or nil where that is not possible.
    static func resetPeakResident() -> Int? {
        guard let handle = FileHandle(forWritingAtPath: "/proc/self/clear_refs") else { return nil }
        handle.write(Data("5".utf8))
        try? handle.close()
        return residentKiB(field: "VmRSS")
    }

    /// A `kB` field of `/proc/self/status` (`VmRSS`, `VmHWM`).
    static func residentKiB(field: String) -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix(field + ":") {
            return Int(line.dropFirst(field.count + 1).split(whereSeparator: { $0 == " " || $0 == "\t" }).first ?? "")
        }
        return nil
    }

    /// Median nanoseconds of one memcpy of `bytes` (destination touched first).
    static func memcpyTime(bytes: Int, repeats: Int) -> Double {
        let source = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes, alignment: 64)
        let destination = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes, alignment: 64)
        defer {
            source.deallocate()
            destination.deallocate()
        }
        source.initializeMemory(as: UInt8.self, repeating: 3)
        destination.initializeMemory(as: UInt8.self, repeating: 0)
        var samples: [UInt64] = []
        for _ in 0..<repeats {
            let start = MonotonicClock.nanoseconds()
            destination.copyMemory(from: UnsafeRawBufferPointer(source))
            samples.append(MonotonicClock.nanoseconds() - start)
        }
        return median(samples)
    }
}
