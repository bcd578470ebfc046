import Foundation
import XCTest

@testable import PSCheckpoint

/// The copy-free data path: files written straight from ranges of shared arrays, CRC-32C computed on a helper
/// thread while the files are written.
final class CheckpointDataPathTests: CheckpointTestCase {
    /// fc1.weight then fc1.bias laid out in one flat array, as a snapshot holds them, plus one state array.
    private func flatSlices() -> [CheckpointSlice] {
        let weights = tensors().flatMap(\.values)
        let adamM = states().filter { $0.slot == "adam_m" }.flatMap(\.values)
        let adamV = states().filter { $0.slot == "adam_v" }.flatMap(\.values)
        return [
            CheckpointSlice(name: "fc1.weight", shape: [2, 3], storage: weights, range: 0..<6),
            CheckpointSlice(name: "fc1.bias", shape: [3], storage: weights, range: 6..<9),
            CheckpointSlice(name: "fc1.weight", slot: "adam_m", shape: [2, 3], storage: adamM, range: 0..<6),
            CheckpointSlice(name: "fc1.weight", slot: "adam_v", shape: [2, 3], storage: adamV, range: 0..<6),
            CheckpointSlice(name: "fc1.bias", slot: "adam_m", shape: [3], storage: adamM, range: 6..<9),
            CheckpointSlice(name: "fc1.bias", slot: "adam_v", shape: [3], storage: adamV, range: 6..<9),
        ]
    }

    func test_slicesOfFlatArrays_writeTheSameFilesAndManifestAsWholeTensors() throws {
        let whole = try CheckpointWriter.write(
            root: root + "/whole", manifest: manifest(step: 3), tensors: tensors(), optimizerStates: states())
        let sliced = try CheckpointWriter.write(
            root: root + "/sliced", manifest: manifest(step: 3), slices: flatSlices())
        let names = try FileManager.default.contentsOfDirectory(atPath: whole).sorted()
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: sliced).sorted(), names)
        for name in names {
            XCTAssertEqual(
                FileManager.default.contents(atPath: whole + "/" + name),
                FileManager.default.contents(atPath: sliced + "/" + name), name)
        }
    }

    func test_writtenFile_isTheNPYEncodingOfTheSlice() throws {
        let directory = try CheckpointWriter.write(root: root, manifest: manifest(step: 1), slices: flatSlices())
        let bias = try XCTUnwrap(FileManager.default.contents(atPath: directory + "/fc1.bias.npy"))
        let expected = tensors()[1].values.withUnsafeBufferPointer { NPY.encode(float32: $0, shape: [3]) }
        XCTAssertEqual([UInt8](bias), expected)
    }

    func test_overlappedChecksum_equalsThePlainChecksumOfTheFile_acrossChunks() throws {
        // More than one CRC chunk, an odd length and a range that does not start at the array's first element.
        let count = OverlappedChecksums.chunkBytes / 4 + 1_237
        let storage = (0..<(count + 5)).map { Float($0 % 1_000) * 0.37 - 11 }
        let slice = CheckpointSlice(name: "w", shape: [count], storage: storage, range: 5..<(count + 5))
        let planned = PlannedFile(slice: slice, flatOffset: 0)
        let encoded = storage[5...].withUnsafeBufferPointer { NPY.encode(float32: $0, shape: [count]) }
        XCTAssertEqual(planned.checksum(isCancelled: { false }), CRC32C.checksum(encoded))
        XCTAssertNil(planned.checksum(isCancelled: { true }))

        let checksums = OverlappedChecksums([planned, PlannedFile(slice: flatSlices()[1], flatOffset: 6)])
        let bias = tensors()[1].values.withUnsafeBufferPointer { NPY.encode(float32: $0, shape: [3]) }
        XCTAssertEqual(try checksums.results(root: root), [CRC32C.checksum(encoded), CRC32C.checksum(bias)])
    }

    func test_manifestChecksums_matchTheFilesOnDisk() throws {
        let directory = try CheckpointWriter.write(root: root, manifest: manifest(step: 2), slices: flatSlices())
        let loaded = try CheckpointReader.load(directory: directory)
        for entry in loaded.manifest.tensors + loaded.manifest.optimizer.states {
            let bytes = try XCTUnwrap(FileManager.default.contents(atPath: directory + "/" + entry.file))
            XCTAssertEqual(entry.crc32c, CRC32C.checksum([UInt8](bytes)), entry.file)
        }
    }

    func test_writtenInChunks_andMoreFilesThanStayUnsynced_readBackBitwise() throws {
        // One tensor of two write chunks and an odd tail, from a range that starts inside its array, and more
        // small tensors than the writer keeps open before it fsyncs the oldest.
        let count = 2 * CheckpointWriter.writebackChunkBytes / 4 + 1_001
        let storage = (0..<(count + 3)).map { Float(bitPattern: UInt32(truncatingIfNeeded: $0 &* 2_246_822_519)) }
        var slices = [CheckpointSlice(name: "big", shape: [count], storage: storage, range: 3..<(count + 3))]
        for index in 0..<(CheckpointWriter.maximumUnsyncedFiles + 5) {
            slices.append(
                CheckpointSlice(name: "t\(index)", shape: [2], storage: [Float(index), -Float(index)], range: 0..<2))
        }
        let directory = try CheckpointWriter.write(root: root, manifest: manifest(step: 4), slices: slices)
        let bytes = try XCTUnwrap(FileManager.default.contents(atPath: directory + "/big.npy"))
        let expected = storage[3...].withUnsafeBufferPointer { NPY.encode(float32: $0, shape: [count]) }
        XCTAssertTrue(bytes.elementsEqual(expected), "big.npy is not the slice's bytes")
        let loaded = try CheckpointReader.load(directory: directory)
        XCTAssertEqual(loaded.tensors.count, slices.count)
        for index in 0..<(CheckpointWriter.maximumUnsyncedFiles + 5) {
            XCTAssertEqual(loaded.tensors["t\(index)"]?.values, [Float(index), -Float(index)])
        }
    }

    func test_sliceOutsideItsArray_isRefusedBeforeWriting() {
        var slices = flatSlices()
        slices[1].range = 7..<10
        XCTAssertThrowsError(try CheckpointWriter.write(root: root, manifest: manifest(step: 1), slices: slices)) {
            XCTAssertTrue("\($0)".contains("covers elements"), "\($0)")
        }
        XCTAssertNil(latest())
    }
}

/// The restore fast path: header, then data read straight into the returned array with the CRC-32C computed
/// chunk by chunk in the same pass.
final class CheckpointReadPathTests: CheckpointTestCase {
    /// One tensor of a little more than two read chunks, so that the CRC is continued across chunks.
    private func writeLarge() throws -> (directory: String, values: [Float]) {
        let count = 2 * CheckpointReader.readChunkBytes / 4 + 333
        let values = (0..<count).map { Float(bitPattern: UInt32(truncatingIfNeeded: $0 &* 2_654_435_761)) }
        let directory = try CheckpointWriter.write(
            root: root, manifest: manifest(step: 1),
            tensors: [CheckpointTensor(name: "big", shape: [count], values: values)])
        return (directory, values)
    }

    func test_readVerified_returnsTheValuesBitwise_acrossChunks() throws {
        let (directory, values) = try writeLarge()
        let loaded = try CheckpointReader.load(directory: directory)
        let entry = try XCTUnwrap(loaded.manifest.tensors.first)
        let fast = try XCTUnwrap(CheckpointReader.readVerified(file: directory + "/big.npy", entry: entry))
        XCTAssertEqual(fast.values.map(\.bitPattern), values.map(\.bitPattern))
        // Bit patterns, not floats: the values include NaNs.
        let slow = try NPY.read(path: directory + "/big.npy")
        XCTAssertEqual(slow.values.map(\.bitPattern), values.map(\.bitPattern))
        XCTAssertEqual(fast.shape, slow.shape)
        XCTAssertEqual(loaded.tensors["big"]?.values.map(\.bitPattern), values.map(\.bitPattern))
    }

    func test_byteFlippedInTheLastChunk_isCaughtWithTheCRCMessage() throws {
        let (directory, _) = try writeLarge()
        let file = directory + "/big.npy"
        var bytes = [UInt8](try XCTUnwrap(FileManager.default.contents(atPath: file)))
        bytes[bytes.count - 7] ^= 0x01
        try Data(bytes).write(to: URL(fileURLWithPath: file))
        let entry = try XCTUnwrap(
            CheckpointManifest.decode(
                try XCTUnwrap(FileManager.default.contents(atPath: directory + "/manifest.json")),
                file: "manifest.json"
            ).tensors.first)
        XCTAssertNil(CheckpointReader.readVerified(file: file, entry: entry))
        assertLoadFails(directory, file: file, contains: ["CRC32C mismatch: manifest says 0x", ", file has 0x"])
    }

    func test_fileLongerThanItsShape_isRefusedByTheSlowPathMessage() throws {
        let directory = try write(step: 1)
        let file = directory + "/fc1.bias.npy"
        var bytes = [UInt8](try XCTUnwrap(FileManager.default.contents(atPath: file)))
        bytes += [0, 0, 0, 0]
        try Data(bytes).write(to: URL(fileURLWithPath: file))
        assertLoadFails(directory, file: file, contains: ["CRC32C mismatch"])
    }
}
